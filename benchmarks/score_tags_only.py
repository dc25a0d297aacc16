"""Score a run made on a dataset copy without masks against the original's masks, afterwards.

    python benchmarks/score_tags_only.py RUN_DIR --data-root ORIGINAL [--splits train val]

The run read no mask: its dataset was a copy without ``SegmentationClass``, so its scoring stages
were skipped. Here the masks only score: the pseudo labels of each split (``<method>_pseudo/<split>/rw``
and ``rw_crf``) and the thresholds the run chose. A run of
an earlier layout (``pseudo/``) is read after any wsss command has upgraded it. Prints one JSON line; the segmentation model
is scored by ``wsss eval-seg --run-dir RUN_DIR --data-root ORIGINAL``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from wsss.data.voc import VocDataset
from wsss.metrics import mean_iou, score_label_dir
from wsss.run.layout import RunLayout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--splits", nargs="+", default=["train", "val"])
    args = parser.parse_args()
    result = {"run": str(args.run_dir)}
    methods = sorted(p.name[: -len("_pseudo")] for p in args.run_dir.glob("*_pseudo") if p.is_dir())
    layout = RunLayout(args.run_dir)
    for split in args.splits:
        voc = VocDataset(args.data_root, split, require_masks=True)
        for method in methods:  # PSA's and IRN's labels may sit side by side
            prefix = f"{method}:" if len(methods) > 1 else ""
            for key in ("rw", "rw_crf"):
                folder = layout.pseudo(method, split) / key
                if folder.is_dir():
                    result[f"{prefix}{key}/{split}"] = round(100 * mean_iou(score_label_dir(voc, folder, progress=False)), 2)
    for name in ("cam_threshold_train", "saliency_threshold_train", "cam_train", "saliency_maps_train"):
        path = args.run_dir / "eval" / f"{name}.json"
        if path.exists():
            record = json.loads(path.read_text())
            result[name] = record.get("threshold", record.get("best_threshold"))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
