"""The end of `wsss run`: the stage table, the run report and what to do next.

Both pipelines finish here, so a newcomer who has just run ``make demo`` (or their own
config) reads the same closing lines: where the report is, the one command that segments
their own photos with the model the run just trained, and how to start on their own data.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .context import RunContext


@dataclass
class RunOutcome:
    """What a finished ``wsss run`` hands to its closing lines: the scores, the final model, and
    whether that model also gives saliency maps (SSNet)."""

    summary: dict
    model: Path
    saliency: bool = False


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


def next_steps(predictions: Path, model: Path, report_path: Optional[Path], saliency: bool = False) -> str:
    """The closing lines: the report, ``wsss predict`` with ``model``, and a config to start from."""
    q = lambda path: shlex.quote(str(path))  # noqa: E731 - paths with spaces stay one shell word
    outputs = " and saliency maps" if saliency else ""
    lines = ["", "What next:"]
    if report_path is not None:
        lines.append(f"  * The whole run on one page (scores, CAMs, pseudo labels, masks): open {report_path}")
    lines += [
        f"  * Segment your own photos with the model this run trained (masks{outputs} as PNGs, overlays as JPEGs):",
        f"      wsss predict --checkpoint {q(model)} --input YOUR_PHOTOS/ --output {q(predictions)}",
        "  * Train on your own tagged photos (tags only: no mask is needed anywhere; README, 'Your own tagged",
        "    images'). A CSV of `image,tags` rows (tags separated by ; or spaces) becomes a dataset with",
        "      wsss import --images YOUR_PHOTOS/ --tags tags.csv --out data/mine",
        "    and configs/msrc.yaml (a CPU schedule for ~300 px photos; configs/voc12.yaml is the paper's GPU",
        "    schedule) trains on it, with a saliency model of its own on DUTS-TR (ssnet.saliency.root; without",
        "    it: --set saliency.seeds=false --set saliency.walk_weight=0):",
        "      wsss run --config configs/msrc.yaml --set data.root=data/mine --run-dir runs/mine",
    ]
    return "\n".join(lines)


def finish(ctx: RunContext, outcome: RunOutcome, write_report) -> None:
    """Print the stage table, write the run report with ``write_report(run_dir) -> path or None``
    (a failure there is logged, never raised) and print the next steps for the run's final model."""
    print("\n" + stage_table(outcome.summary))
    report_path = write_report(ctx.run_dir)  # None on failure: the results above stay
    print(next_steps(ctx.layout.predictions, outcome.model, report_path, outcome.saliency))
