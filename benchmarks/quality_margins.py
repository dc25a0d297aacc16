"""Run the tests that assert on what a tiny training learned, under several CPU kernel settings,
and tabulate each check's value, bound and headroom (tests/quality.py).

    python benchmarks/quality_margins.py [--out FILE.md]

A tiny training ends elsewhere on another CPU (oneDNN and ATen pick other kernels): each setting
below stands in for another machine. Every check must clear its bound by 1.5x its margin under
every setting. Takes about 5 minutes on 2 cores (one pytest run per setting, one after another).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TESTS = [
    "tests/test_end_to_end.py::test_train_make_eval_cam",
    "tests/test_end_to_end.py::test_affinity_walk_and_pseudo_labels",
    "tests/test_irn.py::test_irn_pipeline_on_generated_data",
    "tests/test_segmentation.py::test_tiny_model_beats_chance",
    "tests/test_ssnet.py::test_joint_run_trains_both_stages_and_scores_them",
]

SETTINGS = {
    "this CPU": {},
    "AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
    "ATen default": {"ATEN_CPU_CAPABILITY": "default"},
    "SSE4.1": {"ONEDNN_MAX_CPU_ISA": "SSE41", "ATEN_CPU_CAPABILITY": "default"},
}


def measure(env: dict) -> tuple[list[dict], int]:
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "quality.jsonl"
        run_env = {**os.environ, **env, "WSSS_QUALITY_LOG": str(log)}
        code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
                               cwd=ROOT, env=run_env, stdout=subprocess.DEVNULL)
        records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return records, code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args()
    values: dict[str, dict[str, dict]] = {}
    failed = []
    for name, env in SETTINGS.items():
        records, code = measure(env)
        print(f"{name}: pytest exit {code}, {len(records)} checks", file=sys.stderr)
        if code:
            failed.append(name)
        for record in records:
            values.setdefault(record["check"], {})[name] = record
    head = "| check | reference | bound | untrained | " + " | ".join(SETTINGS) + " | least headroom |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for check, by_setting in values.items():
        any_record = next(iter(by_setting.values()))
        cells = [f"{by_setting[s]['value']:.3f} ({by_setting[s]['headroom']:.2f}x)" if s in by_setting else "-"
                 for s in SETTINGS]
        untrained = [r["untrained"] for r in by_setting.values() if r["untrained"] is not None]
        least = min(r["headroom"] for r in by_setting.values())
        lines.append(f"| {check} | {any_record['reference']:.3f} | {any_record['bound']:.3f} | "
                     f"{max(untrained):.3f} |" if untrained else
                     f"| {check} | {any_record['reference']:.3f} | {any_record['bound']:.3f} | - |")
        lines[-1] += " " + " | ".join(cells) + f" | **{least:.2f}x** |"
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")
    if failed:
        print(f"pytest failed under: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
