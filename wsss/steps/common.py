"""What every step shares: the run directory, its config, device, datasets and logging."""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from .. import __version__, distributed
from ..config import PipelineConfig, config_to_yaml
from ..data.demo import demo_dataset_complete, generate_demo_dataset
from ..data.voc import VocDataset
from ..engine import resolve_device
from ..errors import WsssError
from ..io import atomic_path, remove_stale_temps, save_json
from ..parallel import map_images, resolve_workers

log = logging.getLogger("wsss")


@dataclass
class RunContext:
    """A run directory with its resolved config.

    Layout::

        <run_dir>/config.yaml        resolved config of the last command that found its dataset
        <run_dir>/run_info.json      versions, git commit, seed, hardware (written with it)
        <run_dir>/summary.json       metrics of every stage, updated as stages finish
        <run_dir>/cam/               classifier checkpoints and training log
        <run_dir>/cams/<split>/      per-image CAMs (.npz, float16)
        <run_dir>/eval/              metric JSON files
    """

    run_dir: Path
    config: PipelineConfig
    progress: bool = True
    device: torch.device = field(init=False)
    # config.yaml and run_info.json are written (once) when the first dataset is found, so a
    # command that fails on its inputs (a mistyped --set data.root) leaves the run's record alone
    record_config: bool = field(default=False, init=False)

    def __post_init__(self):
        self.run_dir = Path(self.run_dir)
        # under torchrun on CUDA: this process's GPU (after the CLI joined the process group)
        self.device = resolve_device(self.config.device)
        if distributed.is_distributed() and self.device.type == "cuda":
            self.device = torch.device("cuda", distributed.local_rank())
        self.progress = self.progress and distributed.is_main()

    def train_options(self) -> dict:
        """The run-wide TrainJob settings every training step passes on (AMP, SyncBN, checkpoints)."""
        cfg = self.config
        return {"amp": cfg.amp, "sync_bn": cfg.sync_bn, "checkpoint_every": cfg.checkpoint_every}

    def prepare(self, record_config: bool = True) -> None:
        """Create the run directory and its log (rank 0; the others wait). With ``record_config``
        the resolved config and run info are written once the command's dataset is found
        (:meth:`record`); evaluation commands pass False and never rewrite them."""
        self.record_config = record_config
        if distributed.is_main():
            self._prepare_files()
        distributed.barrier()

    def _prepare_files(self) -> None:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            probe = self.run_dir / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise WsssError(f"{self.run_dir}: run directory is not writable ({exc}); choose another --run-dir") from None
        add_file_logging(self.run_dir / "log.txt")
        if self.config.data.demo is not None:
            self.data_root()  # generated here, once, before other ranks read it

    def record(self) -> None:
        """Write the resolved config and run info (rank 0, once, when :meth:`prepare` asked for it)."""
        if not self.record_config or not distributed.is_main():
            return
        self.record_config = False
        with atomic_path(self.run_dir / "config.yaml") as tmp:
            tmp.write_text(config_to_yaml(self.config))
        save_json(self.run_dir / "run_info.json", run_info(self.config.seed, self.device))

    def data_root(self) -> Path:
        """The dataset root; generates the demo dataset there first when the config asks for it."""
        data = self.config.data
        if data.demo is not None and not demo_dataset_complete(data.root):
            log.info("generating the demo dataset in %s", data.root)
            generate_demo_dataset(data.root, data.demo.num_train, data.demo.num_val, data.demo.image_size, data.demo.seed)
        return Path(data.root)

    def dataset(self, split: str, root: Optional[Path] = None, require_masks: bool = False) -> VocDataset:
        root = Path(root) if root is not None else self.data_root()
        voc = VocDataset(root, split, labels=self.config.data.labels, require_masks=require_masks)
        self.record()  # the inputs are there: this config is the run's now
        return voc

    def output_name(self, split: str, root: Optional[Path]) -> str:
        """Folder name of a split's outputs; a foreign dataset root gets its own prefix."""
        if root is None or Path(root).resolve() == Path(self.config.data.root).resolve():
            return split
        return f"{Path(root).resolve().name}-{split}"

    def update_summary(self, key: str, value) -> None:
        if not distributed.is_main():
            return
        path = self.run_dir / "summary.json"
        summary = json.loads(path.read_text()) if path.exists() else {}
        summary[key] = value
        save_json(path, summary)

    def summary(self) -> dict:
        path = self.run_dir / "summary.json"
        return json.loads(path.read_text()) if path.exists() else {}


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
    import shutil

    record = folder / "settings.json"
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


def git_commit() -> Optional[str]:
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def git_dirty() -> Optional[bool]:
    """True when the checkout wsss runs from has uncommitted changes to tracked files."""
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                             capture_output=True, text=True, timeout=5)
        return bool(out.stdout.strip()) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict:
    """Versions of wsss and the packages that change its numbers."""
    from importlib import metadata

    versions = {"wsss": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
                "numpy": np.__version__}
    for name in ("pydensecrf2", "pydantic", "scipy", "pillow"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def hardware_info(device: torch.device) -> dict:
    cuda = device.type == "cuda"
    return {
        "hostname": platform.node(),
        "cpu": _cpu_model() or platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(device) if cuda else None,
        "gpu_count": torch.cuda.device_count() if cuda else 0,
        "world_size": distributed.world_size(),
        "memory_gib": _memory_gib(),
    }


def _memory_gib() -> Optional[float]:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30, 1)
    except (OSError, ValueError, AttributeError):
        return None


def _cpu_model() -> Optional[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def run_info(seed: int, device: torch.device) -> dict:
    """What makes a run reproducible: seed, code (git commit), package versions, hardware, command."""
    versions = package_versions()
    hardware = hardware_info(device)
    return {
        "wsss": __version__,
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "seed": seed,
        "python": versions["python"],
        "torch": versions["torch"],
        "numpy": versions["numpy"],
        "device": str(device),
        "gpu": hardware["gpu"],
        "cpu": hardware["cpu"],
        "torch_threads": torch.get_num_threads(),
        "command": " ".join(sys.argv),
        "hostname": hardware["hostname"],
        "cpu_count": hardware["cpu_count"],
        "memory_gib": hardware["memory_gib"],
        "versions": versions,
        "hardware": hardware,
    }


def add_file_logging(path: Path) -> None:
    logger = logging.getLogger("wsss")
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename) == path.resolve():
            return
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)


def image_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 0..255 on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1).float()


class StageTimer:
    """The stage clock of `wsss run`: ``timed(name, fn, *args)`` runs one stage, logs its wall time
    and records it in summary.json's ``timings_s`` as the stage ends, so a run that stops later
    still shows where its time went."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx

    def __call__(self, name: str, fn, *args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds = round(time.perf_counter() - start, 2)
        log.info("%s done in %.1f s", name, seconds)
        self.ctx.update_summary("timings_s", {**self.ctx.summary().get("timings_s", {}), name: seconds})
        return result
