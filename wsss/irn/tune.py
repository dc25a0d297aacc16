"""IRN's walk for `wsss tune` (the sweep is :func:`wsss.walk.tune.sweep`): the class-boundary map is
computed once per image; each setting walks the CAMs with it and arg-maxes them against a
constant background score."""

from __future__ import annotations

import numpy as np
import torch

from ..amp import autocast_dtype
from ..run.context import RunContext
from ..walk.seeds import scores_to_labels
from ..walk.tune import Walker, sweep
from .make_pseudo import boundary_map, load_irn_model, walked_scores


def run(ctx: RunContext, *args, **kwargs) -> dict:
    """`wsss tune` with ``pipeline: irn``: the sweep over IRN's walk (arguments of ``sweep``)."""
    return sweep(ctx, irn_walker(ctx), *args, **kwargs)


def irn_walker(ctx: RunContext) -> Walker:
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
