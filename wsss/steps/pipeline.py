"""`wsss run`: every stage of the AffinityNet pipeline in order, over one run directory.

Each stage skips work it finds complete, so re-running the same command after an
interruption continues where it stopped.
"""

from __future__ import annotations

from . import eval_cam, eval_pseudo, eval_seg, make_aff_labels, make_cam, make_pseudo, ssnet_pipeline, train_aff, train_cam, train_seg
from .closing import finish
from .common import RunContext, StageTimer


def run(ctx: RunContext) -> dict:
    cfg = ctx.config
    if cfg.pipeline == "ssnet":
        return ssnet_pipeline.run(ctx)
    timed = StageTimer(ctx)

    timed("train-cam", train_cam.run, ctx)
    for split in cfg.cam.eval_splits:
        timed(f"make-cam/{split}", make_cam.run, ctx, split)
        timed(f"eval-cam/{split}", eval_cam.run, ctx, split)
    train_split = cfg.data.train_split
    if train_split not in cfg.cam.eval_splits:
        timed(f"make-cam/{train_split}", make_cam.run, ctx, train_split)
    timed("make-aff-labels", make_aff_labels.run, ctx, train_split)
    timed("train-aff", train_aff.run, ctx)
    for split in cfg.walk.eval_splits:
        if split not in cfg.cam.eval_splits and split != train_split:
            timed(f"make-cam/{split}", make_cam.run, ctx, split)
        timed(f"make-pseudo/{split}", make_pseudo.run, ctx, split)
        if ctx.dataset(split).has_masks:
            timed(f"eval-pseudo/{split}", eval_pseudo.run, ctx, split)
    if train_split not in cfg.walk.eval_splits:
        timed(f"make-pseudo/{train_split}", make_pseudo.run, ctx, train_split)
    timed("train-seg", train_seg.run, ctx)
    val = cfg.data.val_split
    if val and ctx.dataset(val).has_masks:
        timed(f"eval-seg/{val}", eval_seg.run, ctx, val)
    summary = ctx.summary()
    finish(ctx, summary, train_seg.model_path(ctx))
    return summary
