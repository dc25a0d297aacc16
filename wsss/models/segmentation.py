"""DeepLab-style segmentation networks on the shared backbone (Chen et al. 2017).

Heads:
* ``aspp``: DeepLab-v2's atrous spatial pyramid pooling: parallel 3x3 convs with atrous rates
  6/12/18/24, each predicting the classes, summed.
* ``largefov``: DeepLab-LargeFOV: a 3x3 conv at rate 12 -> 1024 -> 1x1 1024 -> 1x1 classes.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .backbone import Backbone


class ASPPv2(nn.Module):
    """(B, D, h, w) -> (B, C, h, w): sum of dilated 3x3 convs (DeepLab-v2 Eq. / Fig. 4)."""

    def __init__(self, in_channels: int, num_classes: int, rates: Sequence[int] = (6, 12, 18, 24)):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=r, dilation=r, bias=True) for r in rates
        )
        # Zero initialisation: the summed branches see 4 * 9 * D inputs (46k for Lite's 1280
        # channels), so DeepLab's N(0, 0.01) start gives logits of std ~4 whose random
        # gradients wreck the pretrained backbone before the head has learned anything. From
        # zero, the first steps train the head alone (the backbone's gradient is W^T dL/dz = 0).
        for conv in self.branches:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(branch(x) for branch in self.branches)


class LargeFOV(nn.Module):
    """(B, D, h, w) -> (B, C, h, w): DeepLab-LargeFOV's fc6 (rate 12) / fc7 / fc8."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 1024, rate: int = 12, dropout: float = 0.5):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=rate, dilation=rate), nn.ReLU(inplace=True), nn.Dropout2d(dropout),
            nn.Conv2d(width, width, 1), nn.ReLU(inplace=True), nn.Dropout2d(dropout),
            nn.Conv2d(width, num_classes, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class LowLevelSkip(nn.Module):
    """(B, C, h, w) class logits at stride s, (B, D, H', W') stride-4 features -> (B, C, H', W')
    logits at stride 4: the logits upsampled, plus a correction from the low-level features.

    A tiny DeepLab-v3+ decoder (Chen et al., ECCV 2018, Sec. 3.1: low-level features reduced by
    a 1x1 conv, concatenated with the upsampled high-level output, refined by a 3x3 conv). Here
    the high-level output is already the class logits (DeepLab-v2's ASPP sums class maps), so
    the 3x3 conv maps [upsampled logits; reduced low level] to a residual on the logits. It is
    zero-initialised: a new model starts as the plain network (its logits bilinearly upsampled)
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


class SegNet(nn.Module):
    """forward: (B, 3, H, W) 0..255 RGB -> (B, C, H/s, W/s) class logits (s = backbone stride;
    4 with ``head_skip``)."""

    def __init__(self, backbone: Backbone, num_classes: int, head: str = "aspp", rates: Sequence[int] = (6, 12, 18, 24),
                 head_skip: bool = False):
        super().__init__()
        self.backbone = backbone
        channels = backbone.channels[-1]
        # The backbone's last level is ReLU6 output (mean ~0.4, not centred). A linear head on
        # non-centred inputs of fan-in 4 * 9 * 1280 has one huge curvature direction, which
        # caps the stable learning rate; normalising each image's features first (GroupNorm,
        # no parameters, the same in training and inference) lets the head learn ~5x faster.
        self.normalize = nn.GroupNorm(math.gcd(32, channels), channels, affine=False)
        if head == "aspp":
            self.head = ASPPv2(channels, num_classes, rates)
        elif head == "largefov":
            self.head = LargeFOV(channels, num_classes)
        else:
            raise ValueError(f"unknown head {head!r}; use aspp or largefov")
        # with head_skip the logits come at stride 4 (LowLevelSkip on the backbone's first level)
        self.skip = LowLevelSkip(backbone.channels[0], num_classes) if head_skip else None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        levels = self.backbone(images)
        logits = self.head(self.normalize(levels[-1]))
        return self.skip(logits, levels[0]) if self.skip is not None else logits

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        new = list(self.head.parameters()) + (list(self.skip.parameters()) if self.skip is not None else [])
        return {"pretrained": list(self.backbone.parameters()), "new": new}


def logits_at(model: nn.Module, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 3, H, W) -> (B, C, *size) logits, bilinearly upsampled."""
    return F.interpolate(model(images), size=size, mode="bilinear", align_corners=False)
