"""A segmentation model scored on a split with masks, in the variants eval-seg and eval-ssnet report."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..crf import dense_crf
from ..metrics import confusion_matrix
from . import multiscale_sum, upsample
from .predictor import Predictor


def score_segmentation(predictor: Predictor, voc, eval_scales, eval_crf: bool, crf_size_relative: bool,
                       progress: bool = True, desc: str = "eval-seg") -> dict[str, np.ndarray]:
    """Confusion matrices of a model on a split with masks: single-scale and multi-scale + flip,
    each also after dense CRF when ``eval_crf``. When the scales hold 1, the single-scale
    probabilities are the multi-scale pass's own at scale 1 (unflipped): one pass fewer per image
    (the network sees that image in a batch with its flip, so floats may round otherwise)."""
    variants = ["single-scale", "multi-scale+flip"]
    names = variants + ([f"{v}+CRF" for v in variants] if eval_crf else [])
    confusions = {name: np.zeros((voc.num_classes,) * 2, dtype=np.int64) for name in names}
    for index in tqdm(range(len(voc)), desc=desc, unit="img", disable=not progress, dynamic_ncols=True):
        image = voc.load_image(index)
        gt = voc.load_mask(index, image.shape[:2])
        for name, probs in zip(variants, single_and_multiscale(predictor, image, list(eval_scales))):
            confusions[name] += confusion_matrix(probs.argmax(0), gt, voc.num_classes)
            if eval_crf:
                refined = dense_crf(image, probs, size_relative=crf_size_relative)
                confusions[f"{name}+CRF"] += confusion_matrix(refined.argmax(0), gt, voc.num_classes)
    return confusions


@torch.inference_mode()
def single_and_multiscale(predictor: Predictor, image: np.ndarray, scales: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """(single-scale, multi-scale + flip) (C, H, W) probabilities of one (H, W, 3) image, without
    CRF; the single-scale ones taken from the multi-scale pass when ``scales`` holds 1."""
    predictor.crf = False
    if 1.0 not in scales:
        predictor.scales, predictor.flip = [1.0], False
        single = predictor.probabilities(image)
        predictor.scales, predictor.flip = scales, True
        return single, predictor.probabilities(image)
    rgb, tensor = predictor._inputs(image)
    order, kept = iter(scales), {}

    def softmax(batch: torch.Tensor) -> torch.Tensor:  # called once per scale, in the order of ``scales``
        probs = predictor._softmax(batch)
        if next(order) == 1.0:
            kept["single"] = probs[0]
        return probs

    summed = multiscale_sum(softmax, tensor, scales, True) / (2 * len(scales))
    # as the single-scale pass does: to the size the network saw, then to the image's
    single = F.interpolate(kept["single"][None], size=tuple(tensor.shape[1:]), mode="bilinear", align_corners=False)[0]
    return upsample(single.float(), rgb.shape[:2]), upsample(summed, rgb.shape[:2])
