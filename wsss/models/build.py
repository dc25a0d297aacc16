"""Every network of wsss is built here, by its kind, and loaded here from the ``model.pt`` that
recorded how it was built.

A ``model.pt`` holds ``kind`` (one of :data:`MODEL_KINDS`) and ``meta`` with the class names,
the backbone's name, the output stride and, for the DeepLab-style networks, the head and its
rates, and ``options``: keyword arguments of the kind's builder beyond those (SSNet's
``head_skip``; absent in older files: the builder's defaults). :func:`load_model` rebuilds the
network from that alone.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch
import torch.nn as nn

from ..engine.checkpoint import load_weights, read_wsss_file
from ..errors import WsssError
from .affinity_net import AffinityNet
from .backbone import build_backbone
from .classifier import CamNet
from .irn import IRNet
from .segmentation import SegNet
from .ssnet import SSNet

log = logging.getLogger("wsss")

DEFAULT_RATES = (6, 12, 18, 24)


def _cam_net(backbone, num_classes: int, head: str, rates) -> nn.Module:
    return CamNet(backbone, num_classes - 1)  # the classifier scores the foreground classes only


def _affinity_net(backbone, num_classes: int, head: str, rates) -> nn.Module:
    return AffinityNet(backbone)


def _irn(backbone, num_classes: int, head: str, rates, train_backbone: bool = False) -> nn.Module:
    return IRNet(backbone, train_backbone=train_backbone)


def _seg_net(backbone, num_classes: int, head: str, rates, head_skip: bool = False) -> nn.Module:
    return SegNet(backbone, num_classes, head, rates, head_skip=head_skip)


def _ssnet(backbone, num_classes: int, head: str, rates, head_skip: bool = False) -> nn.Module:
    return SSNet(backbone, num_classes, head, rates, head_skip=head_skip)


MODEL_KINDS: dict[str, Callable[..., nn.Module]] = {
    "cam": _cam_net,
    "affinity": _affinity_net,
    "irn": _irn,
    "segmentation": _seg_net,
    "ssnet": _ssnet,
}
"""kind -> the head built on the backbone (``num_classes`` counts background for every kind)."""

# for error messages: what each kind is called, and the command that trains it
_TITLES = {"cam": "CAM classifier", "affinity": "AffinityNet", "irn": "IRN boundary network",
           "segmentation": "segmentation", "ssnet": "SSNet"}
_TRAINED_BY = {"cam": "train-cam", "affinity": "train-psa", "irn": "train-irn", "segmentation": "train-seg",
               "ssnet": "train-ssnet"}


def register_model(kind: str, build: Callable[..., nn.Module], title: str, trained_by: str) -> None:
    """Add a network kind: ``build(backbone, num_classes, head, rates)`` returns it on the backbone;
    ``title`` names it and ``trained_by`` is the command that trains it (for error messages)."""
    MODEL_KINDS[kind] = build
    _TITLES[kind], _TRAINED_BY[kind] = title, trained_by


def build_model(kind: str, backbone: str, output_stride: int, num_classes: int, head: str = "aspp",
                rates: Sequence[int] = DEFAULT_RATES, pretrained: bool = True,
                backbone_checkpoint: Optional[Union[str, Path]] = None, options: Optional[dict] = None) -> nn.Module:
    """A network of ``kind`` on the named backbone (ImageNet weights when ``pretrained``, or the
    user's ``backbone_checkpoint``); ``num_classes`` counts background. ``options``: keyword
    arguments of the kind's builder (recorded as ``meta["options"]``, e.g. ``{"head_skip": True}``)."""
    if kind not in MODEL_KINDS:
        raise WsssError(f"unknown model kind {kind!r}; known: {', '.join(MODEL_KINDS)}")
    options = options or {}
    try:  # checked before the backbone is built: a model file of a newer wsss names options this one lacks
        inspect.signature(MODEL_KINDS[kind]).bind(None, num_classes, head, rates, **options)
    except TypeError:
        raise WsssError(f"a {_TITLES.get(kind, kind)} model has no option(s) {', '.join(sorted(options))} in this "
                        "version of wsss; update wsss to load it") from None
    net = build_backbone(backbone, output_stride, pretrained=pretrained, checkpoint=backbone_checkpoint)
    return MODEL_KINDS[kind](net, num_classes, head, rates, **options)


def deeplab_options(section) -> dict:
    """The builder options of a DeepLab network (segmentation, SSNet) from its config section
    (``DeepLabConfig``), recorded as ``meta["options"]`` of its model.pt."""
    return {"head_skip": section.head_skip}


@dataclass
class LoadedModel:
    """A network rebuilt from its ``model.pt``, in eval mode on its device."""

    model: nn.Module
    kind: str
    meta: dict
    fingerprint: Optional[str]
    path: Path

    @property
    def class_names(self) -> list[str]:
        return self.meta["class_names"]


def load_model(path: Union[str, Path], device: Union[str, torch.device] = "cpu",
               kind: Union[None, str, Sequence[str]] = None, output_stride: Optional[int] = None,
               defaults: Optional[dict] = None) -> LoadedModel:
    """Rebuild the network a ``model.pt`` of wsss holds and load its weights.

    ``kind``: the kind (or kinds) the caller can use; another is a one-line error naming both.
    ``output_stride``: build at this stride instead of the trained one (the weights fit any
    stride, only the dilations change); a difference is a warning.
    ``defaults``: metadata for a file that lacks some (a run's stage passes its config's backbone
    and class names); what the file records wins.
    """
    path = Path(path)
    payload = read_wsss_file(path)
    found = payload.get("kind")
    wanted = [kind] if isinstance(kind, str) else list(kind) if kind is not None else list(MODEL_KINDS)
    recorded = payload.get("meta")
    meta = {**(defaults or {}), **recorded} if isinstance(recorded, dict) else None
    if found not in wanted or meta is None or "class_names" not in meta or "backbone" not in meta:
        names = " or ".join(_TITLES.get(k, k) for k in wanted)
        # "an" before a vowel sound: a vowel, or an acronym's letter read with one (an SSNet)
        article = "an" if names[0] in "AEIOU" or (names[:2].isupper() and names[0] in "FHLMNRSX") else "a"
        commands = " or ".join(f"`wsss {_TRAINED_BY[k]}`" for k in wanted if k in _TRAINED_BY)
        held = "its metadata is missing" if found in wanted else f"its kind: {found!r}"
        raise WsssError(f"{path}: not {article} {names} model ({held}); pass the model.pt of {commands}")
    trained = meta.get("output_stride")
    if output_stride is not None and trained is not None and trained != output_stride:
        log.warning("%s: trained with output_stride %s, the config asks for %s; using %s (the weights fit either "
                    "stride, the outputs differ)", path, trained, output_stride, output_stride)
    model = build_model(found, meta["backbone"], output_stride or trained, len(meta["class_names"]),
                        meta.get("head", "aspp"), meta.get("rates", DEFAULT_RATES), pretrained=False,
                        options=meta.get("options"))
    load_weights(model, payload["model"], path, "was it trained with another backbone or class list?")
    return LoadedModel(model.to(device).eval(), found, meta, payload.get("fingerprint"), path)
