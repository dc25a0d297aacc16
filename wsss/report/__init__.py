"""One self-contained HTML page per run: config, metrics, plots, loss curves and a gallery.

    from wsss.report import build_report
    build_report("runs/msrc")            # -> runs/msrc/report.html
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..io import atomic_path
from .page import render
from .run_data import RunData

REPORT_NAME = "report.html"


def build_report(run_dir: str | Path, output: Optional[str | Path] = None, data_root: Optional[str | Path] = None,
                 images: Optional[list[str]] = None, device: str = "cpu") -> Path:
    """Write the report of ``run_dir`` (to ``<run_dir>/report.html`` unless ``output``); returns its path.

    Reads the run directory only; ``images`` names image ids to show in the gallery besides the
    best, median and worst ones (default: two evenly spaced ids of each split).
    """
    run = RunData(Path(run_dir), Path(data_root) if data_root else None)
    html = render(run, images, device)
    target = Path(output) if output else run.run_dir / REPORT_NAME
    with atomic_path(target) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return target


__all__ = ["REPORT_NAME", "RunData", "build_report", "render"]
