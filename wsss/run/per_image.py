"""The skeleton of every per-image stage: claim the output folder for one set of settings, skip
finished images, share the rest between processes and workers."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Callable, Optional

from .. import distributed
from ..data.voc import VocDataset
from ..engine.plan import WouldRun, changed_settings, is_planning
from ..errors import WsssError
from ..io import TEMP_MARK, read_json, remove_stale_temps, save_json
from ..names import inside
from ..parallel import map_images, resolve_workers
from .context import RunContext

log = logging.getLogger("wsss")


SETTINGS_FILE = "settings.json"
"""What a per-image folder's files were made with (written by :func:`claim_output_dir`)."""


def as_recorded(settings: dict) -> dict:
    """``settings`` as ``settings.json`` holds them (JSON types, keys sorted): what a folder's
    record is compared with."""
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def output_settings(folder: Path) -> Optional[dict]:
    """The settings a per-image folder's outputs were made with (None before its stage ran)."""
    return read_settings(Path(folder) / SETTINGS_FILE)


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
                  desc: str, scores: tuple[str, ...] = ()) -> None:
    """The skeleton of every per-image step (make-cam, make-aff-labels, make-pseudo, make-ssnet-pseudo).

    Claims ``out`` for ``settings`` (``claim_output_dir``), skips the images whose
    ``finished(image_id)`` file exists (each job writes that file last, so an interrupted run
    resumes where it stopped), gives this process its share of the rest under torchrun, runs
    ``job(*job_args)`` on them in ``workers`` processes (``map_images``), logs the throughput
    and waits for the other ranks. ``scores``: the kinds of summary.json's scores of these
    outputs (``<kind>/<out's name>``), dropped before any image is made anew: outputs remade in a
    run that cannot score them (no masks) must not keep the old outputs' score.
    """
    # ids are plain names (VocDataset) and writers refuse to replace links, so an output can only
    # leave ``out`` through a linked folder: each folder the outputs go to is checked once
    for folder in {finished(image_id).parent for image_id in voc.ids}:
        inside(folder, out)
    if is_planning():
        _plan(out, settings, [finished(image_id) for image_id in voc.ids])
        return
    claim_output_dir(out, settings)
    todo = distributed.shard([i for i, image_id in enumerate(voc.ids) if not finished(image_id).exists()])
    if not todo and distributed.world_size() == 1:
        log.info("%s: %s is complete (%d images), skipping", step, out, len(voc))
        return
    for kind in scores:
        ctx.update_summary(f"{kind}/{out.name}", None)
    start = time.perf_counter()
    map_images(job, job_args, todo, workers, desc, ctx.progress)
    ctx.record()  # work done: these settings are the run's now
    elapsed = time.perf_counter() - start
    log.info("%s: %d images in %.1f s (%.2f images/s, %d worker(s)%s)", step, len(todo), elapsed,
             len(todo) / max(elapsed, 1e-9), resolve_workers(workers),
             f", rank {distributed.rank()} of {distributed.world_size()}" if distributed.is_distributed() else "")
    distributed.barrier()


def _plan(out: Path, settings: dict, files: list[Path]) -> None:
    """``wsss run --plan``: return when the folder is complete for these settings, else raise
    :class:`WouldRun` naming the settings that changed or the images left."""
    wanted = as_recorded(settings)
    recorded = output_settings(out) if out.is_dir() else None
    if recorded is None:
        raise WouldRun("not made yet")
    if recorded != wanted:
        changes = changed_settings(recorded, wanted)
        raise WouldRun(f"{out} was made with other settings, discarded: {', '.join(changes[:4])}"
                       + (f" and {len(changes) - 4} more" if len(changes) > 4 else ""))
    left = sum(not path.exists() for path in files)
    if left:
        raise WouldRun(f"{left} of {len(files)} images left")


OUTPUT_MARKER = ".wsss-output"
"""Written into every per-image folder wsss claims: the folder is wsss's, and a changed setting
may discard the files it made there."""

OUTPUT_PATTERNS = ("*.npz", "*.png", SETTINGS_FILE, OUTPUT_MARKER)
"""The files a per-image stage writes (in the folder and its subfolders): all that a changed
setting ever discards; anything else in the folder is left alone."""


def _own_files(folder: Path) -> list[Path]:
    return [p for pattern in OUTPUT_PATTERNS for p in folder.rglob(pattern) if p.is_file() and not p.is_symlink()]


def _foreign_files(folder: Path, own: list[Path]) -> list[Path]:
    """The files under ``folder`` that are neither ``own`` nor wsss's temporaries."""
    own = set(own)
    return [p for p in folder.rglob("*") if not p.is_dir() and p not in own and TEMP_MARK not in p.name]


def read_settings(record: Path) -> Optional[dict]:
    """A folder's recorded settings; None when absent or unreadable (a damaged record counts as
    other settings: its outputs are made again)."""
    try:
        value = read_json(record)
    except (WsssError, OSError) as exc:
        log.warning("%s; its folder's outputs will be made again", exc)
        return None
    return value if isinstance(value, dict) else None


def _claim(folder: Path, settings: dict) -> None:
    record = folder / SETTINGS_FILE
    wanted = as_recorded(settings)
    if folder.exists() and not folder.is_dir():
        raise WsssError(f"{folder}: is not a folder; choose another output folder")
    if folder.is_dir():
        if read_settings(record) == wanted:
            remove_stale_temps(folder)
            (folder / OUTPUT_MARKER).touch()
            return
        own = _own_files(folder)
        foreign = _foreign_files(folder, own)
        # other files are refused unless the folder carries wsss's marker (a folder made before
        # the marker existed holds nothing but wsss's files, so it passes too)
        if foreign and not (folder / OUTPUT_MARKER).is_file():
            raise WsssError(f"{folder}: holds files wsss did not write (e.g. {foreign[0].name}); wsss writes its "
                            "outputs only into an empty folder or one it made: choose another output folder")
        stale = [p for p in own if p.name not in (SETTINGS_FILE, OUTPUT_MARKER)]
        if stale:
            log.warning("%s: %d outputs were made with other settings; discarding them", folder, len(stale))
        for path in own:
            path.unlink()
        remove_stale_temps(folder)
        for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                sub.rmdir()  # only when empty: someone else's files keep their folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / OUTPUT_MARKER).touch()
    save_json(record, wanted)
