"""`wsss run` with ``pipeline: affinity``: every stage of the AffinityNet pipeline in order, over one
run directory: CAMs -> seeds -> AffinityNet -> random walk (+ CRF) -> segmentation network.

Each stage skips work it finds complete, so re-running the same command after an
interruption continues where it stopped.
"""

from __future__ import annotations

from ..cam import evaluate as eval_cam
from ..cam import make as make_cam
from ..cam import train as train_cam
from ..run.closing import finish
from ..run.context import RunContext
from ..run.timer import StageTimer
from ..segmentation import evaluate as eval_seg
from ..segmentation import train as train_seg
from . import eval_pseudo, make_aff_labels, make_pseudo, train_aff


def run(ctx: RunContext) -> dict:
    cfg = ctx.config
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
    finish(ctx, summary, ctx.layout.seg_model(cfg.seg.labels))
    return summary
