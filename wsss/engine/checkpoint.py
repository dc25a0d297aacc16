"""Files of trained networks: written atomically, read with ``weights_only=True`` (tensors and plain
containers, never code), checked against the network they are loaded into.

A training stage writes ``checkpoint.pt`` (weights, optimiser, step, RNG: what a stopped
training resumes from) and, at the end, ``model.pt`` (weights, ``kind``, ``fingerprint`` of the
settings and ``meta``: class names, backbone, output stride, head; what everything else reads).
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn as nn

from ..errors import WsssError
from ..io import atomic_path
from ..run.layout import FINAL_MODEL, TRAINING_CHECKPOINT
from .plan import WouldRun, is_planning

log = logging.getLogger("wsss")


def config_fingerprint(obj: Any) -> str:
    """Short hash of a JSON-able object: ties a checkpoint to the settings that made it."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


ADDED_TRAINING_KEYS = {"head_skip": False, "saliency_per_sample": 1}
"""Settings added after models were trained: left out of a training fingerprint at these defaults,
so that the finished models of earlier configs still count as finished."""


def training_settings(section) -> dict:
    """A config section as a training fingerprint sees it: every key, less those of
    :data:`ADDED_TRAINING_KEYS` at their default."""
    dump = section.model_dump(mode="json")
    return {k: v for k, v in dump.items() if k not in ADDED_TRAINING_KEYS or v != ADDED_TRAINING_KEYS[k]}


def save_checkpoint(path: Path, payload: dict) -> None:
    """Write ``payload`` atomically; through a Python file, so a full disk is an OSError (a clear
    error from :func:`atomic_path`), not torch's "unexpected pos"."""
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            torch.save(payload, fh)
    except RuntimeError as exc:  # torch's own writer reports a failed write so (a full disk)
        raise WsssError(f"{path}: cannot write ({first_line(exc)}); free space or choose another --run-dir") from None


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_checkpoint(path: Path, map_location="cpu") -> Any:
    """Load a torch file with ``weights_only=True``: tensors and plain containers only, never code.

    A missing, empty, damaged or refused file (one that holds other objects) is a one-line
    :class:`WsssError`.
    """
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise WsssError(f"{path}: checkpoint not found") from None
    except pickle.UnpicklingError:  # weights_only refused an object: never suggest loading it anyway
        raise WsssError(f"{path}: not a wsss checkpoint (it holds objects wsss does not load); "
                        "pass a file that wsss wrote") from None
    except Exception as exc:
        reason = "empty file" if path.is_file() and path.stat().st_size == 0 else first_line(exc)
        if "weights_only" in reason:
            reason = "it holds objects wsss does not load"
        raise WsssError(f"{path}: cannot load checkpoint ({reason}); delete it and re-run") from None


def read_wsss_file(path: Path, training: bool = False) -> dict:
    """A file wsss wrote: a final ``model.pt``, or with ``training`` the ``checkpoint.pt`` a
    stopped training resumes from; each is a dict with the weights under ``model``."""
    path = Path(path)
    payload = load_checkpoint(path)
    if not isinstance(payload, dict) or not isinstance(payload.get("model"), dict):
        raise WsssError(f"{path}: not a wsss checkpoint (holds a {type(payload).__name__} without model weights); "
                        "pass a model.pt that wsss wrote")
    if not training and "optimizer" in payload:
        raise WsssError(f"{path}: this is a training checkpoint (what a stopped training resumes from); "
                        f"use {path.parent / FINAL_MODEL}, written when the training finishes")
    return payload


def model_fingerprint(path: Path) -> Optional[str]:
    """The settings hash of the training that made a model file (recorded with its outputs)."""
    return read_wsss_file(path).get("fingerprint")


def finished_model(path: Path, fingerprint: str) -> bool:
    """True when ``path`` holds a final model trained with the settings of ``fingerprint`` through
    its whole schedule (a model written early by ``max_steps`` is resumed, not reused)."""
    if not Path(path).exists():
        return False
    payload = read_wsss_file(Path(path))
    meta = payload.get("meta") or {}
    complete = meta.get("steps", 0) >= meta.get("total_steps", 0)
    return payload.get("fingerprint") == fingerprint and complete


def skip_finished(command: str, final: Path, fingerprint: str) -> bool:
    """True when ``final`` holds the finished model of these settings (:func:`finished_model`):
    a training command then logs that it skips and returns it instead of training again."""
    if not finished_model(final, fingerprint):
        if is_planning():
            raise WouldRun(_training_state(final, fingerprint))
        return False
    log.info("%s: %s is complete, skipping", command, final)
    return True


def _training_state(final: Path, fingerprint: str) -> str:
    """Why a training has work left (for ``wsss run --plan``)."""
    checkpoint = Path(final).parent / TRAINING_CHECKPOINT
    if checkpoint.exists():
        payload = read_wsss_file(checkpoint, training=True)
        if payload.get("fingerprint") == fingerprint:
            return f"resumes at step {payload.get('step', 0)} ({checkpoint})"
    if Path(final).exists() or checkpoint.exists():
        return f"{final.parent} was trained with other settings: trained anew"
    return "not trained yet"


def state_mismatch(model: nn.Module, state: dict, shown: int = 3) -> str:
    """Which keys of ``state`` are missing, unexpected or of another shape than ``model``'s (the
    first ``shown`` of each)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    reshaped = [f"{k} {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} here" for k in own
                if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != own[k].shape]
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped)):
        if keys:
            more = f", ... {len(keys) - shown} more" if len(keys) > shown else ""
            parts.append(f"{len(keys)} {label}: {', '.join(keys[:shown])}{more}")
    return "; ".join(parts)


def load_weights(model: nn.Module, state: dict, path: Path, fix: str) -> None:
    """``model.load_state_dict(state)`` (strict); a misfit names the keys at fault and ``fix``."""
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, ValueError, AttributeError) as exc:
        reason = state_mismatch(model, state) or first_line(exc)
        raise WsssError(f"{path}: does not fit this model ({reason}); {fix}") from None


def load_model_weights(model: nn.Module, path: Path, kind: str, output_stride: Optional[int] = None) -> dict:
    """Load a final ``model.pt`` of the given kind into ``model``; returns its metadata.

    ``output_stride``: the one ``model`` was built with. A model trained at another stride fits
    (the stride only sets the dilations), so the difference is a warning and ``model``'s is used.
    """
    payload = read_wsss_file(path)
    if payload.get("kind") != kind:
        raise WsssError(f"{path}: holds a {payload.get('kind')!r} model, but this stage needs a {kind!r} model")
    load_weights(model, payload["model"], path, "was it trained with another backbone or class list?")
    meta = payload.get("meta") or {}
    trained = meta.get("output_stride")
    if output_stride is not None and trained is not None and trained != output_stride:
        log.warning("%s: trained with output_stride %s, the config asks for %s; using %s (the weights fit either "
                    "stride, the outputs differ)", path, trained, output_stride, output_stride)
    return meta
