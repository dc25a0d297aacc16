"""IRNet's class-boundary branch (Ahn, Cho & Kwak, CVPR 2019, Sec. 4) on the shared backbone.

Every backbone level (EfficientNet-Lite: strides 4, 8, 16 and the head at the output stride)
is reduced by a 1x1 conv to 32 channels, group-normalised (4 groups), brought to the finest
level's grid (stride 4) and passed through a ReLU; the concatenation is mixed by a 1x1 conv
with bias into one logit per pixel, whose sigmoid is the class-boundary map B in [0, 1]. IRN's
ResNet-50 version reduces its five levels (strides 4, 4, 8, 16, 16) the same way (32 channels
each, GroupNorm(4, 32), 160 -> 1).

As in IRN the backbone is frozen by default: its weights never change (no gradients, IRN
detaches its outputs) and it stays in eval mode, so its BatchNorm statistics stay the pretrained
ones; only the branch is trained. ``train_backbone=True`` (not IRN's) lets the backbone's weights
learn too, for a backbone much smaller than IRN's ResNet-50; its BatchNorm statistics still stay.
The backbone's weights are part of the state_dict either way, so a saved model (``wsss.engine``:
kind and metadata next to the weights) loads on its own.

Not built: IRN's displacement-field branch (instance centroids, for instance segmentation).
Semantic pseudo labels need only the class boundaries.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .backbone import Backbone

BRANCH_DIM = 32
"""Channels each backbone level is reduced to (IRN: 32)."""

NORM_GROUPS = 4
"""GroupNorm groups of each reduced level (IRN: GroupNorm(4, 32))."""


class IRNet(nn.Module):
    """forward: (B, 3, H, W) 0..255 RGB -> (B, 1, h, w) class-boundary map B in [0, 1].

    ``h, w`` is the grid of the backbone's first level (``self.stride``: 4 for EfficientNet-Lite,
    i.e. ceil(H / 4) x ceil(W / 4)).
    """

    def __init__(self, backbone: Backbone, branch_dim: int = BRANCH_DIM, groups: int = NORM_GROUPS,
                 train_backbone: bool = False):
        super().__init__()
        self.backbone = backbone
        self.train_backbone = train_backbone
        self.backbone.requires_grad_(train_backbone)
        self.stride = backbone.strides[0]
        self.reducers = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, branch_dim, 1, bias=False), nn.GroupNorm(groups, branch_dim))
            for channels in backbone.channels
        )
        self.fuse = nn.Conv2d(branch_dim * len(backbone.channels), 1, 1, bias=True)

    def train(self, mode: bool = True) -> "IRNet":
        """Train the branch only: the frozen backbone stays in eval mode (IRN's ``Net.train``)."""
        super().train(mode)
        self.backbone.eval()
        return self

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) 0..255 RGB -> (B, 1, h, w) boundary logits."""
        # a frozen backbone (IRN's): nothing to differentiate, nothing to keep for backward
        with torch.set_grad_enabled(self.train_backbone and torch.is_grad_enabled()):
            levels = self.backbone(images)
        size = levels[0].shape[-2:]
        reduced = []
        for level, reducer in zip(levels, self.reducers):
            x = reducer(level)
            if x.shape[-2:] != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            reduced.append(F.relu(x))
        return self.fuse(torch.cat(reduced, dim=1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(images))

    def boundary_with_flip(self, images: torch.Tensor) -> torch.Tensor:
        """Inference as IRN's ``EdgeDisplacement``: the sigmoid of the mean of the logits of the
        images and of their horizontal flips (flipped back). (B, 3, H, W) -> (B, 1, h, w)."""
        logits = self.logits(torch.cat([images, images.flip(-1)]))
        plain, flipped = logits.chunk(2)
        return torch.sigmoid((plain + flipped.flip(-1)) / 2)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """The engine's two groups: the backbone (empty when frozen, as in IRN) and the new branch.
        IRN trains the branch at the base learning rate (its 10x is for the displacement branch)."""
        pretrained = list(self.backbone.parameters()) if self.train_backbone else []
        return {"pretrained": pretrained, "new": [*self.reducers.parameters(), *self.fuse.parameters()]}
