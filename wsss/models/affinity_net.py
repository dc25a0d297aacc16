"""AffinityNet (Ahn & Kwak 2018, Sec. 3.2): a per-pixel embedding whose L1 distances give
semantic affinities a_ij = exp(-||f_i - f_j||_1 mean) between nearby pixels.

Three backbone levels are each reduced by a 1x1 conv + ELU, brought to the finest level's
resolution (stride 8), concatenated and mixed by a 1x1 conv (PSA: 64 + 128 + 256 -> 448).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .backbone import Backbone


class AffinityNet(nn.Module):
    """forward: (B, 3, H, W) 0..255 RGB -> (B, D, H/8, W/8) affinity embedding."""

    def __init__(self, backbone: Backbone, level_dims: tuple[int, int, int] = (64, 128, 256), out_dim: int = 448):
        super().__init__()
        self.backbone = backbone
        # the three deepest levels: e.g. strides 8, 16 and the head for EfficientNet-Lite
        self.level_indices = list(range(len(backbone.channels) - 3, len(backbone.channels)))
        self.reducers = nn.ModuleList(
            nn.Conv2d(backbone.channels[i], dim, 1, bias=False) for i, dim in zip(self.level_indices, level_dims)
        )
        self.mix = nn.Conv2d(sum(level_dims), out_dim, 1, bias=False)
        self.stride = backbone.strides[self.level_indices[0]]
        for conv in [*self.reducers, self.mix]:
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        levels = self.backbone(images)
        size = levels[self.level_indices[0]].shape[-2:]
        reduced = []
        for index, conv in zip(self.level_indices, self.reducers):
            x = F.elu(conv(levels[index]))
            if x.shape[-2:] != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            reduced.append(x)
        return F.elu(self.mix(torch.cat(reduced, dim=1)))

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        new = [*self.reducers.parameters(), *self.mix.parameters()]
        return {"pretrained": list(self.backbone.parameters()), "new": new}
