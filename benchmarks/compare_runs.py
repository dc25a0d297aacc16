"""Compare two run directories file by file: which outputs are byte-identical, and whether the
rest differ only in what a re-run legitimately changes (timings, paths, key order).

    python benchmarks/compare_runs.py RUN_A RUN_B

Used to check that a refactor leaves a run's outputs unchanged (docs/notes/benchmarks-history.md). A run
directory of the layout before per-method folders is compared under today's names.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import yaml

from wsss.config import upgrade_legacy_keys
from wsss.run.layout import legacy_moves

# files a re-run rewrites with other timings, paths or times by design
VOLATILE = {"log.txt", "report.html", "run_info.json", ".wsss-lock"}  # .wsss-lock: the last holder's pid


def digests(root: Path) -> dict[str, str]:
    """{path in today's layout: sha1} of every file; a run of the layout before per-method folders
    (aff_labels/, aff/, pseudo/) is read under today's names, without moving anything."""
    renamed = {str(old.relative_to(root)): str(new.relative_to(root)) for old, new in legacy_moves(root)}

    def today(name: str) -> str:
        return next((new + name[len(old):] for old, new in renamed.items() if name.startswith(old + "/")), name)

    return {today(str(p.relative_to(root))): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def source(root: Path, name: str) -> Path:
    """The file of ``root`` that ``name`` (today's layout) names."""
    for old, new in legacy_moves(root):
        prefix = str(new.relative_to(root)) + "/"
        if name.startswith(prefix):
            return old / name[len(prefix):]
    return root / name


def without_timing(name: str, text: str):
    """The content of a file that differs between runs, with its run-specific fields dropped."""
    if name.endswith(".jsonl"):
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
        return [{k: v for k, v in r.items() if k != "images_per_s"} for r in records]
    if name.endswith(".json"):
        data = json.loads(text)
        return {k: v for k, v in data.items() if k not in ("timings_s", "checkpoint")}
    if name.endswith(".yaml"):
        return upgrade_legacy_keys(yaml.safe_load(text), warn=False)
    return text


def main(a: str, b: str) -> int:
    first, second = digests(Path(a)), digests(Path(b))
    if set(first) != set(second):
        print("files only in", a, sorted(set(first) - set(second)))
        print("files only in", b, sorted(set(second) - set(first)))
        return 1
    same = [k for k in first if first[k] == second[k]]
    print(f"{len(same)} of {len(first)} files byte-identical")
    status = 0
    for name in sorted(set(first) - set(same)):
        if name in VOLATILE:
            print(f"  {name}: differs (volatile by design)")
            continue
        equal = without_timing(name, source(Path(a), name).read_text()) == \
            without_timing(name, source(Path(b), name).read_text())
        print(f"  {name}: {'equal apart from timings/paths/key order' if equal else 'DIFFERENT'}")
        status |= not equal
    return status


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
