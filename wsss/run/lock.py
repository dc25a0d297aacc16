"""One command per run directory at a time.

Two commands writing one run directory race: one discards a folder the other is filling, and
both rewrite ``summary.json``. A command holds an exclusive ``flock`` on ``<run>/.wsss-lock``
while it runs; a second one stops with one line naming the first one's pid. The kernel releases
the lock when its holder exits, however it exits, so a lock left by a killed command is simply
taken over.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from typing import Iterator

from ..errors import WsssError

LOCK_FILE = ".wsss-lock"


@contextlib.contextmanager
def run_lock(run_dir: Path, command: str) -> Iterator[None]:
    """Hold the run directory's lock for the duration of the block (the folder must exist)."""
    path = Path(run_dir) / LOCK_FILE
    try:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WsssError(f"{run_dir}: run directory is not writable ({exc.strerror or exc}); choose another --run-dir") from None
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise WsssError(f"{path}: cannot create the run's lock file ({exc.strerror}); choose another --run-dir") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise WsssError(f"{path}: cannot lock the run directory ({exc.strerror})") from None
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
            who = f"pid {holder[0]}" if holder else "another process"
            doing = f" ({' '.join(holder[1:])})" if len(holder) > 1 else ""
            raise WsssError(f"{run_dir}: another wsss command is using this run directory: {who}{doing}; wait for it "
                            "to finish or choose another --run-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} wsss {command}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock
