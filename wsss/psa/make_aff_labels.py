"""Step 4: confident seeds from CAMs, the labels AffinityNet learns pair affinities from.

For each image: background score (1 - max CAM)^alpha at a low alpha (confident foreground)
and a high alpha (confident background), each refined by dense CRF; everything else unknown.
Written as palette PNGs ``aff_labels/<split>/<id>.png`` (0 bg, class, 255 unknown) at image
resolution; train-aff downsamples them to the feature stride after augmentation.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from ..cam.evaluate import cam_background_threshold
from ..cam.make import cam_dir, cam_settings, load_cam_with_image
from ..cam.seeds import alpha_for_threshold, auto_seed_thresholds, saliency_guided_seeds, seed_labels
from ..crf import crf_refiner
from ..io import save_palette_png
from ..run.context import RunContext
from ..run.per_image import run_per_image
from ..ssnet.make_saliency import SaliencyCue, load_saliency, saliency_dir, seed_cue

log = logging.getLogger("wsss")


def seed_alphas(ctx: RunContext) -> tuple[float, float]:
    """(alpha for confident foreground, alpha for confident background)."""
    aff = ctx.config.aff
    if aff.seeds == "alpha":
        return tuple(aff.seed_alphas)
    fg, bg = auto_seed_thresholds(cam_background_threshold(ctx, "aff.seeds=alpha"), aff.fg_margin, aff.bg_factor)
    return alpha_for_threshold(fg), alpha_for_threshold(bg)


class SeedLabeler:
    """Per-image job (picklable factory for worker processes): the seeds of one image, written
    into ``out`` (PSA's ``aff_labels/`` or IRN's ``irn_labels/``), corrected by saliency when the
    run's saliency cue says so (``saliency.seeds``)."""

    def __init__(self, ctx: RunContext, split: str, out: Path, alphas: tuple[float, float], crf: bool,
                 cue: Optional[SaliencyCue] = None):
        self.ctx, self.voc = ctx, ctx.dataset(split)
        self.cams, self.out, self.alphas, self.crf = cam_dir(ctx, split), out, alphas, crf
        self.cue, self.saliency = cue, saliency_dir(ctx, split)

    def __call__(self, index: int) -> None:
        image_id = self.voc.ids[index]
        cams, keys, image = load_cam_with_image(self.cams, self.voc, index)
        refine = crf_refiner(self.ctx.config.crf, image) if self.crf else None
        seeds = seed_labels(cams, keys, *self.alphas, refine=refine)
        if self.cue is not None:
            saliency = load_saliency(self.saliency, image_id, image.shape[:2])
            seeds = saliency_guided_seeds(seeds, saliency, self.cue.fg_min, self.cue.bg_max, has_classes=len(keys) > 0)
        save_palette_png(self.out / f"{image_id}.png", seeds)


def write_seed_labels(ctx: RunContext, command: str, split: str, out: Path, alphas: tuple[float, float],
                      crf: bool, workers: int, settings: dict) -> Path:
    """The seed-labels stage of PSA and IRN: ``seed_labels`` at ``alphas`` (+ CRF, + saliency) for
    every image of ``split`` into ``out``; ``settings`` names the thresholds, the CRF, the CAMs
    and the saliency cue (when the seeds use it) are added."""
    settings = {**settings, "crf": ctx.config.crf.model_dump() if crf else None, "cams": cam_settings(ctx, split)}
    cue = seed_cue(ctx)
    if cue is not None:
        settings["saliency"] = cue.seed_settings(ctx, split)
        log.info("%s: seeds corrected by saliency: objects need S >= %.3g, background where S <= %.3g",
                 command, cue.fg_min, cue.bg_max)
    run_per_image(ctx, command, ctx.dataset(split), out, settings, lambda image_id: out / f"{image_id}.png",
                  SeedLabeler, (ctx, split, out, alphas, crf, cue), workers, f"{command} {split}")
    return out


def run(ctx: RunContext, split: Optional[str] = None) -> Path:
    split = split or ctx.config.data.train_split
    alphas = seed_alphas(ctx)
    log.info("make-aff-labels: alpha %.3g for confident foreground, %.3g for confident background", *alphas)
    return write_seed_labels(ctx, "make-aff-labels", split, ctx.layout.seed_labels(split), alphas,
                             ctx.config.aff.seed_crf, ctx.config.walk.workers, {"alphas": alphas})
