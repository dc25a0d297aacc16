"""A seed-and-walk method's own stages, as it declares them (``wsss.psa.pipeline``,
``wsss.irn.pipeline``); ``wsss.methods`` runs them between the CAMs and the segmentation network."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Stage:
    """A step of a pipeline: its command name and its ``run(ctx, ...)``."""

    command: str
    run: Callable


@dataclass(frozen=True)
class WalkStages:
    """seeds (``run(ctx, split)``, train split) -> network (``run(ctx)``) -> walk (``run(ctx, split)``,
    every split of ``eval_splits`` and the train split)."""

    seeds: Stage
    network: Stage
    walk: Stage
