"""`wsss tune` with ``pipeline: psa``: the sweep of :mod:`wsss.walk.tune` over PSA's walk."""

from __future__ import annotations

import logging

from ..run.context import RunContext
from ..walk.tune import sweep
from .make_pseudo import psa_walker

log = logging.getLogger("wsss")


def run(ctx: RunContext, *args, **kwargs) -> dict:
    """`wsss tune` with ``pipeline: psa``: the sweep over PSA's walk (arguments of :func:`sweep`)."""
    return sweep(ctx, psa_walker(ctx), *args, **kwargs)
