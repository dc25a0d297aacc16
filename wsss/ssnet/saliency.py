"""SSNet's saliency map at inference, with sharper borders (issue 13, "sharp saliency").

The network's class logits come at stride 8 or 16 (4 with ``head_skip``), so the map must be
upsampled, and where that happens matters: S = sum_i v_i H_i is a sum of softmax outputs,
and the softmax is steep where the logits cross, so

* ``"map"``: aggregate S at the network's stride, then upsample S bilinearly: a border between
  two cells becomes a linear ramp between their centres, a whole cell wide (16 px at stride 16);
* ``"logits"``: upsample the logits, then softmax and aggregate: the ramp of the logits passes
  through the softmax, whose transition is much narrower. This is also how Ls1 is trained
  (``SsnetLoss`` upsamples the logits to the mask before aggregating; the paper's Eq. 1 holds
  per pixel of the mask), so inference then sees the map the loss saw.

Both agree exactly when the logits are already at the output size. The optional CRF refines
the map as a two-label problem [not salient, salient] = [1 - S, S] with the image's colours
(Kraehenbuehl & Koltun 2011), as saliency detectors post-process (DSS, Hou et al., CVPR 2017).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..crf import dense_crf
from .losses import saliency_map

UPSAMPLE_ORDERS = ("map", "logits")


def saliency_at(logits: torch.Tensor, v_logits: torch.Tensor, size: tuple[int, int], upsample: str = "map") -> torch.Tensor:
    """S = sum_i v_i H_i (paper Eq. 1) at ``size``, upsampled before or after the aggregation.

    Args:
        logits: (B, C+1, h, w) segmentation logits (class 0 = background).
        v_logits: (B, C) SAM logits.
        size: (H, W) of the output.
        upsample: ``"map"`` (aggregate at (h, w), then upsample S) or ``"logits"`` (upsample the
            logits to (H, W), then aggregate).
    Returns:
        (B, H, W) saliency in [0, 1].
    """
    size = tuple(size)
    if upsample == "logits":
        if tuple(logits.shape[-2:]) != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return saliency_map(logits, v_logits)
    if upsample != "map":
        raise ValueError(f"upsample must be one of {UPSAMPLE_ORDERS}, not {upsample!r}")
    saliency = saliency_map(logits, v_logits)
    if tuple(saliency.shape[-2:]) == size:
        return saliency
    return F.interpolate(saliency[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def saliency_crf(image: np.ndarray, saliency: np.ndarray, **crf_settings) -> np.ndarray:
    """(H, W, 3) uint8 image, (H, W) saliency in [0, 1] -> (H, W) float32 saliency refined by a
    two-label dense CRF on [1 - S, S] (``wsss.crf.dense_crf``; ``crf_settings`` are its keyword
    arguments, PSA's by default): P(salient) after mean-field inference."""
    saliency = np.clip(np.asarray(saliency, dtype=np.float32), 0.0, 1.0)
    if saliency.ndim != 2:
        raise ValueError(f"saliency must be (H, W), got shape {saliency.shape}")
    refined = dense_crf(image, np.stack([1.0 - saliency, saliency]), **crf_settings)
    return refined[1]
