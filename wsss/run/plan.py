"""``wsss run --plan``: every stage of the run, before anything is done, with what each will do.

The run's own pipeline code runs with the stage clock in plan mode (:class:`Plan`): a stage is
called while the stages it reads from are complete, and its gate (a training's finished model, a
per-image folder's settings and files; :mod:`wsss.engine.plan`) says whether it has work and why.
A stage that reads what another stage makes anew will run too, and is not called. Scoring
stages are listed, never run. Nothing is trained or made, and no log, lock or record is written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Optional

from ..config import load_config
from ..engine.plan import WouldRun, changed_settings, planning
from .context import RunContext

COMPLETE, WILL_RUN, SCORES = "complete", "will run", "scores"


@dataclass
class PlannedStage:
    name: str
    state: str
    reason: str = ""


@dataclass
class Plan:
    """The stages in the order the run takes them (filled by the stage clock, ``StageTimer``).

    ``inputs_of(name)``: the stages whose outputs stage ``name`` reads (the method's, from
    ``wsss.methods``); None for a stage it does not know, which then counts every stage before it
    as its input."""

    inputs_of: Callable[[str], Optional[list[str]]] = lambda name: None
    stages: list[PlannedStage] = field(default_factory=list)

    def stage(self, name: str, fn, *args, **kwargs):
        if name.split("/")[0].startswith("eval-"):
            self.stages.append(PlannedStage(name, SCORES, "scores against the masks; writes eval/ and the summary"))
            return None
        inputs = self.inputs_of(name)
        remade = [s.name for s in self.stages if s.state == WILL_RUN and (inputs is None or s.name in inputs)]
        if remade:  # its inputs change: it runs whatever its own record says
            self.stages.append(PlannedStage(name, WILL_RUN, f"reads what {remade[0]} makes anew"))
            return None
        try:
            with planning():
                result = fn(*args, **kwargs)
        except WouldRun as would:
            self.stages.append(PlannedStage(name, WILL_RUN, would.reason))
            return None
        self.stages.append(PlannedStage(name, COMPLETE))
        return result


def recorded_changes(ctx: RunContext) -> list[str]:
    """The settings that differ from the run's recorded ``config.yaml`` (empty for a new run)."""
    if not ctx.layout.config.is_file():
        return []
    recorded = load_config(ctx.layout.config).model_dump(mode="json")
    return changed_settings(recorded, ctx.config.model_dump(mode="json"))


def make_plan(ctx: RunContext, run, inputs_of: Callable[[str], Optional[list[str]]]) -> Plan:
    """``run(ctx)`` (the method's pipeline) in plan mode; its log lines of skipped stages are held back."""
    ctx.plan = Plan(inputs_of)
    logger = logging.getLogger("wsss")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        run(ctx)
    finally:
        logger.setLevel(level)
        plan, ctx.plan = ctx.plan, None
    return plan


def describe(ctx: RunContext, plan: Plan, seconds: Optional[float] = None) -> str:
    """The plan as lines for the terminal; ``seconds``: the predicted time of the stages to run."""
    counts = {state: sum(s.state == state for s in plan.stages) for state in (COMPLETE, WILL_RUN, SCORES)}
    new = not ctx.run_dir.exists()
    lines = [f"plan for {ctx.run_dir} ({'new run; ' if new else ''}pipeline {ctx.method}): {len(plan.stages)} stages, "
             f"{counts[COMPLETE]} complete, {counts[WILL_RUN]} to run, {counts[SCORES]} scoring"]
    changes = recorded_changes(ctx)
    if changes:
        lines.append(f"settings changed since the run's config.yaml: {', '.join(changes)}")
    width = max(len(s.name) for s in plan.stages) if plan.stages else 0
    for s in plan.stages:
        lines.append(f"  {s.state:<9} {s.name:<{width}}  {s.reason}".rstrip())
    if counts[WILL_RUN] == 0:
        lines.append("nothing to train or make: `wsss run` would only score and write the report")
    elif seconds:
        lines.append(f"about {seconds / 60:.0f} min at the reference speeds of a 2-core CPU (wsss/run/clock.py)")
    return "\n".join(lines)
