"""What makes a run reproducible, recorded in ``run_info.json``: seed, code (git commit), package
versions, hardware and the command."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .. import __version__, distributed


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
