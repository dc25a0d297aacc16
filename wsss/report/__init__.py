"""One self-contained HTML page per run: config, metrics, plots, loss curves and a gallery.

    from wsss.report import build_report
    build_report("runs/msrc")            # -> runs/msrc/report.html
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

from ..io import atomic_path
from ..run.layout import RunLayout
from .page import render
from .run_data import RunData

log = logging.getLogger("wsss")


def build_report(run_dir: str | Path, output: Optional[str | Path] = None, data_root: Optional[str | Path] = None,
                 images: Optional[list[str]] = None, device: str = "cpu") -> Path:
    """Write the report of ``run_dir`` (to ``<run_dir>/report.html`` unless ``output``); returns its path.

    Reads the run directory only; ``images`` names image ids to show in the gallery besides the
    best, median and worst ones (default: two evenly spaced ids of each split).
    """
    run = RunData(Path(run_dir), Path(data_root) if data_root else None)
    html = render(run, images, device)
    target = Path(output) if output else RunLayout(run.run_dir).report
    with atomic_path(target) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return target


def run(run_dir: Path, output: Optional[Path] = None, data_root: Optional[Path] = None,
        images: Optional[list[str]] = None, device: str = "cpu") -> Path:
    start = time.perf_counter()
    path = build_report(run_dir, output, data_root, images, device)
    size_kib = path.stat().st_size / 1024
    log.info("report: %s (%.0f KiB) in %.1f s", path, size_kib, time.perf_counter() - start)
    return path


def run_safely(run_dir: Path) -> Optional[Path]:
    """The report at the end of a pipeline: a failure is logged, never raised, so it cannot cost
    the run's results (they are all on disk already; `wsss report` can retry)."""
    try:
        return run(run_dir)
    except Exception as exc:  # noqa: BLE001 - any failure here must leave the finished run intact
        log.error("report: could not write %s/report.html (%s: %s); the run's results are unaffected; "
                  "retry with `wsss report %s`", run_dir, type(exc).__name__, exc, run_dir)
        return None


__all__ = ["RunData", "build_report", "render", "run", "run_safely"]
