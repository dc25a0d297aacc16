"""Segmentation metrics from confusion matrices (VOC protocol: 255 is ignored), and saliency scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from .errors import WsssError
from .io import IGNORE_INDEX, load_mask


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
# Saliency: the four scores salient-object papers report, computed by pysodmetrics
# --------------------------------------------------------------------------------------

SALIENCY_BETA2 = 0.3  # beta^2 of the F-measure: precision weighted more than recall, as is customary


def saliency_levels(saliency: np.ndarray) -> np.ndarray:
    """(H, W) float saliency in [0, 1] -> (H, W) uint8 round(255 S).

    The map as ``wsss predict`` writes it (``<name>_saliency.png``) and as the metrics read it,
    so scoring a model equals scoring its PNGs with any saliency evaluation code.
    """
    return np.round(np.clip(saliency, 0, 1) * 255).astype(np.uint8)


class SaliencyScores:
    """max F (beta^2 = 0.3), MAE, S-measure (Fan et al., ICCV 2017) and mean E-measure (Fan et al.,
    IJCAI 2018) over a set of images, by ``pysodmetrics`` (the code saliency papers evaluate with,
    matching Fan et al.'s evaluation toolbox).

    The protocol is that toolbox's: each map is quantised to 0..255 (:func:`saliency_levels`)
    and min-max normalised per image; max F is the best threshold of the per-image F-measure
    curves (thresholds 0..255) averaged over images; mean E is the mean over thresholds of the
    averaged E-measure curve. Score maps at the mask's (the image's original) resolution.
    """

    def __init__(self):
        # imported here: pysodmetrics pulls in OpenCV, scikit-image and scikit-learn (~1 s)
        import py_sod_metrics

        self._f = py_sod_metrics.FmeasureV2(
            {"f": py_sod_metrics.FmeasureHandler(with_dynamic=True, with_adaptive=False, beta=SALIENCY_BETA2)})
        self._mae, self._s, self._e = py_sod_metrics.MAE(), py_sod_metrics.Smeasure(), py_sod_metrics.Emeasure()
        self.count = 0

    def add(self, saliency: np.ndarray, mask: np.ndarray) -> None:
        """One image: (H, W) saliency in [0, 1] (float) or 0..255 (uint8, a saved map) and its
        (H, W) mask (non-zero = salient), of the same size."""
        if saliency.shape != mask.shape:
            raise ValueError(f"saliency {saliency.shape} and mask {mask.shape} differ in shape")
        levels = saliency if saliency.dtype == np.uint8 else saliency_levels(saliency)
        truth = np.where(mask > 0, 255, 0).astype(np.uint8)  # pysodmetrics reads gt > 128 as salient
        for metric in (self._f, self._mae, self._s, self._e):
            metric.step(levels, truth)
        self.count += 1

    def result(self) -> dict:
        """{"max_f", "mae", "s_measure", "mean_e", "best_threshold", "num_images"}; scores rounded
        to 4 decimals, ``best_threshold`` the level (0..255, of the normalised maps) of max F."""
        if self.count == 0:
            raise ValueError("no images scored")
        # pysodmetrics orders its curves by threshold 255, 254, ..., 0
        f_curve = self._f.get_results()["f"]["dynamic"]
        best = int(np.argmax(f_curve))
        return {"max_f": round(float(f_curve[best]), 4), "mae": round(float(self._mae.get_results()["mae"]), 4),
                "s_measure": round(float(self._s.get_results()["sm"]), 4),
                "mean_e": round(float(self._e.get_results()["em"]["curve"].mean()), 4),
                "best_threshold": 255 - best, "num_images": self.count}


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
