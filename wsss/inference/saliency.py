"""SSNet's saliency map S = sum_i v_i H_i (paper Eq. 1) at inference, with sharper borders.

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
(Kraehenbuehl & Koltun 2011), as saliency detectors post-process theirs, with the settings of
DSS (Hou et al., CVPR 2017; their dss_crf): one mean-field iteration, a narrow smoothness
kernel and a bilateral kernel of colour width 5 (PSA's segmentation CRF, 10 iterations at
colour width 13 and compatibility 10, flattened the weak maps of a short schedule: ECSSD max F
0.68 -> 0.49, BENCHMARKS.md).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..crf import dense_crf

UPSAMPLE_ORDERS = ("map", "logits")


def saliency_map(logits: torch.Tensor, v_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 1: S = sum_i v_i H_i over the foreground classes.

    Args:
        logits: (B, C+1, H, W) segmentation logits (class 0 = background).
        v_logits: (B, C) SAM logits; v = sigmoid(v_logits).
    Returns:
        (B, H, W) saliency in [0, 1].
    """
    probs = F.softmax(logits, dim=1)[:, 1:]
    return (probs * torch.sigmoid(v_logits)[:, :, None, None]).sum(dim=1)


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


DSS_CRF = {"iterations": 1, "gaussian_sxy": 3.0, "gaussian_compat": 3.0, "bilateral_sxy": 60.0,
           "bilateral_srgb": 5.0, "bilateral_compat": 5.0}
"""DSS's saliency CRF (pixels; tuned on ~400 px saliency benchmarks), as ``wsss.crf.dense_crf``
keywords. DSS also divides each unary by 1.05 sigmoid(p); here the unary is -log p."""


def saliency_crf(image: np.ndarray, saliency: np.ndarray, **crf_settings) -> np.ndarray:
    """(H, W, 3) uint8 image, (H, W) saliency -> (H, W) float32 saliency refined by a two-label
    dense CRF on [1 - S', S'] (``wsss.crf.dense_crf``; ``crf_settings`` override :data:`DSS_CRF`):
    P(salient) after mean-field inference.

    S' is the map min-max normalised to [0, 1]: SSNet's S = sum_i v_i H_i peaks below 1 when the
    SAM's v_i do, which would make its most salient pixels "not salient" for the CRF; the
    benchmarks score each map min-max normalised anyway (``wsss.metrics.SaliencyScores``).
    """
    saliency = np.asarray(saliency, dtype=np.float32)
    if saliency.ndim != 2:
        raise ValueError(f"saliency must be (H, W), got shape {saliency.shape}")
    low, high = float(saliency.min()), float(saliency.max())
    normalised = (saliency - low) / (high - low) if high > low else np.zeros_like(saliency)
    refined = dense_crf(image, np.stack([1.0 - normalised, normalised]), **{**DSS_CRF, **crf_settings})
    return refined[1]
