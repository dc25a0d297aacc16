"""`wsss predict` with the torch and the onnxruntime engine on a dataset split: speed, agreement
of the masks, and mIoU of each against the split's masks.

    python benchmarks/bench_engines.py --checkpoint runs/msrc_deploy/seg_gt/model.pt \\
        --data-root ../shared/data/msrc-objects --split val [--scales 0.75 1 1.25 1.5]

Runs each engine single-scale, then at the given scales with flips, one after another in this
process (the torch threads of this process; onnxruntime gets as many), and prints one Markdown
table. Masks go to a temporary folder.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from wsss.data.voc import VocDataset
from wsss.io import load_mask
from wsss.metrics import confusion_matrix, segmentation_report
from wsss.predict import run


class Capture(logging.Handler):
    """Keeps predict's "N images segmented in S s" record."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "segmented in" in record.msg:
            self.records.append(record)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--scales", type=float, nargs="+", default=[0.75, 1.0, 1.25, 1.5])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    capture = Capture()
    logging.getLogger("wsss").addHandler(capture)
    logging.getLogger("wsss").setLevel(logging.INFO)
    voc = VocDataset(args.data_root, args.split)
    rows, masks = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "images"
        inputs.mkdir()
        for index in range(len(voc)):
            shutil.copy(voc.image_path(index), inputs / voc.image_path(index).name)
        for variant, scales, flip in (("single-scale", [1.0], False), ("multi-scale+flip", args.scales, True)):
            for engine in ("torch", "onnxruntime"):
                out = Path(tmp) / f"{variant}-{engine}"
                start = time.perf_counter()
                capture.records.clear()
                result = run(args.checkpoint, inputs, out, device="cpu", scales=scales, flip=flip, progress=False,
                             engine=engine)
                wall = time.perf_counter() - start
                elapsed = capture.records[0].args[1]  # predict's own timing of the images (model set-up excluded)
                conf = np.zeros((voc.num_classes,) * 2, dtype=np.int64)
                predicted = []
                for index, image_id in enumerate(voc.ids):
                    mask = load_mask(out / f"{image_id}.png")
                    predicted.append(mask)
                    conf += confusion_matrix(mask, voc.load_mask(index), voc.num_classes)
                masks[variant, engine] = np.concatenate([m.ravel() for m in predicted])
                miou = segmentation_report(conf, voc.class_names)["miou"]
                rows.append((variant, engine, result.written, elapsed, miou, wall))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.checkpoint}; "
          f"{args.data_root.name} {args.split} ({len(voc)} images)\n")
    print("| variant | engine | images/s | speed-up | mIoU | pixels equal to torch's | command wall (s) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for variant, engine, written, elapsed, miou, wall in rows:
        base = next(e for v, g, _, e, _, _ in rows if v == variant and g == "torch")
        same = (masks[variant, engine] == masks[variant, "torch"]).mean()
        print(f"| {variant} | {engine} | {written / elapsed:.2f} | {base / elapsed:.2f}x | {miou:.2f} | "
              f"{100 * same:.3f}% | {wall:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
