"""Names that become file names: image ids, split names, a run's name.

An id read from a split file, or a split name from the command line, ends up in a path
(``cams/<split>/<id>.npz``). A name with a separator, ``..`` or a leading ``/`` would put that
file outside the run directory, over someone else's data, so every such name is checked here,
once, where it is read.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import WsssError

MAX_NAME_BYTES = 200
"""Longest name accepted, in UTF-8 bytes: file systems allow 255 per path component, and wsss
adds suffixes (``.npz``) and temporary-file affixes (``.<name>.wsss-XXXXXXXX.tmp``) to it."""


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be used as one file-name component, or None when it can."""
    if not isinstance(name, str) or not name:
        return "is empty"
    if "\x00" in name:
        return "contains a NUL character"
    if "/" in name or "\\" in name or (os.sep != "/" and os.sep in name):
        return "contains a path separator"
    if name in (".", ".."):
        return "is a relative path"
    if name.startswith("."):
        return "starts with a dot (hidden names are wsss's own)"
    if any(ord(ch) < 32 for ch in name):
        return "contains a control character"
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        return f"is longer than {MAX_NAME_BYTES} bytes"
    return None


def check_name(name: str, what: str, where: str | Path, fix: str) -> str:
    """``name`` if it is one plain file-name component, else a one-line error naming ``where``
    (a file and line, or an option) and ``fix``."""
    problem = name_problem(name)
    if problem:
        shown = name if len(name) <= 60 else name[:57] + "..."
        raise WsssError(f"{where}: {what} {shown!r} {problem}; {fix}")
    return name


def inside(path: Path, folder: Path) -> Path:
    """``path`` after checking that it resolves to somewhere inside ``folder`` (symbolic links
    followed), else a one-line error: no output may land outside its output folder."""
    resolved, base = Path(path).resolve(), Path(folder).resolve()
    if resolved != base and base not in resolved.parents:
        raise WsssError(f"{path}: resolves outside its output folder {folder}; refused")
    return Path(path)
