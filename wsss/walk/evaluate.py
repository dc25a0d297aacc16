"""`wsss eval-pseudo`: score CAM, CAM+RW and CAM+RW+CRF of the run's method (PSA or IRN) against the
masks of a split, in one table."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from ..distributed import on_main_process
from ..errors import WsssError
from ..io import read_json, save_json
from ..metrics import format_iou_table, score_label_dir, segmentation_report
from ..run.context import RunContext
from .labels import WALK_LABELS

log = logging.getLogger("wsss")


@on_main_process  # scoring is not sharded: rank 0 scores, the others wait
def run(ctx: RunContext, split: Optional[str] = None, root: Optional[Path] = None) -> dict:
    split = split or ctx.config.data.train_split
    voc = ctx.dataset(split, root, require_masks=True)
    name = ctx.output_name(split, root)
    columns: dict[str, dict] = {}
    results: dict[str, dict] = {}

    cam_eval = ctx.layout.eval_file("cam", name)
    if cam_eval.exists():  # the CAM column at its best threshold, as eval-cam found it
        cam_result = read_json(cam_eval)
        results["cam"] = {"miou": cam_result["miou"], "best_threshold": cam_result["best_threshold"]}
        columns[f"CAM@{cam_result['best_threshold']:.2f}"] = cam_result["per_class_iou"]
    base = ctx.pseudo_dir(split, root)
    for key, label in (("rw", "CAM+RW"), ("rw_crf", "CAM+RW+CRF")):
        if (base / key).is_dir():
            report = segmentation_report(score_label_dir(voc, base / key, ctx.progress, f"eval {label}"), voc.class_names)
            results[key] = {"miou": report["miou"]}
            columns[label] = report["per_class_iou"]
    if not columns:
        raise WsssError(f"{base}: no pseudo labels to score; run `wsss make-{ctx.method}-pseudo --split {split}` first")
    save_json(ctx.layout.eval_file("pseudo", name), {"split": split, "results": results, "per_class_iou": columns})
    for key in WALK_LABELS:  # a stage not run now (the method's crf off) loses its older score
        if key not in results:
            ctx.update_summary(f"{key}/{name}", None)
    for key, value in results.items():
        ctx.update_summary(f"{key}/{name}", value)
    print(format_iou_table(columns, title=f"pseudo labels {name}"))
    return results
