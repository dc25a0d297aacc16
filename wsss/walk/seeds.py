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

from ..cues.cam import background_score
from ..io import IGNORE_INDEX


def alpha_for_threshold(threshold: float) -> float:
    """The exponent alpha with (1 - c)^alpha = c for background threshold c in (0, 1)."""
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    return math.log(threshold) / math.log(1 - threshold)


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


def mixed_background(cam_background: np.ndarray, saliency: Optional[np.ndarray], weight: float,
                     power: float) -> np.ndarray:
    """The background score with saliency as its cue (wsss's PSA/IRN + SSNet):
    b = (1 - w) b_cam + w (1 - S)^gamma, (H, W) each -> (H, W) float32.

    ``cam_background``: the CAMs' own background score, (1 - max CAM)^alpha of AffinityNet Eq. (1)
    or IRN's constant; ``saliency`` S in [0, 1] (None or ``weight`` 0: b_cam unchanged). A pixel
    that is not salient gets background ~1 whatever the CAMs leak onto it; a salient one keeps
    only the CAMs' share, so the walked CAMs win there."""
    if saliency is None or weight == 0:
        return cam_background.astype(np.float32)
    if saliency.shape != cam_background.shape:
        raise ValueError(f"saliency {saliency.shape} and background {cam_background.shape} differ in size")
    return ((1 - weight) * cam_background + weight * (1 - saliency.clip(0, 1)) ** power).astype(np.float32)


def scores_with_background(cams: np.ndarray, alpha: float, saliency: Optional[np.ndarray] = None,
                           weight: float = 0.0, power: float = 1.0) -> np.ndarray:
    """(K, H, W) normalised CAMs -> (K+1, H, W) scores, channel 0 = (1 - max)^alpha, mixed with
    (1 - S)^power at ``weight`` when a (H, W) ``saliency`` map is given (:func:`mixed_background`)."""
    background = mixed_background(background_score(cams, alpha), saliency, weight, power)
    return np.concatenate([background[None], cams], axis=0).astype(np.float32)


def saliency_guided_seeds(seeds: np.ndarray, saliency: np.ndarray, fg_min: float, bg_max: float,
                          has_classes: bool = True) -> np.ndarray:
    """CAM seeds corrected by saliency: CAMs fire on parts and leak onto context, saliency marks
    the whole object and leaves the context out.

    Args:
        seeds: (H, W) uint8 seeds of :func:`seed_labels` (0 background, class, 255 unknown).
        saliency: (H, W) saliency S in [0, 1].
        fg_min: a foreground seed stays only where S >= fg_min (else unknown: CAM leak on context).
        bg_max: a pixel with S <= bg_max that is not a foreground seed becomes background.
        has_classes: False for an image labelled with no class: every pixel is a real negative,
            salient or not, so its seeds are left as they are.
    Returns:
        (H, W) uint8 seeds; where S > bg_max a background seed of an image with classes becomes
        unknown when S >= fg_min (a salient pixel is not confident background: a missed part).
    """
    if saliency.shape != seeds.shape:
        raise ValueError(f"saliency {saliency.shape} and seeds {seeds.shape} differ in size")
    if not has_classes:
        return seeds.copy()
    out = seeds.copy()
    foreground = (seeds > 0) & (seeds != IGNORE_INDEX)
    salient = saliency >= fg_min
    out[foreground & ~salient] = IGNORE_INDEX
    out[(seeds == 0) & salient] = IGNORE_INDEX
    out[(saliency <= bg_max) & ~(foreground & salient)] = 0
    return out


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
