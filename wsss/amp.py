"""Mixed precision: which autocast dtype a run uses, and the context that applies it.

``amp`` in the config (and ``--amp`` of ``wsss predict``):

* ``auto`` (default): on CUDA bf16 where the GPU supports it, else fp16 (training then scales
  the loss with a GradScaler); on CPU off, so CPU results stay float32 and bit-reproducible.
* ``on``: as auto on CUDA; bf16 on CPU too.
* ``bf16`` / ``fp16``: that dtype wherever the run is.
* ``off``: float32 everywhere.

Autocast only changes the precision of the matrix products inside the network; every step
casts the network's output back to float32 before its own arithmetic (CAM normalisation, the
random walk, softmax, CRF), and the optimiser keeps float32 weights.
"""

from __future__ import annotations

import contextlib
from typing import Optional

import torch

AMP_MODES = ("auto", "on", "off", "bf16", "fp16")


def autocast_dtype(mode: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype for ``mode`` on ``device``; None means float32 (no autocast)."""
    if mode not in AMP_MODES:
        raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}, not {mode!r}")
    if mode == "off":
        return None
    if mode == "bf16":
        return torch.bfloat16
    if mode == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if mode == "on" else None


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    """``torch.autocast`` for ``dtype`` on ``device``, or a no-op context when dtype is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def needs_grad_scaler(device: torch.device, dtype: Optional[torch.dtype]) -> bool:
    """fp16 gradients underflow without loss scaling; bf16 has float32's exponent range."""
    return dtype == torch.float16 and device.type == "cuda"


def dtype_name(dtype: Optional[torch.dtype]) -> str:
    return "float32" if dtype is None else str(dtype).replace("torch.", "")
