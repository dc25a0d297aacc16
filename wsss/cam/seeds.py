"""Confident seeds from CAMs (AffinityNet Sec. 3.2) and the background-score exponent.

The background score of AffinityNet Eq. (1) is b = (1 - max_c M_c)^alpha. Competing with a
normalised CAM value m, background wins when (1 - m)^alpha > m, so an exponent alpha acts as
the background threshold c that solves (1 - c)^alpha = c: alpha 4 -> c = 0.28, alpha 16 ->
0.12, alpha 32 -> 0.08 (the paper's values, tuned on VOC CAMs that peak near c = 0.2).
CAMs from another network peak elsewhere, so wsss can derive alpha from a threshold.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np

from ..cam.algorithm import background_score
from ..io import IGNORE_INDEX


def alpha_for_threshold(threshold: float) -> float:
    """The exponent alpha with (1 - c)^alpha = c for background threshold c in (0, 1)."""
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    return math.log(threshold) / math.log(1 - threshold)


def auto_seed_thresholds(best_threshold: float, fg_margin: float, bg_factor: float) -> tuple[float, float]:
    """(confident-foreground, confident-background) CAM thresholds around the CAMs' best background
    threshold t*: t* + fg_margin (1 - t*) and t* bg_factor (``seeds: auto`` of PSA and IRN)."""
    t = best_threshold
    return min(0.95, t + fg_margin * (1 - t)), max(0.01, t * bg_factor)


def threshold_for_alpha(alpha: float) -> float:
    """The background threshold c in (0, 1) with (1 - c)^alpha = c (bisection; monotone in c)."""
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if (1 - mid) ** alpha > mid:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def scores_with_background(cams: np.ndarray, alpha: float) -> np.ndarray:
    """(K, H, W) normalised CAMs -> (K+1, H, W) scores, channel 0 = (1 - max)^alpha."""
    return np.concatenate([background_score(cams, alpha)[None], cams], axis=0).astype(np.float32)


def scores_to_labels(scores: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """(K+1, H, W) scores with background first -> (H, W) uint8 classes (key + 1; 0 background)."""
    lookup = np.concatenate([[0], np.asarray(keys, dtype=np.int64) + 1])
    return lookup[scores.argmax(axis=0)].astype(np.uint8)


def seed_labels(
    cams: np.ndarray,
    keys: np.ndarray,
    alpha_fg: float,
    alpha_bg: float,
    refine: Optional[Callable[[np.ndarray], np.ndarray]] = None,
) -> np.ndarray:
    """Confident foreground/background seeds, everything else unknown (255).

    Args:
        cams: (K, H, W) normalised CAMs of the image's classes; keys: (K,) their indices.
        alpha_fg: low exponent: background strong, so what still wins is confident foreground.
        alpha_bg: high exponent: background weak, so where it still wins is confident background.
        refine: optional (K+1, H, W) scores -> (K+1, H, W) probabilities (dense CRF).
    Returns:
        (H, W) uint8: 0 confident background, key + 1 confident foreground, 255 unknown.
    """

    def labels_at(alpha: float) -> np.ndarray:
        scores = scores_with_background(cams, alpha)
        if refine is not None:
            scores = refine(scores / scores.sum(axis=0, keepdims=True).clip(min=1e-8))
        return scores_to_labels(scores, keys)

    confident_fg = labels_at(alpha_fg)
    confident_bg = labels_at(alpha_bg)
    seeds = np.full(cams.shape[1:], IGNORE_INDEX, dtype=np.uint8)
    seeds[confident_fg > 0] = confident_fg[confident_fg > 0]
    seeds[confident_bg == 0] = 0
    return seeds
