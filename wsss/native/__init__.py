"""Optional C++ kernels, compiled once on first use (``torch.utils.cpp_extension``).

Only the random walk's hot loop lives here (``random_walk.cpp``): ``mean_abs_diffs``, the L1
distances between every pixel and its neighbours that make AffinityNet's affinities
(``wsss.walk.affinity``). The pure-torch version needs three passes over memory per offset and
took about half of a random walk's time on CPU; the fused kernel is about 3x faster.
(A stencil kernel for the walk's matrix products was tried too and was no faster than
torch's CSR product on 2 threads, so the products stay in torch.)

Everything works without it: when no C++ compiler is found, the build fails, or the
environment sets ``WSSS_NATIVE=0``, ``kernels()`` returns None (with one warning saying
why) and callers use their torch code. The build (about 40 s) lands in torch's extension
cache (``TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``), in a folder of its
own per Python environment (``build_directory()``), and is reused by every later process;
``make`` builds it while setting up ``.venv`` (``python -m wsss.native``), so runs and tests
do not pay for it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import threading
from pathlib import Path
from types import ModuleType

from wsss.io import atomic_path

log = logging.getLogger("wsss")

SOURCE = Path(__file__).with_name("random_walk.cpp")
ENV_SWITCH = "WSSS_NATIVE"
"""Set to 0 to never build or use the C++ kernels."""

EXTENSION_NAME = "wsss_native"

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


CFLAGS = ["-O3", "-fopenmp"]
LDFLAGS = ["-fopenmp"]


def _build() -> ModuleType:
    """Load the built kernel, building it first when it is missing or stale.

    A built kernel is loaded directly (``stamp.json`` records the hash of what it was built
    from), not through ``cpp_extension.load``: that takes torch's build lock, a plain file,
    on every call, and a process killed while holding it (say a worker of a stopped
    make-psa-pseudo) would leave every later load waiting forever. Builds are serialised by an
    ``flock``, which the kernel releases when its holder dies; whoever holds it removes a
    torch lock file left behind by a killed build.
    """
    import fcntl

    build_dir = build_directory()
    stamp_file, wanted = build_dir / "stamp.json", _build_hash()
    if (built := _read_stamp(stamp_file, wanted)) is not None:
        return _load_library(built)
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        raise RuntimeError(f"no C++ compiler ({compiler!r}) on PATH")
    from torch.utils import cpp_extension

    with open(build_dir / "wsss-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building: wait for it
        if (built := _read_stamp(stamp_file, wanted)) is not None:
            return _load_library(built)
        (build_dir / "lock").unlink(missing_ok=True)  # torch's lock: stale, since we hold ours
        log.info("wsss: building the C++ random-walk kernel (once per Python environment, about a minute)")
        module = cpp_extension.load(name=EXTENSION_NAME, sources=[str(SOURCE)], extra_cflags=CFLAGS,
                                    extra_ldflags=LDFLAGS, build_directory=str(build_dir), verbose=False)
        with atomic_path(stamp_file) as tmp:
            tmp.write_text(json.dumps({"hash": wanted, "library": module.__file__}))
    return module


def _build_hash() -> str:
    """What the built library depends on: the source, the flags, torch and Python."""
    import torch

    parts = [SOURCE.read_bytes(), " ".join(CFLAGS + LDFLAGS).encode(), torch.__version__.encode(),
             sys.version.encode()]
    return hashlib.sha256(b"\0".join(parts)).hexdigest()


def _read_stamp(stamp_file: Path, wanted: str) -> Path | None:
    """The library recorded in ``stamp_file`` when it was built from ``wanted`` and exists."""
    try:
        stamp = json.loads(stamp_file.read_text())
    except (OSError, ValueError):
        return None
    library = Path(stamp.get("library", ""))
    return library if stamp.get("hash") == wanted and library.is_file() else None


def _load_library(path: Path) -> ModuleType:
    import torch  # noqa: F401  (the extension links against libtorch: load that first)

    spec = importlib.util.spec_from_file_location(EXTENSION_NAME, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def main() -> int:
    """``python -m wsss.native``: build the kernels now; exit status 0 even when unavailable."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    module = kernels()
    if module is None:
        print("wsss native kernels: not available" + (f" ({build_error()})" if build_error() else " (disabled)"))
    else:
        print(f"wsss native kernels: ready ({module.__file__})")
    return 0
