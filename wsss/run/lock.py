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
def run_lock(run_dir: Path, command: str, what: str = "run directory",
             elsewhere: str = "choose another --run-dir") -> Iterator[None]:
    """Hold the folder's lock for the duration of the block (the folder is made if missing).
    ``what`` names the folder in the messages, ``elsewhere`` the way out of them (a run
    directory's: another --run-dir; the saliency store's: another saliency.store)."""
    path = Path(run_dir) / LOCK_FILE
    try:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WsssError(f"{run_dir}: {what} is not writable ({exc.strerror or exc}); {elsewhere}") from None
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise WsssError(f"{path}: cannot create the {what}'s lock file ({exc.strerror}); {elsewhere}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise WsssError(f"{path}: cannot lock the {what} ({exc.strerror})") from None
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
            who = f"pid {holder[0]}" if holder else "another process"
            doing = f" ({' '.join(holder[1:])})" if len(holder) > 1 else ""
            raise WsssError(f"{run_dir}: another wsss command is using this {what}: {who}{doing}; wait for it "
                            f"to finish or {elsewhere}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} wsss {command}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock
