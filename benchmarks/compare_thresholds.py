"""The mask-free background thresholds of a run's train CAMs beside the one tuned on masks.

    python benchmarks/compare_thresholds.py RUN_DIR --data-root DATASET [--split train]

Prints, for each estimate of ``wsss.cam.threshold`` and for eval-cam's best threshold on the
masks, the threshold and the CAM mIoU at it (read from eval-cam's sweep, so eval-cam must have
run on the split; the masks score here and choose nothing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from wsss.cam.threshold import MASK_FREE_METHODS, estimate
from wsss.data.voc import VocDataset


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--split", default="train")
    args = parser.parse_args()
    sweep_file = json.loads((args.run_dir / "eval" / f"cam_{args.split}.json").read_text())
    sweep = {round(float(row["threshold"]), 2): row["miou"] for row in sweep_file["sweep"]}

    def miou_at(threshold: float) -> str:
        nearest = min(sweep, key=lambda t: abs(t - threshold))
        return f"{sweep[nearest]:.2f}" + ("" if abs(nearest - threshold) < 1e-6 else f" (at {nearest:.2f})")

    voc = VocDataset(args.data_root, args.split)
    print(f"{args.run_dir} {args.split}: {len(voc)} images\n")
    print("| threshold from | t* | CAM mIoU at t* | time (s) |")
    print("|---|---:|---:|---:|")
    print(f"| masks (eval-cam's best; opt-in) | {sweep_file['best_threshold']:.2f} | {sweep_file['miou']:.2f} | - |")
    for method in MASK_FREE_METHODS:
        start = time.perf_counter()
        threshold, _ = estimate(method, voc, args.run_dir / "cams" / args.split, args.run_dir / "cam" / "model.pt")
        print(f"| {method} (no mask) | {threshold:.2f} | {miou_at(threshold)} | {time.perf_counter() - start:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
