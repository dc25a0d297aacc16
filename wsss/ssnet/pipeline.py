"""`wsss run` with ``pipeline: ssnet`` (``wsss.methods``): SSNet stage 1, pseudo labels, stage 2, scores.

Each stage skips work it finds complete, so re-running the same command after an
interruption continues where it stopped.
"""

from __future__ import annotations

from ..run.closing import RunOutcome
from ..run.context import RunContext
from ..run.timer import StageTimer
from . import evaluate as eval_ssnet
from . import mine as make_ssnet_pseudo
from . import train as train_ssnet


def run(ctx: RunContext) -> RunOutcome:
    cfg = ctx.config
    train_split, val = cfg.data.train_split, cfg.data.val_split
    compare = cfg.ssnet.compare_stages
    timed = StageTimer(ctx)

    train_has_masks = ctx.dataset(train_split).has_masks
    eval_ssnet.saliency_eval_sets(ctx)  # a mistyped benchmark folder fails now, not after the training
    timed("train-ssnet/1", train_ssnet.run, ctx, 1)
    timed(f"make-ssnet-pseudo/1/{train_split}", make_ssnet_pseudo.run, ctx, 1, train_split)
    if train_has_masks:
        timed(f"eval-ssnet-pseudo/1/{train_split}", eval_ssnet.run_pseudo, ctx, 1, train_split)
    if compare and val:
        timed(f"eval-ssnet/1/{val}", eval_ssnet.run, ctx, 1, val)
    timed("train-ssnet/2", train_ssnet.run, ctx, 2)
    if compare and train_has_masks:
        timed(f"make-ssnet-pseudo/2/{train_split}", make_ssnet_pseudo.run, ctx, 2, train_split)
        timed(f"eval-ssnet-pseudo/2/{train_split}", eval_ssnet.run_pseudo, ctx, 2, train_split)
    if val:
        timed(f"eval-ssnet/2/{val}", eval_ssnet.run, ctx, 2, val)
    return RunOutcome(ctx.summary(), train_ssnet.model_path(ctx, 2), saliency=True)
