"""Networks: backbones (EfficientNet-Lite with ImageNet weights, or a user's own), the heads of
each method, and :func:`build_model` / :func:`load_model`, the one place that builds them."""

from .backbone import Backbone, build_backbone, register_backbone
from .build import MODEL_KINDS, LoadedModel, build_model, load_model, register_model

__all__ = ["MODEL_KINDS", "Backbone", "LoadedModel", "build_backbone", "build_model", "load_model",
           "register_backbone", "register_model"]
