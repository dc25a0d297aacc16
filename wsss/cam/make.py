"""Step 2: multi-scale, flipped CAMs for every image of a split, saved per image.

Each image gets ``<out>/<id>.npz`` with ``cams`` (K, H, W) float16, normalised to max 1, for
its K labelled classes and ``keys`` (K,) their foreground indices; images with a longer side
than ``cam.max_side`` are shrunk to it first and their CAMs upsampled back to (H, W). Finished
images are skipped, so an interrupted run continues where it stopped. Under torchrun each rank computes a disjoint
share of the images; on CPU ``cam.workers`` processes share them; the files are those of one
process computing with the same number of torch threads (see wsss.parallel).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..amp import autocast, autocast_dtype
from ..cues.cam import cam_dir
from ..engine import model_fingerprint
from ..errors import WsssError
from ..inference import image_tensor, shrink_to_max_side
from ..io import save_npz
from ..models import load_model
from ..run.context import RunContext, required_model
from ..run.per_image import run_per_image
from .algorithm import cam_from_features, labelled_maps, multiscale_cam, normalize_cam, upsample_cams

log = logging.getLogger("wsss")


def classifier_file(ctx: RunContext, checkpoint: Optional[Path]) -> Path:
    return required_model(checkpoint, ctx.layout.cam_model, "CAM classifier", "train-cam")


def load_cam_model(ctx: RunContext, checkpoint: Optional[Path], class_names: list[str]):
    path = classifier_file(ctx, checkpoint)
    loaded = load_model(path, ctx.device, "cam", ctx.config.cam.output_stride, ctx.model_defaults(class_names))
    if loaded.class_names != class_names:
        raise WsssError(f"{path}: trained for classes {loaded.class_names[1:]}, but the dataset has {class_names[1:]}")
    return loaded.model


class CamMaker:
    """Per-image job: multi-scale CAMs of one image, written atomically (built in each worker)."""

    def __init__(self, ctx: RunContext, split: str, root: Optional[Path], checkpoint: Optional[Path], out: Path):
        self.ctx, self.voc, self.out = ctx, ctx.dataset(split, root), out
        # NHWC memory: oneDNN's convolutions run 1.24x faster on it here, and the CAMs agree with
        # NCHW's to 1e-4 (benchmarks/bench_cam_precision.py; a change of rounding, not of settings)
        self.model = load_cam_model(ctx, checkpoint, self.voc.class_names).to(memory_format=torch.channels_last)
        self.amp = autocast_dtype(ctx.config.amp, ctx.device)

    def cam(self, images: torch.Tensor) -> torch.Tensor:
        images = images.contiguous(memory_format=torch.channels_last)
        with autocast(self.ctx.device, self.amp):
            return cam_from_features(self.model.features(images), self.model.classifier.weight).float()

    def __call__(self, index: int) -> None:
        cfg = self.ctx.config
        image = image_tensor(self.voc.load_image(index), self.ctx.device)
        size = tuple(image.shape[1:])
        image = shrink_to_max_side(image, cfg.cam.max_side)  # the full-size tensor is let go
        with torch.inference_mode():
            cam = multiscale_cam(self.cam, image, cfg.cam.scales, cfg.cam.flip)
            if cam.shape[1:] == size:
                cams, keys = normalize_cam(cam, self.voc.labels[index])
                cams = cams.cpu().numpy().astype(np.float16)
            else:  # at the image's size, as every reader of CAMs expects
                maps, keys = labelled_maps(cam, self.voc.labels[index])
                cams = upsample_cams(maps, size)
        save_npz(self.out / f"{self.voc.ids[index]}.npz", cams=cams, keys=keys)


def run(ctx: RunContext, split: str, root: Optional[Path] = None, checkpoint: Optional[Path] = None,
        out_dir: Optional[Path] = None) -> Path:
    """Write CAMs of every image of ``split``; returns the output folder."""
    cfg = ctx.config
    voc = ctx.dataset(split, root)
    out = Path(out_dir) if out_dir else cam_dir(ctx, split, root)
    weights = classifier_file(ctx, checkpoint)
    settings = {"classifier": model_fingerprint(weights), "scales": cfg.cam.scales,
                "flip": cfg.cam.flip, "root": str(voc.root)}
    if cfg.cam.max_side is not None:  # recorded only when set, so CAMs of earlier versions (no limit) stay valid
        settings["max_side"] = cfg.cam.max_side
    settings.update(ctx.precision_setting())
    workers = 1 if ctx.device.type == "cuda" else cfg.cam.workers
    run_per_image(ctx, "make-cam", voc, out, settings, lambda image_id: out / f"{image_id}.npz",
                  CamMaker, (ctx, split, root, checkpoint, out), workers, f"make-cam {split}",
                  scores=() if out_dir else ("cam",))  # CAMs written elsewhere leave the run's score alone
    return out
