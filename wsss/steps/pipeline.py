"""`wsss run`: every stage of the AffinityNet pipeline in order, over one run directory.

Each stage skips work it finds complete, so re-running the same command after an
interruption continues where it stopped.
"""

from __future__ import annotations

from . import eval_cam, eval_pseudo, eval_seg, make_aff_labels, make_cam, make_pseudo, train_aff, train_cam, train_seg
from . import report
from .common import RunContext, StageTimer


def stage_table(summary: dict) -> str:
    """A plain-text table of mIoU per stage and split from ``summary.json``."""
    rows = [(key, value) for key, value in summary.items() if isinstance(value, dict) and "miou" in value]
    if not rows:
        return "(no scored stage yet)"
    width = max(len(k) for k, _ in rows) + 2
    lines = [f"{'stage/split':<{width}}{'mIoU':>8}  note", "-" * (width + 20)]
    for key, value in rows:
        note = f"bg threshold {value['best_threshold']:.2f}" if "best_threshold" in value else value.get("note", "")
        lines.append(f"{key:<{width}}{value['miou']:>8.2f}  {note}")
    return "\n".join(lines)


def run(ctx: RunContext) -> dict:
    cfg = ctx.config
    if cfg.pipeline == "ssnet":
        from . import ssnet_pipeline

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
    print("\n" + stage_table(summary))
    path = report.run_safely(ctx.run_dir)  # logs and returns None on failure: the results above stay
    if path is not None:
        print(f"report: {path}")
    return summary
