"""What PSA and IRN write the same way: the seed labels of a split (confident foreground and
background from the CAMs, + dense CRF, + the saliency cue) and the labels of a walk (+ CRF).

    <method>_labels/<split>/<id>.png       seeds: 0 background, class, 255 unknown
    <method>_pseudo/<name>/rw/<id>.png     the walk's labels
    <method>_pseudo/<name>/rw_crf/<id>.png the walk's labels after the dense CRF
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np

from ..config import CrfConfig
from ..crf import crf_refiner, scores_to_probabilities
from ..cues.cam import cam_dir, cam_settings, load_cam_with_image
from ..cues.saliency import SaliencyCue, load_saliency, saliency_dir, seed_cue
from ..io import save_palette_png
from ..run.context import RunContext
from ..run.per_image import run_per_image
from .seeds import saliency_guided_seeds, scores_to_labels, seed_labels

log = logging.getLogger("wsss")

WALK_LABELS = ("rw", "rw_crf")
"""The folders of a walk's labels under ``<method>_pseudo/<name>/``, and the kinds of their scores
in summary.json (``rw/<name>``, ``rw_crf/<name>``)."""


class SeedLabeler:
    """Per-image job (picklable factory for worker processes): the seeds of one image, written
    into ``out`` (PSA's ``psa_labels/`` or IRN's ``irn_labels/``), corrected by saliency when the
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


def save_walk_labels(out: Path, image_id: str, image: np.ndarray, scores: np.ndarray, keys: np.ndarray,
                     crf: Optional[CrfConfig], crf_power: float) -> None:
    """Write a walk's labels of one image, PSA's or IRN's: ``rw_crf/<id>.png`` from the (K+1, H, W)
    ``scores`` (background first) refined by the dense CRF (when ``crf``, its unary
    scores^crf_power), then ``rw/<id>.png``, written last: its presence marks the image finished."""
    if crf is not None:
        refined = crf_refiner(crf, image)(scores_to_probabilities(scores, crf_power))
        save_palette_png(out / "rw_crf" / f"{image_id}.png", scores_to_labels(refined, keys))
    save_palette_png(out / "rw" / f"{image_id}.png", scores_to_labels(scores, keys))
