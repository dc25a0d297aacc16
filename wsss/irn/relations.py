"""Inter-pixel relations mined from CAM seeds: IRN's training labels.

Reference: J. Ahn, S. Cho and S. Kwak, "Weakly Supervised Learning of Instance Segmentation with
Inter-pixel Relations", CVPR 2019 (IRN), Sec. 3 (inter-pixel relation mining), and its code,
github.com/jiwoon-ahn/irn (step/cam_to_ir_label.py, voc12/dataloader.py). Tags used below:

* [seeds]   Confident foreground where the CAM exceeds a high threshold (0.30), confident
            background where every CAM is below a low one (0.05), each map refined by a dense
            CRF; everything else unknown (255).
* [pairs]   P = {(i, j) | ||x_i - x_j||_2 < gamma, i != j} on the stride-4 grid, gamma = 10;
            each unordered pair once (IRN's "search directions" are the half offsets).
* [labels]  P+ = pairs with the same known label, split into P+_fg (a foreground class) and
            P+_bg (background); P- = pairs with different known labels; pairs with an unknown
            end are in none.

These are AffinityNet's seeds and pair labels with IRN's thresholds and radius, so this module
is a thin layer over ``wsss.walk.seeds.seed_labels`` and ``wsss.walk.affinity.pair_labels``.

Shapes: ``K`` CAM channels (the image's classes) or pair offsets, ``H, W`` the CAM (image)
grid, ``h, w`` the stride-4 grid, ``B`` a batch.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
from torch import Tensor

from ..walk.affinity import pair_labels, pair_offsets
from ..walk.seeds import alpha_for_threshold, seed_labels

__all__ = [
    "IRN_SEED_FG_THRESHOLD",
    "IRN_SEED_BG_THRESHOLD",
    "IRN_LABEL_RADIUS",
    "confident_seeds",
    "threshold_alphas",
    "relation_offsets",
    "relation_labels",
]

IRN_SEED_FG_THRESHOLD = 0.30
"""[seeds] CAM value above which a pixel is confident foreground (IRN's conf_fg_thres)."""

IRN_SEED_BG_THRESHOLD = 0.05
"""[seeds] CAM value below which (for every class) a pixel is confident background (conf_bg_thres)."""

IRN_LABEL_RADIUS = 10
"""[pairs] gamma of the training pairs on the stride-4 grid (IRN's train_irn.py: PathIndex(radius=10))."""


def threshold_alphas(fg_threshold: float, bg_threshold: float) -> tuple[float, float]:
    """[seeds] (alpha_fg, alpha_bg) of ``wsss.walk.seeds.seed_labels`` that select exactly the
    pixels above ``fg_threshold`` / below ``bg_threshold`` (see :func:`confident_seeds`)."""
    if not 0 < bg_threshold <= fg_threshold < 1:
        raise ValueError(
            f"thresholds must satisfy 0 < bg_threshold <= fg_threshold < 1, got {bg_threshold}, {fg_threshold}"
        )
    return alpha_for_threshold(fg_threshold), alpha_for_threshold(bg_threshold)


def confident_seeds(
    cams: np.ndarray,
    keys: np.ndarray,
    fg_threshold: float = IRN_SEED_FG_THRESHOLD,
    bg_threshold: float = IRN_SEED_BG_THRESHOLD,
    refine: Optional[Callable[[np.ndarray], np.ndarray]] = None,
) -> np.ndarray:
    """[seeds] Confident foreground / background / unknown from normalised CAMs.

    A constant background score c against the CAMs and the score (1 - max_c M_c)^alpha of
    ``wsss.walk.seeds`` pick the same arg-max when (1 - c)^alpha = c, so the thresholds become
    alphas (``alpha_for_threshold``) and ``wsss.walk.seeds.seed_labels`` does the work: without
    ``refine`` the result is exactly IRN's rule (foreground: max CAM > ``fg_threshold``, labelled
    with the arg-max class; background: max CAM < ``bg_threshold``).

    Args:
        cams: (K, H, W) CAMs of the image's classes, each normalised to max 1.
        keys: (K,) class indices of those channels (foreground label = key + 1).
        fg_threshold: the high threshold; IRN 0.30. For data-derived thresholds, PSA's
            ``psa.seeds: auto`` rule gives them from the CAMs' best threshold t*
            (t* + fg_margin (1 - t*) and t* bg_factor, ``wsss.psa.make_labels``).
        bg_threshold: the low threshold, 0 < bg_threshold <= fg_threshold < 1; IRN 0.05.
        refine: optional dense CRF, (K+1, H, W) probabilities -> (K+1, H, W) probabilities,
            applied to each of the two maps (IRN refines both with a CRF).

    Returns:
        (H, W) uint8: 0 confident background, key + 1 confident foreground, 255 unknown.
    """
    return seed_labels(cams, keys, *threshold_alphas(fg_threshold, bg_threshold), refine)


def relation_offsets(radius: int = IRN_LABEL_RADIUS) -> Tensor:
    """[pairs] The (K, 2) long (dy, dx) half offsets within ``radius`` (152 for IRN's 10), in
    ``wsss.walk.affinity.pair_offsets`` order: the pair layout of every (…, K, h, w) tensor here."""
    return pair_offsets(radius, half=True)


def relation_labels(seeds: Tensor, radius: int = IRN_LABEL_RADIUS) -> tuple[Tensor, Tensor, Tensor]:
    """[labels] IRN's pair labels from a seed map already on the stride-4 grid.

    Args:
        seeds: (h, w) or (B, h, w) integer map: 0 background, 1..254 foreground classes, 255
            unknown, e.g. ``confident_seeds`` brought to the grid by nearest sampling (IRN:
            a 1/4 nearest resize; ``wsss.walk.affinity.downsample_labels`` does it).
        radius: gamma of [pairs]; IRN 10.

    Returns:
        ``(bg_pos, fg_pos, neg)`` bool masks (K, h, w) or (B, K, h, w) for the offsets
        ``relation_offsets(radius)``: P+_bg, P+_fg and P-. Pairs leaving the grid are in none.
    """
    return pair_labels(seeds, relation_offsets(radius).to(seeds.device))
