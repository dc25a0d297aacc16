"""`wsss make-irn-pseudo`: IRN's pseudo labels: CAMs -> boundary-aware random walk -> constant
background -> (dense CRF) -> arg-max (IRN Sec. 5; its make_sem_seg_labels.py).

Per image: the CAMs of its classes are area-averaged down to the boundary network's stride-4
grid and multiplied by 1 - B; the walk T^t with T = D^-1 A^beta, a_ij = 1 - max of B on the
segment ij (radius ``irn.walk_radius``), spreads them; upsampled to the image and divided by
their maximum, they compete with a constant background score (``irn.walk_bg_threshold``,
IRN 0.25). Written per image, atomically, as VOC-palette PNGs into the run's pseudo-label
folders, where eval-pseudo, train-seg and the report read them:

    irn_pseudo/<split>/rw/<id>.png       after the walk
    irn_pseudo/<split>/rw_crf/<id>.png   after the CRF as well (when irn.crf)
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
from ..models import load_model
from ..models.irn import IRNet
from ..run.context import RunContext, required_model
from ..run.per_image import run_per_image
from ..walk.affinity import walk_on_grid
from ..walk.background import walk_threshold
from ..walk.labels import WALK_LABELS, save_walk_labels
from ..walk.seeds import alpha_for_threshold, mixed_background, scores_to_labels, scores_with_background
from ..walk.tune import Walker
from .walk import boundary_walk, walk_scores, walked_background_scores

log = logging.getLogger("wsss")


def walk_background(ctx: RunContext) -> float:
    """The walk's background threshold: configured, or the CAMs' threshold t* x ``walk_bg_factor``
    (a number, or ``area``: the factor at which the walk keeps the CAMs' foreground share,
    :mod:`wsss.walk.background`)."""
    irn = ctx.config.irn
    if irn.walk_bg_threshold is not None:
        return irn.walk_bg_threshold
    return walk_threshold(ctx, "irn", irn.walk_bg_factor, cam_background_threshold(ctx, "irn.walk_bg_threshold"),
                          lambda: irn_walker(ctx), irn.beta, irn.steps,
                          lambda: {"irn_net": model_fingerprint(irn_file(ctx, None)), "radius": irn.walk_radius,
                                   "normalize": irn.walk_normalize, "background": irn.walk_background})


def irn_file(ctx: RunContext, checkpoint: Optional[Path]) -> Path:
    return required_model(checkpoint, ctx.layout.network_model("irn"), "IRN boundary network", "train-irn")


def load_irn_model(ctx: RunContext, checkpoint: Optional[Path] = None) -> IRNet:
    return load_model(irn_file(ctx, checkpoint), ctx.device, "irn", ctx.config.irn.output_stride,
                      ctx.model_defaults()).model


def boundary_map(model: IRNet, image: np.ndarray, device: torch.device, amp=None) -> torch.Tensor:
    """(H, W, 3) uint8 image -> (h, w) float32 class-boundary map on the stride-4 grid (image
    and its flip, IRN's inference)."""
    with autocast(device, amp):  # the network only; the walk runs in float32
        return model.boundary_with_flip(image_tensor(image, device)[None])[0, 0].float()


def walked_scores(boundary: torch.Tensor, cams: np.ndarray, radius: int, beta: float, steps: int,
                  bg_threshold: float, normalize: bool = True, background: str = "constant",
                  saliency: Optional[np.ndarray] = None, weight: float = 0.0, power: float = 1.0) -> np.ndarray:
    """(h, w) boundary map, (K, H, W) normalised CAMs -> (K+1, H, W) float32 scores at image
    size, background first (the CAMs are area-averaged to the grid, walked, upsampled).
    ``background``: "constant" (IRN) or "walked" (PSA's background channel, walked too); either
    is mixed with (1 - S)^power at ``weight`` when a (H, W) ``saliency`` map is given."""
    if background == "walked":
        scores = scores_with_background(cams, alpha_for_threshold(bg_threshold), saliency, weight, power)
        return walk_on_grid(torch.from_numpy(scores).to(boundary), boundary.shape,
                            lambda low: walked_background_scores(low, boundary, radius=radius, beta=beta,
                                                                 steps=steps)).cpu().numpy()
    # an image labelled with no class has nothing to walk: walk_on_grid keeps its (0, H, W), and
    # every pixel is background (a real negative)
    walked = walk_on_grid(torch.from_numpy(cams).to(boundary), boundary.shape,
                          lambda low: boundary_walk(low, boundary, radius=radius, beta=beta, steps=steps))
    scores = walk_scores(walked, bg_threshold, normalize=normalize).cpu().numpy()
    scores[0] = mixed_background(scores[0], saliency, weight, power)  # the constant, mixed with saliency
    return scores


def irn_walker(ctx: RunContext) -> Walker:
    """IRN's walk for `wsss tune` and the area rule: the class-boundary map is computed once per
    image; each setting walks the CAMs with it and arg-maxes them against the background."""
    model = load_irn_model(ctx)
    amp = autocast_dtype(ctx.config.amp, ctx.device)
    radius = ctx.config.irn.walk_radius
    normalize = ctx.config.irn.walk_normalize == "max"
    background = ctx.config.irn.walk_background

    def prepare(image: np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            return boundary_map(model, image, ctx.device, amp)

    def labels(boundary, cams, keys, beta, steps, threshold, **cue):
        with torch.inference_mode():
            return scores_to_labels(walked_scores(boundary, cams, radius, beta, steps, threshold, normalize, background,
                                                  **cue), keys)

    return Walker(prepare, labels, lambda best: f"--set irn.beta={best['beta']:g} --set irn.steps={best['steps']} "
                                                f"--set irn.walk_bg_threshold={best['bg_threshold']}")


class IrnPseudoLabeler:
    """Per-image job: boundary, walk, CRF, write (built inside each worker process)."""

    def __init__(self, ctx: RunContext, split: str, root: Optional[Path], checkpoint: Optional[Path],
                 bg_threshold: float, cue: Optional[SaliencyCue] = None):
        self.ctx, self.voc = ctx, ctx.dataset(split, root)
        self.cams, self.out = cam_dir(ctx, split, root), ctx.layout.pseudo("irn", ctx.output_name(split, root))
        self.model, self.bg_threshold = load_irn_model(ctx, checkpoint), bg_threshold
        self.amp = autocast_dtype(ctx.config.amp, ctx.device)
        self.cue, self.saliency = cue, saliency_dir(ctx, split, root)

    def __call__(self, index: int) -> None:
        irn, image_id = self.ctx.config.irn, self.voc.ids[index]
        cams, keys, image = load_cam_with_image(self.cams, self.voc, index)
        mix = self.cue.walk_mix(self.saliency, image_id, image.shape[:2]) if self.cue else {}
        with torch.inference_mode():
            boundary = boundary_map(self.model, image, self.ctx.device, self.amp)
            scores = walked_scores(boundary, cams, irn.walk_radius, irn.beta, irn.steps, self.bg_threshold,
                                   irn.walk_normalize == "max", irn.walk_background, **mix)
        save_walk_labels(self.out, image_id, image, scores, keys, self.ctx.config.crf if irn.crf else None,
                         irn.crf_power)


def run(ctx: RunContext, split: Optional[str] = None, root: Optional[Path] = None,
        checkpoint: Optional[Path] = None) -> Path:
    """Write IRN's pseudo labels of every image of ``split``; returns the output folder."""
    split = split or ctx.config.data.train_split
    voc = ctx.dataset(split, root)
    out = ctx.layout.pseudo("irn", ctx.output_name(split, root))
    irn = ctx.config.irn
    bg_threshold = walk_background(ctx)
    settings = {"method": "irn", "irn_net": model_fingerprint(irn_file(ctx, checkpoint)), "bg_threshold": bg_threshold,
                "beta": irn.beta, "steps": irn.steps, "radius": irn.walk_radius, "normalize": irn.walk_normalize,
                "background": irn.walk_background,
                "crf": ctx.config.crf.model_dump() if irn.crf else None, "crf_power": irn.crf_power,
                "cams": cam_settings(ctx, split, root), **ctx.precision_setting()}
    cue = walk_cue(ctx)
    if cue is not None:
        settings["saliency"] = cue.walk_settings(ctx, split, root)
    log.info("make-irn-pseudo: background score %.3g", bg_threshold)
    run_per_image(ctx, "make-irn-pseudo", voc, out, settings, lambda image_id: out / "rw" / f"{image_id}.png",
                  IrnPseudoLabeler, (ctx, split, root, checkpoint, bg_threshold, cue), irn.workers,
                  f"make-irn-pseudo {split}", scores=WALK_LABELS)
    return out
