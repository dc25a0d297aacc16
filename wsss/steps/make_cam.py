"""Step 2: multi-scale, flipped CAMs for every image of a split, saved per image.

Each image gets ``<out>/<id>.npz`` with ``cams`` (K, H, W) float16, normalised to max 1, for
its K labelled classes and ``keys`` (K,) their foreground indices. Finished images are skipped,
so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from ..cam import multiscale_cam, normalize_cam
from ..engine import load_model_weights, required_model
from ..errors import WsssError
from ..io import load_npz, save_npz
from ..engine import load_checkpoint
from .common import RunContext, claim_output_dir, image_tensor
from .train_cam import build_cam_net, model_path

log = logging.getLogger("wsss")


def cam_dir(ctx: RunContext, split: str, root: Optional[Path] = None) -> Path:
    return ctx.run_dir / "cams" / ctx.output_name(split, root)


def load_cam(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """((K, H, W) float32 normalised CAMs, (K,) foreground class indices) of one image."""
    data = load_npz(path)
    return data["cams"].astype(np.float32), data["keys"].astype(np.int64)


def classifier_file(ctx: RunContext, checkpoint: Optional[Path]) -> Path:
    return required_model(checkpoint, model_path(ctx), "CAM classifier", "train-cam")


def load_cam_with_image(folder: Path, voc, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(CAMs (K, H, W), keys (K,), image (H, W, 3)) of one image, checked to be the same size."""
    path = folder / f"{voc.ids[index]}.npz"
    cams, keys = load_cam(path)
    image = voc.load_image(index)
    if cams.shape[1:] != image.shape[:2]:
        raise WsssError(f"{path}: CAM size differs from its image; delete it and re-run make-cam")
    return cams, keys, image


def cam_settings(ctx: RunContext, split: str, root: Optional[Path] = None) -> Optional[dict]:
    """The settings the split's CAMs were made with (None before make-cam ran)."""
    record = cam_dir(ctx, split, root) / "settings.json"
    return json.loads(record.read_text()) if record.exists() else None


def load_cam_model(ctx: RunContext, checkpoint: Optional[Path], class_names: list[str]):
    path = classifier_file(ctx, checkpoint)
    model = build_cam_net(ctx, len(class_names) - 1, pretrained=False)
    meta = load_model_weights(model, path, "cam")
    if meta.get("class_names") and meta["class_names"] != class_names:
        raise WsssError(f"{path}: trained for classes {meta['class_names'][1:]}, but the dataset has {class_names[1:]}")
    return model.to(ctx.device).eval()


def run(ctx: RunContext, split: str, root: Optional[Path] = None, checkpoint: Optional[Path] = None,
        out_dir: Optional[Path] = None) -> Path:
    """Write CAMs of every image of ``split``; returns the output folder."""
    cfg = ctx.config
    voc = ctx.dataset(split, root)
    out = Path(out_dir) if out_dir else cam_dir(ctx, split, root)
    weights = classifier_file(ctx, checkpoint)
    claim_output_dir(out, {"classifier": load_checkpoint(weights).get("fingerprint"), "scales": cfg.cam.scales,
                           "flip": cfg.cam.flip, "root": str(voc.root)})
    todo = [i for i in range(len(voc)) if not (out / f"{voc.ids[i]}.npz").exists()]
    if not todo:
        log.info("make-cam: %s is complete (%d images), skipping", out, len(voc))
        return out
    model = load_cam_model(ctx, checkpoint, voc.class_names)
    start = time.perf_counter()
    for index in tqdm(todo, desc=f"make-cam {split}", unit="img", disable=not ctx.progress, dynamic_ncols=True):
        image = image_tensor(voc.load_image(index), ctx.device)
        with torch.inference_mode():
            cam = multiscale_cam(model.cam, image, cfg.cam.scales, cfg.cam.flip)
            cams, keys = normalize_cam(cam, voc.labels[index])
        save_npz(out / f"{voc.ids[index]}.npz", cams=cams.cpu().numpy().astype(np.float16), keys=keys)
    elapsed = time.perf_counter() - start
    log.info("make-cam: %d images in %.1f s (%.2f images/s)", len(todo), elapsed, len(todo) / max(elapsed, 1e-9))
    return out
