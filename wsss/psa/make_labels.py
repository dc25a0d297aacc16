"""`wsss make-psa-labels`: confident seeds from CAMs, the labels AffinityNet learns pair
affinities from (AffinityNet Sec. 3.2).

For each image: background score (1 - max CAM)^alpha at a low alpha (confident foreground)
and a high alpha (confident background), each refined by dense CRF; everything else unknown.
Written as palette PNGs ``psa_labels/<split>/<id>.png`` (0 bg, class, 255 unknown) at image
resolution (:func:`wsss.walk.labels.write_seed_labels`); train-psa downsamples them to the
feature stride after augmentation.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from ..cues.cam_threshold import auto_seed_thresholds, cam_background_threshold
from ..run.context import RunContext
from ..walk.labels import write_seed_labels
from ..walk.seeds import alpha_for_threshold

log = logging.getLogger("wsss")


def seed_alphas(ctx: RunContext) -> tuple[float, float]:
    """(alpha for confident foreground, alpha for confident background)."""
    psa = ctx.config.psa
    if psa.seeds == "alpha":
        return tuple(psa.seed_alphas)
    fg, bg = auto_seed_thresholds(cam_background_threshold(ctx, "psa.seeds=alpha"), psa.fg_margin, psa.bg_factor)
    return alpha_for_threshold(fg), alpha_for_threshold(bg)


def run(ctx: RunContext, split: Optional[str] = None) -> Path:
    split = split or ctx.config.data.train_split
    alphas = seed_alphas(ctx)
    log.info("make-psa-labels: alpha %.3g for confident foreground, %.3g for confident background", *alphas)
    return write_seed_labels(ctx, "make-psa-labels", split, ctx.layout.seed_labels("psa", split), alphas,
                             ctx.config.psa.seed_crf, ctx.config.psa.workers, {"alphas": alphas})
