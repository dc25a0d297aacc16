"""Where and how reproducibly a command computes: the device, and the seeded generators."""

from __future__ import annotations

import numpy as np
import torch

from ..config import DEVICES, valid_device
from ..errors import WsssError


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU, or a name that is not
    auto, cpu, cuda or cuda:N, is an error."""
    if not valid_device(name):
        raise WsssError(f"device {name!r}: not a device wsss uses; use {DEVICES}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise WsssError(f"device {name!r} asked for but no CUDA device is available; use --device cpu or auto")
    device = torch.device(name)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise WsssError(f"device {name!r}: there are {torch.cuda.device_count()} CUDA devices (cuda:0 ...); "
                        "pick one of them")
    return device


def seed_everything(seed: int) -> None:
    """Seed torch and numpy's global generators (model initialisation)."""
    torch.manual_seed(seed)
    np.random.seed(seed % (2 ** 32))
