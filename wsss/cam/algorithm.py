"""Class activation maps (Zhou et al. 2016) as used by AffinityNet (Ahn & Kwak 2018, Sec. 3.1).

CAM of class c: M_c(x, y) = w_c^T f(x, y), the classifier's weights applied at every position
of the last feature map instead of after global average pooling. Inference follows PSA:
ReLU, upsample, sum over scales and horizontal flips, keep only the image's labels, and
normalise each class map by its maximum.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..inference import multiscale_sum, upsampled_rows

# CAMs peaking lower than this are divided by it instead: a class the classifier does not see
# stays near zero instead of being blown up to 1.
MIN_PEAK = 1e-5


def cam_from_features(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(B, D, h, w) features, (C, D) or (C, D, 1, 1) classifier weights -> (B, C, h, w) ReLU'd CAMs."""
    return F.relu(F.conv2d(features, weight.reshape(weight.shape[0], -1, 1, 1)))


def upsample_cams(maps: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(K, h, w) CAMs of the labelled classes (``labelled_maps``) -> (K, H, W) float16: bilinearly
    upsampled, then normalised as ``normalize_cam`` does, band by band."""
    out = np.zeros((maps.shape[0], *size), dtype=np.float16)
    if not len(maps):
        return out
    peak = torch.zeros(maps.shape[0], device=maps.device)
    for _, band in upsampled_rows(maps, size):
        peak = torch.maximum(peak, band.flatten(1).max(dim=1).values)
    for rows, band in upsampled_rows(maps, size):
        out[:, rows] = (band / peak.clamp_min(MIN_PEAK)[:, None, None]).cpu().numpy().astype(np.float16)
    return out


def multiscale_cam(cam_fn, image: torch.Tensor, scales: Sequence[float], flip: bool = True) -> torch.Tensor:
    """(3, H, W) image -> (C, H, W) CAM summed over scales and flips (not normalised)."""
    return multiscale_sum(cam_fn, image, scales, flip)


def normalize_cam(cam: torch.Tensor, label: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """Keep the labelled classes and scale each map to a maximum of 1.

    Args:
        cam: (C, H, W) non-negative CAMs over the foreground classes.
        label: (C,) multi-hot image-level label.
    Returns:
        ((K, H, W) normalised maps of the K labelled classes, (K,) their foreground indices 0..C-1).
    """
    maps, keys = labelled_maps(cam, label)
    peak = maps.flatten(1).max(dim=1).values.clamp_min(MIN_PEAK)
    return maps / peak[:, None, None], keys


def labelled_maps(cam: torch.Tensor, label: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """((K, H, W) CAMs of the K labelled classes, (K,) their foreground indices)."""
    keys = np.flatnonzero(np.asarray(label) > 0.5)
    return cam[torch.as_tensor(keys, dtype=torch.long, device=cam.device)], keys


