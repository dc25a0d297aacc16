"""`wsss make-irn-labels`: IRN's confident seeds from the CAMs, the labels its boundary network
learns inter-pixel relations from (IRN Sec. 3.1; its make_ir_label.py).

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

from ..cam.evaluate import best_cam_threshold
from ..cam.make import cam_dir, cam_settings, load_cam_with_image
from ..cam.seeds import auto_seed_thresholds
from ..crf import crf_refiner
from ..io import save_palette_png
from ..run.context import RunContext
from ..run.per_image import run_per_image
from .relations import confident_seeds

log = logging.getLogger("wsss")


def seed_thresholds(ctx: RunContext) -> tuple[float, float]:
    """(confident-foreground, confident-background) CAM thresholds: IRN's, or derived from the
    CAMs' best background threshold (``irn.seeds: auto``)."""
    irn = ctx.config.irn
    if irn.seeds == "thresholds":
        return irn.seed_fg_threshold, irn.seed_bg_threshold
    return auto_seed_thresholds(best_cam_threshold(ctx, "irn.seeds=thresholds"), irn.fg_margin, irn.bg_factor)


class IrnSeedLabeler:
    """Per-image job (a picklable factory for worker processes)."""

    def __init__(self, ctx: RunContext, split: str, thresholds: tuple[float, float]):
        self.ctx, self.voc = ctx, ctx.dataset(split)
        self.cams, self.out, self.thresholds = cam_dir(ctx, split), ctx.layout.irn_seed_labels(split), thresholds

    def __call__(self, index: int) -> None:
        cams, keys, image = load_cam_with_image(self.cams, self.voc, index)
        refine = crf_refiner(self.ctx.config.crf, image) if self.ctx.config.irn.seed_crf else None
        seeds = confident_seeds(cams, keys, *self.thresholds, refine=refine)
        save_palette_png(self.out / f"{self.voc.ids[index]}.png", seeds)


def run(ctx: RunContext, split: Optional[str] = None) -> Path:
    """Write the seeds of every image of ``split`` (default: the train split); returns the folder."""
    split = split or ctx.config.data.train_split
    voc = ctx.dataset(split)
    out = ctx.layout.irn_seed_labels(split)
    thresholds = seed_thresholds(ctx)
    settings = {"thresholds": thresholds, "crf": ctx.config.crf.model_dump() if ctx.config.irn.seed_crf else None,
                "cams": cam_settings(ctx, split)}
    log.info("make-irn-labels: confident foreground above %.3g, background below %.3g", *thresholds)
    run_per_image(ctx, "make-irn-labels", voc, out, settings, lambda image_id: out / f"{image_id}.png",
                  IrnSeedLabeler, (ctx, split, thresholds), ctx.config.irn.workers, f"irn-labels {split}")
    return out
