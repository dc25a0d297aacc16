"""`wsss make-psa-pseudo`: pseudo labels: CAM with background -> random walk -> upsample -> dense CRF -> argmax.

PSA's infer_aff.py: the CAMs of the image's classes, with background score (1 - max)^alpha
(mixed with SSNet's saliency, (1 - w) (1 - max)^alpha + w (1 - S)^gamma, when
``saliency.walk_weight`` w > 0), are averaged down to the AffinityNet feature grid, propagated by the random walk
vec(M*) = T^t vec(M) with T = D^-1 A^beta (Eq. 11-12), upsampled to the image, refined by
dense CRF and arg-maxed. Written per image, atomically, as VOC-palette PNGs:

    psa_pseudo/<split>/rw/<id>.png       after the random walk
    psa_pseudo/<split>/rw_crf/<id>.png   after the CRF as well (when psa.crf)
    psa_pseudo/<split>/scores/<id>.npz   the walk's class scores (when psa.save_scores)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..amp import autocast, autocast_dtype
from ..cues.cam import cam_dir, cam_settings, load_cam_with_image
from ..cues.cam_threshold import cam_background_threshold
from ..cues.saliency import SaliencyCue, saliency_dir, walk_cue
from ..engine import model_fingerprint
from ..inference import image_tensor
from ..io import save_npz
from ..models import load_model
from ..run.context import RunContext, required_model
from ..run.per_image import run_per_image
from ..walk.affinity import random_walk, walk_on_grid
from ..walk.background import walk_threshold
from ..walk.labels import WALK_LABELS, save_walk_labels
from ..walk.seeds import alpha_for_threshold, scores_to_labels, scores_with_background
from ..walk.tune import Walker

log = logging.getLogger("wsss")


def walk_alpha(ctx: RunContext) -> float:
    """The background exponent of the walk's input: configured, or that of the threshold t* x
    ``walk_bg_factor`` (a number, or ``area``: :mod:`wsss.walk.background`)."""
    psa = ctx.config.psa
    if psa.walk_alpha is not None:
        return psa.walk_alpha
    threshold = walk_threshold(ctx, "psa", psa.walk_bg_factor, cam_background_threshold(ctx, "psa.walk_alpha"),
                               lambda: psa_walker(ctx), psa.beta, psa.steps,
                               lambda: {"affinity_net": model_fingerprint(affinity_file(ctx, None)), "radius": psa.radius})
    return alpha_for_threshold(threshold)


def affinity_file(ctx: RunContext, checkpoint: Optional[Path]) -> Path:
    return required_model(checkpoint, ctx.layout.network_model("psa"), "AffinityNet", "train-psa")


def load_affinity_model(ctx: RunContext, checkpoint: Optional[Path] = None):
    return load_model(affinity_file(ctx, checkpoint), ctx.device, "affinity", ctx.config.psa.output_stride,
                      ctx.model_defaults()).model


def walk_scores(features: torch.Tensor, scores: np.ndarray, radius: int, beta: float, steps: int) -> torch.Tensor:
    """(D, h, w) features, (K+1, H, W) scores -> (K+1, H, W) walked scores at image size.

    The scores are area-averaged down to the feature grid (PSA: avg-pool by the stride), walked,
    and bilinearly upsampled back.
    """
    return walk_on_grid(torch.from_numpy(scores).to(features), features.shape[-2:],
                        lambda low: random_walk(low, features, radius=radius, beta=beta, steps=steps))


def psa_walker(ctx: RunContext) -> Walker:
    """PSA: AffinityNet features; background (1 - max CAM)^alpha with (1 - c)^alpha = c."""
    model = load_affinity_model(ctx)
    radius = ctx.config.psa.radius

    def prepare(image: np.ndarray):
        with torch.inference_mode():
            return model(image_tensor(image, ctx.device)[None])[0]

    def labels(features, cams, keys, beta, steps, threshold, **cue):
        scores = scores_with_background(cams, alpha_for_threshold(threshold), **cue)
        with torch.inference_mode():
            walked = walk_scores(features, scores, radius, beta, steps).cpu().numpy()
        return scores_to_labels(walked, keys)

    return Walker(prepare, labels,
                  lambda best: f"--set psa.beta={best['beta']:g} --set psa.steps={best['steps']} "
                               f"--set psa.walk_alpha={best['alpha']}",
                  lambda threshold: {"alpha": round(alpha_for_threshold(threshold), 4)})


class PseudoLabeler:
    """Per-image job: walk, CRF, write (built inside each worker process)."""

    def __init__(self, ctx: RunContext, split: str, root: Optional[Path], checkpoint: Optional[Path], alpha: float,
                 cue: Optional[SaliencyCue] = None):
        self.ctx, self.voc = ctx, ctx.dataset(split, root)
        self.cams, self.out, self.alpha = cam_dir(ctx, split, root), ctx.layout.pseudo("psa", ctx.output_name(split, root)), alpha
        self.model = load_affinity_model(ctx, checkpoint)
        self.amp = autocast_dtype(ctx.config.amp, ctx.device)
        self.cue, self.saliency = cue, saliency_dir(ctx, split, root)

    def __call__(self, index: int) -> None:
        cfg, image_id = self.ctx.config, self.voc.ids[index]
        cams, keys, image = load_cam_with_image(self.cams, self.voc, index)
        # with a saliency cue, the walk spreads the saliency-mixed background with the CAMs
        mix = self.cue.walk_mix(self.saliency, image_id, image.shape[:2]) if self.cue else {}
        scores = scores_with_background(cams, self.alpha, **mix)
        with torch.inference_mode():
            with autocast(self.ctx.device, self.amp):  # the network only; the walk runs in float32
                features = self.model(image_tensor(image, self.ctx.device)[None])[0].float()
            walked = walk_scores(features, scores, cfg.psa.radius, cfg.psa.beta, cfg.psa.steps).cpu().numpy()
        if cfg.psa.save_scores:
            save_npz(self.out / "scores" / f"{image_id}.npz", scores=walked.astype(np.float16), keys=keys)
        save_walk_labels(self.out, image_id, image, walked, keys, cfg.crf if cfg.psa.crf else None, cfg.psa.crf_power)


def run(ctx: RunContext, split: Optional[str] = None, root: Optional[Path] = None,
        checkpoint: Optional[Path] = None) -> Path:
    split = split or ctx.config.data.train_split
    voc = ctx.dataset(split, root)
    out = ctx.layout.pseudo("psa", ctx.output_name(split, root))
    alpha = walk_alpha(ctx)
    weights = affinity_file(ctx, checkpoint)
    walk = ctx.config.psa
    settings = {"affinity_net": model_fingerprint(weights), "alpha": alpha,
                "beta": walk.beta, "steps": walk.steps, "radius": walk.radius,
                "crf": ctx.config.crf.model_dump() if walk.crf else None, "crf_power": walk.crf_power,
                "scores": walk.save_scores, "cams": cam_settings(ctx, split, root), **ctx.precision_setting()}
    cue = walk_cue(ctx)
    if cue is not None:
        settings["saliency"] = cue.walk_settings(ctx, split, root)
    # rw/<id>.png, written last, marks a finished image
    run_per_image(ctx, "make-psa-pseudo", voc, out, settings, lambda image_id: out / "rw" / f"{image_id}.png",
                  PseudoLabeler, (ctx, split, root, checkpoint, alpha, cue), walk.workers, f"make-psa-pseudo {split}",
                  scores=WALK_LABELS)
    return out
