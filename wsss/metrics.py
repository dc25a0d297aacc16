"""Segmentation metrics from confusion matrices (VOC protocol: 255 is ignored)."""

from __future__ import annotations

import numpy as np

from .io import IGNORE_INDEX


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) int64 counts, rows = ground truth, cols = prediction.

    ``pred`` and ``gt`` are integer arrays of the same shape; ground-truth pixels equal to 255
    (void) or outside [0, num_classes) are skipped.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    gt = gt.reshape(-1).astype(np.int64)
    pred = pred.reshape(-1).astype(np.int64)
    valid = (gt != IGNORE_INDEX) & (gt >= 0) & (gt < num_classes)
    pred = np.clip(pred[valid], 0, num_classes - 1)
    return np.bincount(gt[valid] * num_classes + pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def iou_per_class(conf: np.ndarray) -> np.ndarray:
    """(K,) IoU = TP / (TP + FP + FN) per class; NaN where a class is in neither gt nor prediction."""
    conf = conf.astype(np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(conf: np.ndarray) -> float:
    """Mean of the per-class IoU over the classes that occur (gt or prediction)."""
    iou = iou_per_class(conf)
    return float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan")


def pixel_accuracy(conf: np.ndarray) -> float:
    total = conf.sum()
    return float(np.trace(conf) / total) if total else float("nan")


def segmentation_report(conf: np.ndarray, class_names: list[str]) -> dict:
    """mIoU, pixel accuracy and per-class IoU (in percent, NaN as None) as a JSON-ready dict."""
    iou = iou_per_class(conf)
    return {
        "miou": round(100 * mean_iou(conf), 2),
        "pixel_accuracy": round(100 * pixel_accuracy(conf), 2),
        "per_class_iou": {
            name: (None if np.isnan(v) else round(100 * float(v), 2)) for name, v in zip(class_names, iou)
        },
    }


def format_iou_table(per_class: dict[str, dict[str, float | None]], title: str = "IoU (%)") -> str:
    """A plain-text table: one row per class, one column per method/stage, mean last.

    ``per_class`` maps a column name to {class name: IoU or None}.
    """
    columns = list(per_class)
    classes = list(next(iter(per_class.values())).keys()) if per_class else []
    width = max([len(c) for c in classes] + [len(title), 5])
    col_w = max([len(c) for c in columns] + [7])
    lines = [f"{title:<{width}} " + " ".join(f"{c:>{col_w}}" for c in columns)]
    for name in classes:
        cells = []
        for col in columns:
            v = per_class[col].get(name)
            cells.append(f"{'-':>{col_w}}" if v is None else f"{v:>{col_w}.1f}")
        lines.append(f"{name:<{width}} " + " ".join(cells))
    means = []
    for col in columns:
        vals = [v for v in per_class[col].values() if v is not None]
        means.append(f"{(sum(vals) / len(vals)) if vals else float('nan'):>{col_w}.1f}")
    lines.append(f"{'mIoU':<{width}} " + " ".join(means))
    return "\n".join(lines)
