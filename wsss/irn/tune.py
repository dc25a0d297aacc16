"""IRN's walk for `wsss tune` (the sweep is :func:`wsss.walk.tune.sweep`): the class-boundary map is
computed once per image; each setting walks the CAMs with it and arg-maxes them against a
constant background score."""

from __future__ import annotations

from ..run.context import RunContext
from ..walk.tune import sweep
from .make_pseudo import irn_walker


def run(ctx: RunContext, *args, **kwargs) -> dict:
    """`wsss tune` with ``pipeline: irn``: the sweep over IRN's walk (arguments of ``sweep``)."""
    return sweep(ctx, irn_walker(ctx), *args, **kwargs)
