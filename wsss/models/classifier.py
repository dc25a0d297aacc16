"""The CAM network: backbone + global average pooling + 1x1 conv without bias (PSA Sec. 3.1)."""

from __future__ import annotations

import torch
import torch.nn as nn

from .backbone import Backbone


class CamNet(nn.Module):
    """Multi-label classifier whose 1x1 classifier doubles as the CAM projector.

    forward: (B, 3, H, W) 0..255 RGB -> (B, C) logits over the C foreground classes.
    features: (B, 3, H, W) -> (B, D, h, w) the last backbone level, which the classifier's
              weights project to CAMs (``wsss.cam.algorithm.cam_from_features``).
    """

    def __init__(self, backbone: Backbone, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.classifier = nn.Conv2d(backbone.channels[-1], num_classes, 1, bias=False)
        nn.init.xavier_uniform_(self.classifier.weight)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = self.features(images).mean(dim=(2, 3), keepdim=True)
        return self.classifier(pooled).flatten(1)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)[-1]

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Pretrained weights (base rate) and new layers (trained at ``head_lr_mult`` x the rate)."""
        return {"pretrained": list(self.backbone.parameters()), "new": list(self.classifier.parameters())}
