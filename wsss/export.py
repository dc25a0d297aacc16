"""A trained segmentation network or SSNet as a file that runs without wsss: ONNX (onnxruntime)
or TorchScript, for images of any size, with its class names and preprocessing as metadata.

    wsss export --checkpoint runs/msrc/seg/model.pt --format onnx --out msrc-seg.onnx

The exported graph is the network alone: (N, 3, H, W) float32 RGB in 0..255 (normalised inside)
-> ``logits`` (N, C, h, w) at the network's stride (and an SSNet's ``scores``, (N, C - 1) logits
of its saliency aggregation). Softmax, upsampling, scales, flips and CRF stay with the caller:
``wsss predict --engine onnxruntime`` runs the very same steps around it as the torch engine.
:class:`OnnxNetwork` is that engine.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Union

import numpy as np
import torch
import torch.nn as nn

from . import __version__
from .config import DEFAULT_MAX_SIDE
from .errors import WsssError
from .io import VOC_PALETTE, atomic_path
from .models import load_model
from .models.build import LoadedModel

log = logging.getLogger("wsss")

EXPORT_KINDS = ("segmentation", "ssnet")
FORMATS = ("onnx", "torchscript")
ONNX_OPSET = 17
METADATA_FILE = "wsss.json"
"""The TorchScript file's extra file with the metadata (``torch.jit.load(..., _extra_files=...)``)."""


def require(*packages: str, instead: str = "use --engine torch") -> None:
    """Import the optional ONNX packages a step needs; a missing one is one line saying how to
    install them (``pip install 'wsss[onnx]'``)."""
    import importlib

    missing = []
    for name in packages:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise WsssError(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed; install "
                        f"{'it' if len(missing) == 1 else 'them'} with `pip install 'wsss[onnx]'` (or `pip install "
                        f"{' '.join(missing)}`), or {instead}")


class _Network(nn.Module):
    """The network as exported: a tuple of outputs, whatever the model returns."""

    def __init__(self, model: nn.Module, has_saliency: bool):
        super().__init__()
        self.model, self.has_saliency = model, has_saliency

    def forward(self, image: torch.Tensor):
        out = self.model(image)
        return tuple(out) if self.has_saliency else (out,)


def output_names(has_saliency: bool) -> list[str]:
    return ["logits", "scores"] if has_saliency else ["logits"]


def metadata(loaded: LoadedModel) -> dict[str, str]:
    """What a program needs besides the graph: classes, colours, preprocessing, outputs."""
    backbone = loaded.model.backbone
    names = loaded.class_names
    saliency = loaded.kind == "ssnet"
    return {
        "wsss_version": __version__,
        "kind": loaded.kind,
        "fingerprint": loaded.fingerprint or "",
        "class_names": json.dumps(names),
        "palette": json.dumps(VOC_PALETTE[: len(names)].tolist()),
        "input": "image: float32 (N, 3, H, W), RGB in 0..255; the graph normalises it as (x - pixel_mean) / pixel_std",
        "pixel_mean": json.dumps(list(backbone.pixel_mean)),
        "pixel_std": json.dumps(list(backbone.pixel_std)),
        "max_side": str(DEFAULT_MAX_SIDE),
        "outputs": json.dumps(output_names(saliency)),
        "postprocess": "softmax over logits' classes, bilinear upsampling to the image's size, argmax"
                       + ("; saliency = sum over i of sigmoid(scores_i) x softmax_i+1" if saliency else ""),
    }


def _traced(loaded: LoadedModel) -> tuple[_Network, torch.Tensor]:
    """The network to trace (float32, CPU, eval) and an example input: odd and even sides, so
    neither is special in the trace; its own generator leaves the caller's random state alone."""
    example = torch.rand(1, 3, 97, 130, generator=torch.Generator().manual_seed(0)) * 255
    return _Network(loaded.model.float().cpu().eval(), loaded.kind == "ssnet"), example


def onnx_bytes(loaded: LoadedModel) -> bytes:
    """The model's network as an ONNX graph with dynamic height and width (float32, on CPU)."""
    network, example = _traced(loaded)
    names = output_names(network.has_saliency)
    axes = {"image": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "out_height", 3: "out_width"},
            "scores": {0: "batch"}}
    axes = {name: axis for name, axis in axes.items() if name in ["image", *names]}
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(network, (example,), buffer, dynamo=False, input_names=["image"],
                          output_names=names, dynamic_axes=axes, opset_version=ONNX_OPSET)
    return buffer.getvalue()


def export(checkpoint: Path, fmt: str, out: Path) -> Path:
    """Write the model of ``checkpoint`` (a segmentation network or SSNet) to ``out``."""
    if fmt not in FORMATS:
        raise WsssError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    loaded = load_model(checkpoint, "cpu", EXPORT_KINDS)
    meta = metadata(loaded)
    out = Path(out)
    if fmt == "onnx":
        require("onnx", instead="use --format torchscript")
        import onnx

        graph = onnx.load_from_string(onnx_bytes(loaded))
        onnx.helper.set_model_props(graph, meta)
        with atomic_path(out) as tmp:
            onnx.save(graph, str(tmp))
    else:
        network, example = _traced(loaded)
        with torch.no_grad():
            traced = torch.jit.trace(network, (example,))
        with atomic_path(out) as tmp:
            torch.jit.save(traced, str(tmp), _extra_files={METADATA_FILE: json.dumps(meta)})
    log.info("export: %s -> %s (%s, %d classes, any input size)", checkpoint, out, fmt, len(loaded.class_names))
    return out


class OnnxNetwork:
    """The onnxruntime engine: called as the network is, (B, 3, H, W) float tensor -> logits (and
    an SSNet's scores), computed by onnxruntime on CPU. Built from a wsss ``model.pt`` (exported
    in memory) or from an exported ``.onnx`` file (its metadata gives the class names)."""

    def __init__(self, source: Union[LoadedModel, Path], threads: int):
        require("onnxruntime", *(["onnx"] if isinstance(source, LoadedModel) else []))  # onnx: to export in memory
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        # no busy-waiting between runs: torch's own threads (scales, softmax, upsampling) work in
        # between on the same cores (ms + flip on msrc: 0.34 -> 0.31 s per image, 2 cores)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if isinstance(source, LoadedModel):
            model, self.meta = onnx_bytes(source), metadata(source)
        else:
            model = str(source)
        try:
            self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for a damaged or foreign file
            raise WsssError(f"{source}: onnxruntime cannot load it ({str(exc).splitlines()[0][:200]}); "
                            "pass a file written by `wsss export --format onnx`") from None
        if not isinstance(source, LoadedModel):
            self.meta = dict(self.session.get_modelmeta().custom_metadata_map)
            if "class_names" not in self.meta or self.meta.get("kind") not in EXPORT_KINDS:
                raise WsssError(f"{source}: not an ONNX file of `wsss export` (its metadata has no class names); "
                                "export the model with `wsss export --format onnx`")
        self.kind = self.meta["kind"]
        self.class_names = json.loads(self.meta["class_names"])
        self.fingerprint = self.meta.get("fingerprint") or None

    def __call__(self, batch: torch.Tensor):
        outputs = [torch.from_numpy(np.asarray(o)) for o in
                   self.session.run(None, {"image": batch.detach().float().cpu().numpy()})]
        return tuple(outputs) if self.kind == "ssnet" else outputs[0]


def run(checkpoint: Path, fmt: str, out: Path) -> str:
    path = export(checkpoint, fmt, out)
    return f"export: {path} ({fmt}; dynamic height and width; class names and preprocessing in its metadata)"
