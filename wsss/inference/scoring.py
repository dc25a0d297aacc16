"""A segmentation model scored on a split with masks, in the variants eval-seg and eval-ssnet report."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from ..crf import dense_crf
from ..metrics import confusion_matrix
from .predictor import Predictor


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
