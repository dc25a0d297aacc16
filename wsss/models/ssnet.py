"""SSNet: the segmentation network (shared backbone + DeepLab head) plus the saliency
aggregation module (SAM) that scores how salient each class is (see ``wsss.ssnet``)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from .backbone import Backbone
from .segmentation import SegNet


class SaliencyAggregation(nn.Module):
    """(B, D, h, w) deep features -> (B, C) logits of v, one per foreground class.

    The reference code applies a convolution as large as the whole feature map (an FC layer on
    the flattened map) and a sigmoid; global average pooling + a linear layer does the same job
    for any input size. The sigmoid is applied by the losses (in log space) and by
    ``wsss.inference.saliency.saliency_map``.
    """

    def __init__(self, in_channels: int, num_foreground: int):
        super().__init__()
        self.fc = nn.Linear(in_channels, num_foreground)
        # as the reference's weight_init: N(0, 0.02), zero bias -> v starts near 0.5 for every class
        nn.init.normal_(self.fc.weight, std=0.02)
        nn.init.zeros_(self.fc.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features.mean(dim=(2, 3)))


class SSNet(SegNet):
    """forward: (B, 3, H, W) 0..255 RGB -> ((B, C+1, H/s, W/s) class logits, (B, C) v logits).

    ``num_classes`` counts background. Weights of the segmentation part have SegNet's names, so
    an SSNet's backbone and head can be read as a SegNet's. With ``head_skip`` the class logits
    come at stride 4 instead (:class:`LowLevelSkip` on the backbone's stride-4 level).
    """

    def __init__(self, backbone: Backbone, num_classes: int, head: str = "aspp", rates: Sequence[int] = (6, 12, 18, 24),
                 head_skip: bool = False):
        super().__init__(backbone, num_classes, head, rates, head_skip)
        self.sam = SaliencyAggregation(backbone.channels[-1], num_classes - 1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        levels = self.backbone(images)
        features = levels[-1]
        logits = self.head(features)  # the reference feeds the features as they are (no GroupNorm)
        if self.skip is not None:
            logits = self.skip(logits, levels[0])
        return logits, self.sam(features)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = super().param_groups()
        return {"pretrained": groups["pretrained"], "new": groups["new"] + list(self.sam.parameters())}
