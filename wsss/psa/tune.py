"""`wsss tune`: sweep the random walk's hyperparameters on a labelled subset of a split.

The network's output (AffinityNet features for PSA, the class-boundary map for IRN) and the
CAMs are computed once per image; every (beta, steps, background threshold) combination, and
with a saliency cue every (saliency weight, power) of the background mix, then costs only a
walk and an argmax (no CRF), so a sweep over dozens of settings takes minutes.
The best setting is printed as ``--set`` overrides and saved to ``eval/tune_<split>.json``;
check that it holds on a split it was not chosen on.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..inference import image_tensor
from ..run.context import RunContext
from ..walk.seeds import alpha_for_threshold, scores_to_labels, scores_with_background
from ..walk.tune import Walker, sweep
from .make_pseudo import load_affinity_model, walk_scores

log = logging.getLogger("wsss")


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


def run(ctx: RunContext, *args, **kwargs) -> dict:
    """`wsss tune` with ``pipeline: psa``: the sweep over PSA's walk (arguments of :func:`sweep`)."""
    return sweep(ctx, psa_walker(ctx), *args, **kwargs)
