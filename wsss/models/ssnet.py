"""SSNet: the segmentation network (shared backbone + DeepLab head) plus the saliency
aggregation module (SAM) that scores how salient each class is (see ``wsss.ssnet``)."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .backbone import Backbone
from .segmentation import SegNet


class SaliencyAggregation(nn.Module):
    """(B, D, h, w) deep features -> (B, C) logits of v, one per foreground class.

    The reference code applies a convolution as large as the whole feature map (an FC layer on
    the flattened map) and a sigmoid; global average pooling + a linear layer does the same job
    for any input size. The sigmoid is applied by the losses (in log space) and by
    ``wsss.ssnet.saliency_map``.
    """

    def __init__(self, in_channels: int, num_foreground: int):
        super().__init__()
        self.fc = nn.Linear(in_channels, num_foreground)
        # as the reference's weight_init: N(0, 0.02), zero bias -> v starts near 0.5 for every class
        nn.init.normal_(self.fc.weight, std=0.02)
        nn.init.zeros_(self.fc.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features.mean(dim=(2, 3)))


class LowLevelSkip(nn.Module):
    """(B, C, h, w) class logits at stride s, (B, D, H', W') stride-4 features -> (B, C, H', W')
    logits at stride 4: the logits upsampled, plus a correction from the low-level features.

    A tiny DeepLab-v3+ decoder (Chen et al., ECCV 2018, Sec. 3.1: low-level features reduced by
    a 1x1 conv, concatenated with the upsampled high-level output, refined by a 3x3 conv). Here
    the high-level output is already the class logits (DeepLab-v2's ASPP sums class maps), so
    the 3x3 conv maps [upsampled logits; reduced low level] to a residual on the logits. It is
    zero-initialised: a new model starts as the plain SSNet (its logits bilinearly upsampled)
    and learns where edges of the stride-4 level should move object borders.
    """

    def __init__(self, low_channels: int, num_classes: int, reduced: int = 32):
        super().__init__()
        # the level is a BatchNorm output of arbitrary per-image scale: normalised as SegNet's
        # deep features are (no parameters, the same in training and inference)
        self.normalize = nn.GroupNorm(math.gcd(8, low_channels), low_channels, affine=False)
        self.reduce = nn.Conv2d(low_channels, reduced, 1, bias=False)
        self.fuse = nn.Conv2d(num_classes + reduced, num_classes, 3, padding=1)
        nn.init.kaiming_normal_(self.reduce.weight, nonlinearity="relu")  # not zero: fuse's gradient needs it
        nn.init.zeros_(self.fuse.weight)
        nn.init.zeros_(self.fuse.bias)

    def forward(self, logits: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(logits, size=low.shape[-2:], mode="bilinear", align_corners=False)
        reduced = F.relu(self.reduce(self.normalize(low)))
        return up + self.fuse(torch.cat([up, reduced], dim=1))


class SSNet(SegNet):
    """forward: (B, 3, H, W) 0..255 RGB -> ((B, C+1, H/s, W/s) class logits, (B, C) v logits).

    ``num_classes`` counts background. Weights of the segmentation part have SegNet's names, so
    an SSNet's backbone and head can be read as a SegNet's. With ``head_skip`` the class logits
    come at stride 4 instead (:class:`LowLevelSkip` on the backbone's stride-4 level).
    """

    def __init__(self, backbone: Backbone, num_classes: int, head: str = "aspp", rates: Sequence[int] = (6, 12, 18, 24),
                 head_skip: bool = False):
        super().__init__(backbone, num_classes, head, rates)
        self.sam = SaliencyAggregation(backbone.channels[-1], num_classes - 1)
        self.skip = LowLevelSkip(backbone.channels[0], num_classes) if head_skip else None

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        levels = self.backbone(images)
        features = levels[-1]
        logits = self.head(features)
        if self.skip is not None:
            logits = self.skip(logits, levels[0])
        return logits, self.sam(features)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        new = list(self.head.parameters()) + list(self.sam.parameters())
        if self.skip is not None:
            new += list(self.skip.parameters())
        return {"pretrained": list(self.backbone.parameters()), "new": new}
