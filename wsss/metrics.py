"""Segmentation metrics from confusion matrices (VOC protocol: 255 is ignored)."""

from __future__ import annotations

import numpy as np

from .io import IGNORE_INDEX


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) int64 counts, rows = ground truth, cols = prediction.

    ``pred`` and ``gt`` are integer arrays of the same shape; ground-truth pixels equal to 255
    (void) are skipped, any other value outside [0, num_classes) is an error (never dropped
    silently from the score: check masks with ``wsss.data.voc.check_mask_classes`` first).
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    gt = gt.reshape(-1).astype(np.int64)
    pred = pred.reshape(-1).astype(np.int64)
    valid = gt != IGNORE_INDEX
    outside = valid & ((gt < 0) | (gt >= num_classes))
    if outside.any():
        raise ValueError(f"ground truth holds class index {int(gt[outside][0])}, outside 0..{num_classes - 1} "
                         f"({IGNORE_INDEX} = void)")
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


# --------------------------------------------------------------------------------------
# Saliency: mean absolute error and the maximum F-measure (salient object detection protocol)
# --------------------------------------------------------------------------------------

SALIENCY_BETA2 = 0.3  # beta^2 of the F-measure: precision weighted more than recall, as is customary


def saliency_mae(saliency: np.ndarray, mask: np.ndarray) -> float:
    """Mean |S - G| over the pixels of one image; S in [0, 1], G binary (non-zero = salient)."""
    if saliency.shape != mask.shape:
        raise ValueError(f"saliency {saliency.shape} and mask {mask.shape} differ in shape")
    return float(np.abs(saliency.astype(np.float64) - (mask > 0)).mean())


def precision_recall_curve(saliency: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall of one image at thresholds t = 0..255, (256,) each.

    The saliency map is quantised to 0..255 (round(255 S)) and binarised as "salient where
    value >= t". Precision is 0 where nothing is predicted salient, recall 0 where the mask is
    empty (as the usual evaluation code with its eps does).
    """
    if saliency.shape != mask.shape:
        raise ValueError(f"saliency {saliency.shape} and mask {mask.shape} differ in shape")
    levels = np.clip(np.round(saliency.astype(np.float64) * 255), 0, 255).astype(np.int64)
    positive = mask > 0
    # tp[t] = salient pixels with level >= t: reversed cumulative histogram
    tp = np.bincount(levels[positive], minlength=256)[::-1].cumsum()[::-1].astype(np.float64)
    predicted = np.bincount(levels.reshape(-1), minlength=256)[::-1].cumsum()[::-1].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = tp / positive.sum() if positive.any() else np.zeros(256)
    return precision, recall


def f_measure(precision: np.ndarray, recall: np.ndarray, beta2: float = SALIENCY_BETA2) -> np.ndarray:
    """F_beta = (1 + beta^2) P R / (beta^2 P + R), 0 where P = R = 0."""
    denominator = beta2 * precision + recall
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, (1 + beta2) * precision * recall / denominator, 0.0)


class SaliencyScores:
    """Accumulates MAE and the precision/recall curve over a set of images.

    ``max_f`` follows the salient-object-detection protocol: precision and recall are averaged
    over images at each threshold 0..255, the F-measure of those means is computed per
    threshold, and the best threshold's value is reported.
    """

    def __init__(self):
        self.count = 0
        self.mae_sum = 0.0
        self.precision_sum = np.zeros(256)
        self.recall_sum = np.zeros(256)

    def add(self, saliency: np.ndarray, mask: np.ndarray) -> None:
        """One image: (H, W) saliency in [0, 1] and its (H, W) mask (non-zero = salient)."""
        precision, recall = precision_recall_curve(saliency, mask)
        self.mae_sum += saliency_mae(saliency, mask)
        self.precision_sum += precision
        self.recall_sum += recall
        self.count += 1

    def result(self, beta2: float = SALIENCY_BETA2) -> dict:
        if self.count == 0:
            raise ValueError("no images scored")
        precision, recall = self.precision_sum / self.count, self.recall_sum / self.count
        scores = f_measure(precision, recall, beta2)
        best = int(scores.argmax())
        return {"mae": round(self.mae_sum / self.count, 4), "max_f": round(float(scores[best]), 4),
                "best_threshold": best, "num_images": self.count}
