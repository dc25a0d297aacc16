"""`wsss run` with ``pipeline: affinity``: every stage of the AffinityNet pipeline in order, over one
run directory: CAMs -> seeds -> AffinityNet -> random walk (+ CRF) -> segmentation network.

IRN's pipeline has the same shape with its own seeds, network and walk: both run through
:func:`run_walk_pipeline`. Each stage skips work it finds complete, so re-running the same
command after an interruption continues where it stopped.
"""

from __future__ import annotations

import logging
from typing import Callable

from ..cam import evaluate as eval_cam
from ..cam import make as make_cam
from ..cam import train as train_cam
from ..run.closing import finish
from ..run.context import RunContext
from ..run.timer import StageTimer
from ..segmentation import evaluate as eval_seg
from ..segmentation import train as train_seg
from ..ssnet import make_saliency
from . import eval_pseudo, make_aff_labels, make_pseudo, train_aff

log = logging.getLogger("wsss")

Stage = tuple[str, Callable]
"""(the stage's command name, its step's ``run``)."""


def scored(ctx: RunContext, split: str, stage: str) -> bool:
    """Whether ``split`` has masks for a stage that only scores; one line when it is skipped (a
    tags-only dataset runs every other stage)."""
    if ctx.dataset(split).has_masks:
        return True
    log.info("%s/%s: no masks in split %r, nothing to score against; skipped", stage, split, split)
    return False


def run_walk_pipeline(ctx: RunContext, seeds: Stage, network: Stage, walk: Stage, eval_splits: list[str]) -> dict:
    """CAMs -> ``seeds`` (train split) -> ``network`` -> ``walk`` on ``eval_splits`` and the train
    split, each scored by eval-pseudo where there are masks -> train-seg -> eval-seg on val.
    With a saliency cue (``saliency.seeds`` or ``saliency.walk_weight``), make-saliency writes
    the maps of each split before the seeds and the walk read them."""
    cfg = ctx.config
    timed = StageTimer(ctx)
    with_saliency = cfg.saliency.used

    timed("train-cam", train_cam.run, ctx)
    for split in cfg.cam.eval_splits:
        timed(f"make-cam/{split}", make_cam.run, ctx, split)
        if scored(ctx, split, "eval-cam"):
            timed(f"eval-cam/{split}", eval_cam.run, ctx, split)
    train_split = cfg.data.train_split
    if train_split not in cfg.cam.eval_splits:
        timed(f"make-cam/{train_split}", make_cam.run, ctx, train_split)
    if with_saliency:
        timed(f"make-saliency/{train_split}", make_saliency.run, ctx, train_split)
    timed(seeds[0], seeds[1], ctx, train_split)
    timed(network[0], network[1], ctx)
    for split in eval_splits:
        if split not in cfg.cam.eval_splits and split != train_split:
            timed(f"make-cam/{split}", make_cam.run, ctx, split)
        if with_saliency and split != train_split:
            timed(f"make-saliency/{split}", make_saliency.run, ctx, split)
        timed(f"{walk[0]}/{split}", walk[1], ctx, split)
        if scored(ctx, split, "eval-pseudo"):
            timed(f"eval-pseudo/{split}", eval_pseudo.run, ctx, split)
    if train_split not in eval_splits:
        timed(f"{walk[0]}/{train_split}", walk[1], ctx, train_split)
    timed("train-seg", train_seg.run, ctx)
    val = cfg.data.val_split
    if val and scored(ctx, val, "eval-seg"):
        timed(f"eval-seg/{val}", eval_seg.run, ctx, val)
    summary = ctx.summary()
    finish(ctx, summary, ctx.layout.seg_model(cfg.seg.labels))
    return summary


def run(ctx: RunContext) -> dict:
    return run_walk_pipeline(ctx, ("make-aff-labels", make_aff_labels.run), ("train-aff", train_aff.run),
                             ("make-pseudo", make_pseudo.run), ctx.config.walk.eval_splits)
