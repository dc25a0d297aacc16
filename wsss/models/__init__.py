"""Networks: backbones (EfficientNet-Lite with ImageNet weights, or a user's own) and heads."""

from .backbone import Backbone, build_backbone, register_backbone

__all__ = ["Backbone", "build_backbone", "register_backbone"]
