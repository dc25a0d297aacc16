"""The skeleton of every per-image stage: claim the output folder for one set of settings, skip
finished images, share the rest between processes and workers."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Callable, Optional

from .. import distributed
from ..data.voc import VocDataset
from ..io import remove_stale_temps, save_json
from ..parallel import map_images, resolve_workers
from .context import RunContext

log = logging.getLogger("wsss")


SETTINGS_FILE = "settings.json"
"""What a per-image folder's files were made with (written by :func:`claim_output_dir`)."""


def output_settings(folder: Path) -> Optional[dict]:
    """The settings a per-image folder's outputs were made with (None before its stage ran)."""
    record = Path(folder) / SETTINGS_FILE
    return json.loads(record.read_text()) if record.exists() else None


def claim_output_dir(folder: Path, settings: dict) -> None:
    """Make ``folder`` hold outputs of exactly these settings.

    Finished per-image outputs are reused on a re-run only when they were made with the same
    settings (recorded in ``settings.json``); outputs of other settings are discarded first, so a
    changed config never mixes old and new files. Temporary files of a killed run are removed.
    Under torchrun rank 0 does this while the others wait.
    """
    if distributed.is_main():
        _claim(folder, settings)
    distributed.barrier()


def run_per_image(ctx: RunContext, step: str, voc: VocDataset, out: Path, settings: dict,
                  finished: Callable[[str], Path], job: Callable, job_args: tuple, workers: int,
                  desc: str) -> None:
    """The skeleton of every per-image step (make-cam, make-aff-labels, make-pseudo, make-ssnet-pseudo).

    Claims ``out`` for ``settings`` (``claim_output_dir``), skips the images whose
    ``finished(image_id)`` file exists (each job writes that file last, so an interrupted run
    resumes where it stopped), gives this process its share of the rest under torchrun, runs
    ``job(*job_args)`` on them in ``workers`` processes (``map_images``), logs the throughput
    and waits for the other ranks.
    """
    claim_output_dir(out, settings)
    todo = distributed.shard([i for i, image_id in enumerate(voc.ids) if not finished(image_id).exists()])
    if not todo and distributed.world_size() == 1:
        log.info("%s: %s is complete (%d images), skipping", step, out, len(voc))
        return
    start = time.perf_counter()
    map_images(job, job_args, todo, workers, desc, ctx.progress)
    elapsed = time.perf_counter() - start
    log.info("%s: %d images in %.1f s (%.2f images/s, %d worker(s)%s)", step, len(todo), elapsed,
             len(todo) / max(elapsed, 1e-9), resolve_workers(workers),
             f", rank {distributed.rank()} of {distributed.world_size()}" if distributed.is_distributed() else "")
    distributed.barrier()


def _claim(folder: Path, settings: dict) -> None:
    record = folder / SETTINGS_FILE
    wanted = json.loads(json.dumps(settings, sort_keys=True, default=str))
    if folder.exists():
        if record.exists() and json.loads(record.read_text()) == wanted:
            remove_stale_temps(folder)
            return
        stale = sum(1 for p in folder.rglob("*") if p.is_file() and p != record)
        if stale:
            log.warning("%s: %d outputs were made with other settings; discarding them", folder, stale)
        shutil.rmtree(folder)
    save_json(record, wanted)
