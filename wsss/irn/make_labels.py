"""`wsss make-irn-labels`: IRN's confident seeds from the CAMs, the labels its boundary network
learns inter-pixel relations from (IRN Sec. 3.1; its make_ir_label.py). The stage is PSA's
(:func:`wsss.walk.labels.write_seed_labels`) with IRN's thresholds: a threshold c is the alpha with (1 - c)^alpha = c.

Per image: confident foreground where the CAM exceeds ``irn.seed_fg_threshold`` (IRN 0.30),
confident background where every CAM is below ``irn.seed_bg_threshold`` (0.05), each refined by
dense CRF (``irn.seed_crf``), the rest unknown. Written as palette PNGs
``irn_labels/<split>/<id>.png`` (0 bg, class, 255 unknown) at image resolution; train-irn
brings them to the stride-4 grid.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from ..cues.cam_threshold import auto_seed_thresholds, cam_background_threshold
from ..run.context import RunContext
from ..walk.labels import write_seed_labels
from .relations import threshold_alphas

log = logging.getLogger("wsss")


def seed_thresholds(ctx: RunContext) -> tuple[float, float]:
    """(confident-foreground, confident-background) CAM thresholds: IRN's, or derived from the
    CAMs' best background threshold (``irn.seeds: auto``)."""
    irn = ctx.config.irn
    if irn.seeds == "thresholds":
        return irn.seed_fg_threshold, irn.seed_bg_threshold
    return auto_seed_thresholds(cam_background_threshold(ctx, "irn.seeds=thresholds"), irn.fg_margin, irn.bg_factor)


def run(ctx: RunContext, split: Optional[str] = None) -> Path:
    """Write the seeds of every image of ``split`` (default: the train split); returns the folder."""
    split = split or ctx.config.data.train_split
    thresholds = seed_thresholds(ctx)
    log.info("make-irn-labels: confident foreground above %.3g, background below %.3g", *thresholds)
    return write_seed_labels(ctx, "make-irn-labels", split, ctx.layout.seed_labels("irn", split),
                             threshold_alphas(*thresholds), ctx.config.irn.seed_crf, ctx.config.irn.workers,
                             {"thresholds": thresholds})
