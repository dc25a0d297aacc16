"""Step 3: score CAMs against masks, sweeping the constant background threshold.

A pixel takes the class of its strongest normalised CAM when that exceeds the threshold, else
background (PSA's evaluation of CAMs). Reports mIoU per threshold, the best one, and the
per-class IoU there; written to ``eval/cam_<split>.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
from tqdm import tqdm

from ..cues.cam import cam_dir, cam_to_label, load_cam
from ..distributed import on_main_process
from ..errors import WsssError
from ..io import save_json
from ..metrics import confusion_matrix, format_iou_table, mean_iou, segmentation_report
from ..run.context import RunContext

log = logging.getLogger("wsss")


def sweep_confusions(voc, folder: Path, thresholds: list[float], progress: bool = True) -> np.ndarray:
    """(T, C, C) confusion matrices of the CAM segmentation at each background threshold."""
    num_classes = voc.num_classes
    confusions = np.zeros((len(thresholds), num_classes, num_classes), dtype=np.int64)
    for index in tqdm(range(len(voc)), desc="eval-cam", unit="img", disable=not progress, dynamic_ncols=True):
        path = folder / f"{voc.ids[index]}.npz"
        if not path.exists():
            raise WsssError(f"{path}: CAM missing; run `wsss make-cam` for split {voc.split!r} first")
        cams, keys = load_cam(path)
        gt = voc.load_mask(index, cams.shape[1:])
        for t, threshold in enumerate(thresholds):
            confusions[t] += confusion_matrix(cam_to_label(cams, keys, threshold), gt, num_classes)
    return confusions


@on_main_process  # scoring is not sharded: rank 0 scores, the others wait
def run(ctx: RunContext, split: str, root: Optional[Path] = None, cams: Optional[Path] = None) -> dict:
    voc = ctx.dataset(split, root, require_masks=True)
    folder = Path(cams) if cams else cam_dir(ctx, split, root)
    thresholds = ctx.config.cam.thresholds.values()
    confusions = sweep_confusions(voc, folder, thresholds, ctx.progress)
    mious = [mean_iou(c) for c in confusions]
    best = int(np.nanargmax(mious))
    report = segmentation_report(confusions[best], voc.class_names)
    result = {
        "split": split, "num_images": len(voc), "best_threshold": thresholds[best],
        "miou": report["miou"], "per_class_iou": report["per_class_iou"],
        "sweep": [{"threshold": t, "miou": round(100 * m, 2)} for t, m in zip(thresholds, mious)],
    }
    name = ctx.output_name(split, root)
    save_json(ctx.layout.eval_file("cam", name), result)
    ctx.update_summary(f"cam/{name}", {"miou": result["miou"], "best_threshold": result["best_threshold"]})
    print(format_iou_table({f"CAM@{thresholds[best]:.2f}": report["per_class_iou"]}, title=f"CAM {name}"))
    log.info("eval-cam %s: mIoU %.2f at background threshold %.2f", name, result["miou"], thresholds[best])
    return result
