"""What every step shares: the run directory, its config, device, datasets and logging."""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .. import __version__
from ..config import PipelineConfig, config_to_yaml
from ..data.demo import demo_dataset_complete, generate_demo_dataset
from ..data.voc import VocDataset
from ..engine import resolve_device
from ..errors import WsssError
from ..io import atomic_path, save_json

log = logging.getLogger("wsss")


@dataclass
class RunContext:
    """A run directory with its resolved config.

    Layout::

        <run_dir>/config.yaml        resolved config of the last invocation
        <run_dir>/run_info.json      versions, git commit, seed, hardware
        <run_dir>/summary.json       metrics of every stage, updated as stages finish
        <run_dir>/cam/               classifier checkpoints and training log
        <run_dir>/cams/<split>/      per-image CAMs (.npz, float16)
        <run_dir>/eval/              metric JSON files
    """

    run_dir: Path
    config: PipelineConfig
    progress: bool = True
    device: torch.device = field(init=False)

    def __post_init__(self):
        self.run_dir = Path(self.run_dir)
        self.device = resolve_device(self.config.device)

    def prepare(self) -> None:
        """Create the run directory, write the resolved config and run info."""
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            probe = self.run_dir / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise WsssError(f"{self.run_dir}: run directory is not writable ({exc}); choose another --run-dir") from None
        with atomic_path(self.run_dir / "config.yaml") as tmp:
            tmp.write_text(config_to_yaml(self.config))
        save_json(self.run_dir / "run_info.json", run_info(self.config.seed, self.device))
        add_file_logging(self.run_dir / "log.txt")

    def data_root(self) -> Path:
        """The dataset root; generates the demo dataset there first when the config asks for it."""
        data = self.config.data
        if data.demo is not None and not demo_dataset_complete(data.root):
            log.info("generating the demo dataset in %s", data.root)
            generate_demo_dataset(data.root, data.demo.num_train, data.demo.num_val, data.demo.image_size, data.demo.seed)
        return Path(data.root)

    def dataset(self, split: str, root: Optional[Path] = None, require_masks: bool = False) -> VocDataset:
        root = Path(root) if root is not None else self.data_root()
        return VocDataset(root, split, labels=self.config.data.labels, require_masks=require_masks)

    def output_name(self, split: str, root: Optional[Path]) -> str:
        """Folder name of a split's outputs; a foreign dataset root gets its own prefix."""
        if root is None or Path(root).resolve() == Path(self.config.data.root).resolve():
            return split
        return f"{Path(root).resolve().name}-{split}"

    def update_summary(self, key: str, value) -> None:
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
    changed config never mixes old and new files.
    """
    import shutil

    record = folder / "settings.json"
    wanted = json.loads(json.dumps(settings, sort_keys=True, default=str))
    if folder.exists():
        if record.exists() and json.loads(record.read_text()) == wanted:
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


def run_info(seed: int, device: torch.device) -> dict:
    return {
        "wsss": __version__,
        "git_commit": git_commit(),
        "seed": seed,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "command": " ".join(sys.argv),
        **hardware_info(),
    }


def hardware_info() -> dict:
    """The machine, for the report: host, CPU model and cores, memory (None where unknown)."""
    cpu_model = memory_gib = None
    try:
        cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                          if line.startswith("model name")), None)
        memory_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30, 1)
    except (OSError, ValueError, AttributeError):
        pass
    return {"hostname": platform.node() or None, "cpu_model": cpu_model, "cpu_count": os.cpu_count(),
            "memory_gib": memory_gib}


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
