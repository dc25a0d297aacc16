"""Planning a run without running it (``wsss run --plan``).

While :func:`planning` is on, the gates that decide whether a stage has work (a training's
finished model, :func:`wsss.engine.checkpoint.skip_finished`; a per-image folder's settings and
files, :func:`wsss.run.per_image.run_per_image`) raise :class:`WouldRun` with the reason instead
of doing the work, and return as usual when the stage is complete. The stage clock
(:class:`wsss.run.timer.StageTimer`) turns that into the plan.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

_planning = contextvars.ContextVar("wsss_planning", default=False)


class WouldRun(Exception):
    """A stage has work to do; ``reason`` says why (not made yet, other settings, images left)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def is_planning() -> bool:
    return _planning.get()


@contextlib.contextmanager
def planning() -> Iterator[None]:
    token = _planning.set(True)
    try:
        yield
    finally:
        _planning.reset(token)


def changed_settings(recorded: dict, wanted: dict, prefix: str = "") -> list[str]:
    """The dotted names of the settings whose values differ between two nested dicts, each as
    ``name (old -> new)``."""
    changes = []
    for key in sorted(set(recorded) | set(wanted), key=str):
        old, new = recorded.get(key, "unset"), wanted.get(key, "unset")
        name = f"{prefix}{key}"
        if isinstance(old, dict) and isinstance(new, dict):
            changes += changed_settings(old, new, f"{name}.")
        elif old != new:
            changes.append(f"{name} ({_short(old)} -> {_short(new)})")
    return changes


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."
