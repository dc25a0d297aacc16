"""Optional C++ kernels, compiled once on first use (``torch.utils.cpp_extension``).

Only the random walk's hot loop lives here (``random_walk.cpp``): ``mean_abs_diffs``, the L1
distances between every pixel and its neighbours that make AffinityNet's affinities
(``wsss.affinity``). The pure-torch version needs three passes over memory per offset and
took about half of a random walk's time on CPU; the fused kernel is about 3x faster.
(A stencil kernel for the walk's matrix products was tried too and was no faster than
torch's CSR product on 2 threads, so the products stay in torch.)

Everything works without it: when no C++ compiler is found, the build fails, or the
environment sets ``WSSS_NATIVE=0``, ``kernels()`` returns None (with one warning saying
why) and callers use their torch code. The build (about 40 s) lands in torch's extension
cache (``TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``), in a folder of its own
per Python environment (``build_directory()``), and is reused by every later process; ``make`` builds it while setting up ``.venv`` (``python -m wsss.native``),
so runs and tests do not pay for it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

log = logging.getLogger("wsss")

SOURCE = Path(__file__).with_name("random_walk.cpp")
ENV_SWITCH = "WSSS_NATIVE"
"""Set to 0 to never build or use the C++ kernels."""

EXTENSION_NAME = "wsss_native"
STALE_LOCK_S = 600
"""A build lock older than this was left by a build that was killed: torch would wait on it forever."""

_lock = threading.Lock()
_state: dict[str, object] = {"tried": False, "module": None, "error": None}


def enabled() -> bool:
    """False when the environment switches the C++ kernels off (``WSSS_NATIVE=0``)."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def kernels() -> ModuleType | None:
    """The compiled kernels, building them on the first call; None when unavailable.

    A failed build is not retried in the same process; ``build_error()`` says what failed.
    """
    if not enabled():
        return None
    with _lock:
        if not _state["tried"]:
            _state["tried"] = True
            try:
                _state["module"] = _build()
            except Exception as error:  # no compiler, no Python headers, a compile error...
                _state["error"] = f"{type(error).__name__}: {error}"
                log.warning(
                    "wsss: the C++ random-walk kernel could not be built (%s); using the slower "
                    "pure-torch code. Install g++ to get it, or set %s=0 to silence this.",
                    str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__,
                    ENV_SWITCH,
                )
        return _state["module"]  # type: ignore[return-value]


def build_error() -> str | None:
    """Why the last build attempt failed, or None."""
    return _state["error"]  # type: ignore[return-value]


def _build() -> ModuleType:
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        raise RuntimeError(f"no C++ compiler ({compiler!r}) on PATH")
    from torch.utils import cpp_extension

    build_dir = build_directory()
    _remove_stale_lock(build_dir / "lock")
    first = not any(build_dir.glob(f"{EXTENSION_NAME}*.so"))  # every worker process loads it: be quiet then
    log.log(logging.INFO if first else logging.DEBUG,
            "wsss: loading the C++ random-walk kernel (compiled on first use: about a minute)")
    return cpp_extension.load(
        name=EXTENSION_NAME,
        sources=[str(SOURCE)],
        extra_cflags=["-O3", "-fopenmp"],
        extra_ldflags=["-fopenmp"],
        build_directory=str(build_dir),
        verbose=False,
    )


def build_directory() -> Path:
    """Where the kernel is built: one folder per Python environment and torch version.

    torch's default (one folder per extension name) would be shared by every checkout and
    venv on the machine, and ninja rebuilds whenever the compile command changes (the torch
    include paths differ between venvs): two checkouts would keep rebuilding each other's.
    """
    import torch

    base = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or Path.home() / ".cache" / "torch_extensions")
    key = hashlib.sha1(f"{sys.prefix}|{torch.__version__}".encode()).hexdigest()[:12]
    folder = base / f"{EXTENSION_NAME}-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _remove_stale_lock(lock: Path) -> None:
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return
    if age > STALE_LOCK_S:
        log.warning("wsss: removing %s, left %.0f s ago by a C++ kernel build that did not finish", lock, age)
        lock.unlink(missing_ok=True)


def main() -> int:
    """``python -m wsss.native``: build the kernels now; exit status 0 even when unavailable."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    module = kernels()
    if module is None:
        print("wsss native kernels: not available" + (f" ({build_error()})" if build_error() else " (disabled)"))
    else:
        print(f"wsss native kernels: ready ({module.__file__})")
    return 0
