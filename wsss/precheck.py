"""`wsss run` checks the whole config and dataset before any stage starts, and lists every problem
at once: a run that stops after an hour of training on a missing file, or that needs four tries to
find four problems one by one, costs the user the hours in between.

Each check is cheap (file names and headers, never a network): the splits the run reads, their
labels and images, the settings that need masks (the named opt-ins) where the split has none, the
saliency cue's model and SSNet's saliency data.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterator

from .config import TRAIN_SALIENCY
from .errors import WsssError
from .methods import method_of
from .run.context import RunContext

log = logging.getLogger("wsss")


def _splits(ctx: RunContext) -> list[str]:
    """Every split of the configured dataset that `wsss run` reads, train first."""
    cfg = ctx.config
    splits = [cfg.data.train_split, *([cfg.data.val_split] if cfg.data.val_split else [])]
    if method_of(ctx.method).walk:
        splits += cfg.cam.eval_splits
        splits += getattr(cfg, ctx.method).eval_splits
    return list(dict.fromkeys(splits))


def _checks(ctx: RunContext) -> Iterator[Callable[[], None]]:
    """The checks, each a call that raises a WsssError naming the file and the fix."""
    cfg = ctx.config
    datasets = {}

    def split_check(split: str):
        def check():
            voc = datasets[split] = ctx.dataset(split)
            missing = [voc.image_path(i) for i in range(len(voc)) if not voc.image_path(i).exists()]
            if missing:
                raise WsssError(f"{missing[0]}: image not found ({len(missing)} of split {split!r} missing); "
                                f"add the images or remove their ids from ImageSets/Segmentation/{split}.txt")
        return check

    if not Path(cfg.data.root).is_dir() and cfg.data.demo is None:
        yield lambda: ctx.dataset(cfg.data.train_split)  # the one line naming the missing root
        return
    for split in _splits(ctx):
        yield split_check(split)

    def needs_train_masks(setting: str, value: str, fix: str):
        def check():
            train = datasets.get(cfg.data.train_split)
            if train is not None and not train.has_masks:
                raise WsssError(f"{train.first_missing_mask()}: not found; {setting}: {value} reads the train "
                                f"masks (an opt-in for ablations); {fix}")
        return check

    if method_of(ctx.method).walk:
        if cfg.cam.bg_threshold == "masks":
            yield needs_train_masks("cam.bg_threshold", "masks", "use cam.bg_threshold: auto on tags only")
        if cfg.saliency.used and cfg.saliency.threshold == "masks":
            yield needs_train_masks("saliency.threshold", "masks", "use saliency.threshold: auto on tags only")
        if cfg.seg.labels == "gt":
            yield needs_train_masks("seg.labels", "gt", "use seg.labels: pseudo (the weakly supervised model)")
        if cfg.saliency.used:
            yield _saliency_model_check(ctx)
    else:
        from .ssnet.evaluate import saliency_eval_sets

        yield lambda: saliency_eval_sets(ctx)
        yield lambda: _saliency_set_check(cfg.ssnet.saliency)


def _saliency_model_check(ctx: RunContext) -> Callable[[], None]:
    def check():
        from .cues.saliency import saliency_checkpoint, saliency_settings

        if ctx.config.saliency.checkpoint == TRAIN_SALIENCY:  # the run trains it: its saliency set must be there
            _saliency_set_check(ctx.config.ssnet.saliency, "or run without the saliency cue: --set "
                                "saliency.seeds=false --set saliency.walk_weight=0")
            return
        made = all(saliency_settings(ctx, split) is not None for split in _splits(ctx))
        if ctx.config.saliency.checkpoint is not None or not made:
            saliency_checkpoint(ctx)  # a missing model: one line naming it and how to train one
    return check


def _saliency_set_check(saliency, alternative: str = "") -> None:
    """SSNet's saliency set (DUTS-TR layout) is there, or generated (the demo's)."""
    if saliency.demo is not None:
        return
    root = Path(saliency.root)
    for folder in (root / "images", root / "masks"):
        if not folder.is_dir():
            raise WsssError(f"{folder}: not found; point ssnet.saliency.root at the saliency set (DUTS-TR layout: "
                            f"images/, masks/){'; ' + alternative if alternative else ''}")


def problems(ctx: RunContext) -> list[str]:
    """Every problem the checks find, one line each (empty: the run can start)."""
    found = []
    for check in _checks(ctx):
        try:
            check()
        except WsssError as exc:
            if str(exc) not in found:
                found.append(str(exc))
    return found


def check_run(ctx: RunContext) -> None:
    """Stop before the first stage when anything is wrong, naming every problem."""
    found = problems(ctx)
    if len(found) == 1:
        raise WsssError(found[0])
    if found:
        raise WsssError(f"{len(found)} problems, nothing was run:\n" + "\n".join(f"  * {line}" for line in found))
