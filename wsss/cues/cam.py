"""The CAMs as the later stages read them: a run's CAM files of a split, their settings, and the
two ways a pixel's background score is read off them (a constant threshold; AffinityNet Eq. 1).

make-cam (``wsss.cam``) writes ``cams/<name>/<id>.npz``; the seeds and walks of PSA and IRN, the
saliency cue, eval-cam and the report read them here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import WsssError
from ..io import load_npz
from ..run.context import RunContext
from ..run.per_image import output_settings


def cam_dir(ctx: RunContext, split: str, root: Optional[Path] = None) -> Path:
    return ctx.layout.cams(ctx.output_name(split, root))


def load_cam(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """((K, H, W) float32 normalised CAMs, (K,) foreground class indices) of one image."""
    data = load_npz(path)
    return data["cams"].astype(np.float32), data["keys"].astype(np.int64)


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
    return output_settings(cam_dir(ctx, split, root))


def cam_to_label(cams: np.ndarray, keys: np.ndarray, threshold: float) -> np.ndarray:
    """Segmentation from normalised CAMs with a constant background score.

    Args:
        cams: (K, H, W) normalised CAMs; keys: (K,) foreground indices (class = key + 1).
        threshold: background score; a pixel is background unless some CAM exceeds it.
    Returns:
        (H, W) uint8 class map (0 = background).
    """
    if len(keys) == 0:
        return np.zeros(cams.shape[1:], dtype=np.uint8)
    best = cams.argmax(axis=0)
    labels = (np.asarray(keys) + 1)[best]
    return np.where(cams.max(axis=0) > threshold, labels, 0).astype(np.uint8)


def background_score(cams: torch.Tensor | np.ndarray, alpha: float):
    """AffinityNet Eq. (1): background score (1 - max_c M_c)^alpha, (K, H, W) -> (H, W)."""
    if cams.shape[0] == 0:
        return np.ones(cams.shape[1:], dtype=np.float32) if isinstance(cams, np.ndarray) else torch.ones(cams.shape[1:])
    peak = cams.max(axis=0) if isinstance(cams, np.ndarray) else cams.max(dim=0).values
    return (1 - peak) ** alpha
