"""The stage clock of `wsss run`."""

from __future__ import annotations

import logging
import time

from .context import RunContext

log = logging.getLogger("wsss")


class StageTimer:
    """The stage clock of `wsss run`: ``timed(name, fn, *args)`` runs one stage, logs its wall time
    and records it in summary.json's ``timings_s`` as the stage ends, so a run that stops later
    still shows where its time went."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx

    def __call__(self, name: str, fn, *args, **kwargs):
        if self.ctx.plan is not None:  # `wsss run --plan`: what the stage would do, not doing it
            return self.ctx.plan.stage(name, fn, *args, **kwargs)
        if self.ctx.clock is not None:
            self.ctx.clock.stage_started(name)
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds = round(time.perf_counter() - start, 2)
        log.info("%s done in %.1f s", name, seconds)
        if self.ctx.clock is not None:
            self.ctx.clock.stage_finished(name, seconds)
        self.ctx.update_summary("timings_s", {**self.ctx.summary().get("timings_s", {}), name: seconds})
        return result
