"""Score the segmentation network: single-scale and multi-scale + flip, with and without CRF."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
from tqdm import tqdm

from ..crf import dense_crf
from ..distributed import on_main_process
from ..errors import WsssError
from ..io import load_mask, save_json
from ..metrics import confusion_matrix, format_iou_table, segmentation_report
from ..predict import Predictor
from ..run.context import RunContext

log = logging.getLogger("wsss")


def score_segmentation(predictor: Predictor, voc, eval_scales, eval_crf: bool, crf_size_relative: bool,
                       progress: bool = True, desc: str = "eval-seg") -> dict[str, np.ndarray]:
    """Confusion matrices of a model on a split with masks: single-scale and multi-scale + flip,
    each also after dense CRF when ``eval_crf``."""
    variants = {"single-scale": ([1.0], False), "multi-scale+flip": (list(eval_scales), True)}
    names = [*variants] + ([f"{v}+CRF" for v in variants] if eval_crf else [])
    confusions = {name: np.zeros((voc.num_classes,) * 2, dtype=np.int64) for name in names}
    for index in tqdm(range(len(voc)), desc=desc, unit="img", disable=not progress, dynamic_ncols=True):
        image = voc.load_image(index)
        gt = voc.load_mask(index, image.shape[:2])
        for name, (scales, flip) in variants.items():
            predictor.scales, predictor.flip = scales, flip
            probs = predictor.probabilities(image)
            confusions[name] += confusion_matrix(probs.argmax(0), gt, voc.num_classes)
            if eval_crf:
                refined = dense_crf(image, probs, size_relative=crf_size_relative)
                confusions[f"{name}+CRF"] += confusion_matrix(refined.argmax(0), gt, voc.num_classes)
    return confusions


def score_label_dir(voc, folder: Path, progress: bool = True, desc: str = "eval") -> np.ndarray:
    """(C, C) confusion of the PNG label maps in ``folder`` against the split's masks."""
    conf = np.zeros((voc.num_classes, voc.num_classes), dtype=np.int64)
    for index in tqdm(range(len(voc)), desc=desc, unit="img", disable=not progress, dynamic_ncols=True):
        path = folder / f"{voc.ids[index]}.png"
        if not path.exists():
            raise WsssError(f"{path}: label map missing; run the stage that writes {folder} first")
        pred = load_mask(path)
        conf += confusion_matrix(pred, voc.load_mask(index, pred.shape), voc.num_classes)
    return conf


@on_main_process  # scoring is not sharded: rank 0 scores, the others wait
def run(ctx: RunContext, split: Optional[str] = None, root: Optional[Path] = None,
        checkpoint: Optional[Path] = None, labels: Optional[str] = None) -> dict:
    cfg = ctx.config
    split = split or cfg.data.val_split or cfg.data.train_split
    voc = ctx.dataset(split, root, require_masks=True)
    labels = labels or cfg.seg.labels
    path = Path(checkpoint) if checkpoint else ctx.layout.seg_model(labels)
    if not path.exists():
        raise WsssError(f"{path}: segmentation model not found; run `wsss train-seg` first or pass --checkpoint")
    predictor = Predictor(path, cfg.device, max_side=None)  # scored at the dataset's own resolution
    if predictor.class_names != voc.class_names:
        raise WsssError(f"{path}: trained for classes {predictor.class_names[1:]}, the dataset has {voc.class_names[1:]}")
    confusions = score_segmentation(predictor, voc, cfg.seg.eval_scales, cfg.seg.eval_crf, cfg.crf.size_relative,
                                    ctx.progress, f"eval-seg {split}")
    reports = {name: segmentation_report(conf, voc.class_names) for name, conf in confusions.items()}
    name = ctx.output_name(split, root)
    kind = "seg_gt" if labels == "gt" and checkpoint is None else "seg"
    result = {"split": split, "checkpoint": str(path), "miou": {k: r["miou"] for k, r in reports.items()},
              "per_class_iou": {k: r["per_class_iou"] for k, r in reports.items()}}
    save_json(ctx.layout.eval_file(kind, name), result)
    best = max(result["miou"], key=result["miou"].get)
    ctx.update_summary(f"{kind}/{name}", {"miou": result["miou"][best], "note": best})
    print(format_iou_table(result["per_class_iou"], title=f"{kind} {name}"))
    return result
