"""The mask-free thresholds of a run's train CAMs (t*) and saliency maps (s*) beside the ones
tuned on masks.

    python benchmarks/compare_thresholds.py RUN_DIR --data-root DATASET [--split train] [--saliency]

Prints, for each estimate of ``wsss.cam.threshold`` and for eval-cam's best threshold on the
masks, the threshold and the CAM mIoU at it (read from eval-cam's sweep, so eval-cam must have
run on the split; the masks score here and choose nothing). With ``--saliency``, the same for
the saliency cue's s* (``wsss.ssnet.make_saliency``): each estimate, 0.5 (the decision value of
a map trained with a per-pixel cross-entropy), and make-saliency's best against the masks, each
with the maps' objects-vs-background mIoU at it (from make-saliency's sweep); the CAM-agreement
estimate at both t* (mask-free and mask-tuned).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from wsss.cues.cam_threshold import MASK_FREE_METHODS, estimate
from wsss.data.voc import VocDataset
from wsss.ssnet import make_saliency


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--saliency", action="store_true", help="also the saliency cue's s* (needs make-saliency's maps)")
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
    estimates = {}
    for method in MASK_FREE_METHODS:
        start = time.perf_counter()
        estimates[method], _ = estimate(method, voc, args.run_dir / "cams" / args.split, args.run_dir / "cam" / "model.pt")
        print(f"| {method} (no mask) | {estimates[method]:.2f} | {miou_at(estimates[method])} | "
              f"{time.perf_counter() - start:.1f} |")
    if args.saliency:
        compare_saliency(args.run_dir, voc, args.split, {"evidence": estimates["evidence"],
                                                          "masks": sweep_file["best_threshold"]})
    return 0


def compare_saliency(run_dir: Path, voc: VocDataset, split: str, cam_thresholds: dict) -> None:
    scored = json.loads((run_dir / "eval" / f"saliency_maps_{split}.json").read_text())
    sweep = {round(float(row["threshold"]), 2): (row["background_iou"] + row["object_iou"]) / 2 for row in scored["sweep"]}
    maps = run_dir / "saliency" / split
    print("\n| saliency threshold from | s* | maps' mIoU at s* (objects vs background) | time (s) |")
    print("|---|---:|---:|---:|")
    print(f"| masks (make-saliency's best; opt-in) | {scored['best_threshold']:.2f} | {scored['miou']:.2f} | - |")
    print(f"| 0.5 (a constant) | 0.50 | {sweep[0.5]:.2f} | - |")
    for name, cam_threshold in cam_thresholds.items():
        start = time.perf_counter()
        threshold, _ = make_saliency.estimate_saliency_threshold("cams", voc, maps, run_dir / "cams" / split, cam_threshold)
        print(f"| cams, at t* {cam_threshold:.2f} ({name}) | {threshold:.2f} | {sweep[round(threshold, 2)]:.2f} | "
              f"{time.perf_counter() - start:.1f} |")
    start = time.perf_counter()
    threshold, _ = make_saliency.estimate_saliency_threshold("otsu", voc, maps)
    nearest = min(sweep, key=lambda t: abs(t - threshold))
    print(f"| otsu | {threshold:.2f} | {sweep[nearest]:.2f} (at {nearest:.2f}) | {time.perf_counter() - start:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
