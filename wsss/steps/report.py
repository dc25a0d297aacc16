"""`wsss report <run-dir>`: the run's HTML report (also written at the end of `wsss run`)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

from ..report import build_report

log = logging.getLogger("wsss")


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
