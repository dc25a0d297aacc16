"""Mine pseudo labels with a trained SSNet (the input of stage 2).

Per image (the reference code's syn_stage1.py): the segmentation probabilities restricted to
background and the image's labelled classes, averaged over ``ssnet.mine_scales`` (+ flip; images
larger than ``ssnet.eval_long_side`` shrunk first), refined by dense CRF (the ``crf`` section;
the reference uses PSA's widths with 5 mean-field iterations) and arg-maxed. The reference does
not use saliency here; ``ssnet.mine_saliency`` = w > 0 lets the model's own saliency S (Eq. 1)
decide object against background (:func:`saliency_guided_probabilities`). Written atomically:

    ssnet_pseudo/stage<k>/<split>/seg/<id>.png   before the CRF
    ssnet_pseudo/stage<k>/<split>/crf/<id>.png   after it (when ssnet.mine_crf)

Images labelled with no class become all background: real negatives.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..crf import crf_refiner
from ..inference import image_tensor, multiscale_sum
from ..inference.saliency import saliency_map
from ..io import save_palette_png
from ..models import load_model
from ..models.ssnet import SSNet
from ..run.context import RunContext, required_model
from ..run.per_image import run_per_image
from .losses import restricted_probabilities
from .train import KIND, check_classes, check_stage, load_ssnet, model_path, pseudo_dir

log = logging.getLogger("wsss")


def ssnet_file(ctx: RunContext, stage: int, checkpoint: Optional[Path]) -> Path:
    return required_model(checkpoint, model_path(ctx, stage), f"SSNet stage-{stage} model", f"train-ssnet --stage {stage}")


def saliency_guided_probabilities(probs: torch.Tensor, saliency: torch.Tensor, weight: float) -> torch.Tensor:
    """Mix the segmentation's object/background split with the saliency's.

    Q_0 = (1 - w) P_0 + w (1 - S);  Q_c = (1 - w) P_c + w S P_c / sum_{c'>0} P_c'.
    With w = 1, S alone says how likely a pixel is object and P only which labelled class it is:
    the class maps of a classifier-trained network cover the discriminative parts of an object,
    while S is trained on whole-object masks (DUTS-TR). Q sums to 1 like P.

    Args:
        probs: (B, C+1, H, W) probabilities (class 0 = background), e.g. restricted_probabilities.
        saliency: (B, H, W) in [0, 1].
        weight: w in [0, 1].
    Returns:
        (B, C+1, H, W) probabilities.
    """
    if weight == 0:
        return probs
    foreground = probs[:, 1:]
    share = foreground / foreground.sum(dim=1, keepdim=True).clamp_min(1e-8)
    salient = saliency[:, None]
    return torch.cat([(1 - weight) * probs[:, :1] + weight * (1 - salient),
                      (1 - weight) * foreground + weight * salient * share], dim=1)


def restricted_segmentation(model: SSNet, image: torch.Tensor, label: np.ndarray, scales, flip: bool,
                            saliency_weight: float = 0.0) -> np.ndarray:
    """(3, H, W) image, (C,) multi-hot label -> (C+1, H, W) probabilities over background and the
    labelled classes (mixed with the saliency by ``saliency_weight``, see saliency_guided_probabilities)."""
    labels = torch.as_tensor(np.asarray(label), dtype=torch.float32, device=image.device)[None]

    def score(batch: torch.Tensor) -> torch.Tensor:
        logits, v_logits = model(batch)
        probs = restricted_probabilities(logits, labels.expand(batch.shape[0], -1))
        if saliency_weight == 0 or not bool(labels.any()):  # an image with no class is all background
            return probs
        return saliency_guided_probabilities(probs, saliency_map(logits, v_logits), saliency_weight)

    summed = multiscale_sum(score, image, scales, flip)
    return (summed / (len(scales) * (2 if flip else 1))).cpu().numpy()


class SsnetMiner:
    """Per-image job: restricted segmentation, CRF, two PNGs (built inside each worker process)."""

    def __init__(self, ctx: RunContext, stage: int, split: str, root: Optional[Path], checkpoint: Optional[Path]):
        self.ctx, self.voc = ctx, ctx.dataset(split, root)
        self.out = pseudo_dir(ctx, stage, split, root)
        self.model = load_ssnet(ssnet_file(ctx, stage, checkpoint), ctx.device)

    def __call__(self, index: int) -> None:
        s = self.ctx.config.ssnet
        image_id = self.voc.ids[index]
        image = self.voc.load_image(index)
        shrink = min(1.0, s.eval_long_side / max(image.shape[:2])) if s.eval_long_side else 1.0
        with torch.inference_mode():
            probs = restricted_segmentation(self.model, image_tensor(image, self.ctx.device), self.voc.labels[index],
                                            [scale * shrink for scale in s.mine_scales], s.mine_flip, s.mine_saliency)
        if s.mine_crf:
            refined = crf_refiner(self.ctx.config.crf, image)(probs)
            save_palette_png(self.out / "crf" / f"{image_id}.png", refined.argmax(axis=0).astype(np.uint8))
        # written last: its presence marks the image finished
        save_palette_png(self.out / "seg" / f"{image_id}.png", probs.argmax(axis=0).astype(np.uint8))


def run(ctx: RunContext, stage: int = 1, split: Optional[str] = None, root: Optional[Path] = None,
        checkpoint: Optional[Path] = None) -> Path:
    """Mine pseudo labels of ``split`` with the stage-``stage`` SSNet; returns the output folder."""
    check_stage(stage)
    cfg = ctx.config
    split = split or cfg.data.train_split
    voc = ctx.dataset(split, root)
    out = pseudo_dir(ctx, stage, split, root)
    weights = ssnet_file(ctx, stage, checkpoint)
    model = load_model(weights, "cpu", KIND)  # not an SSNet of these classes: one line, before any worker starts
    check_classes(weights, model.class_names, voc)
    s = cfg.ssnet
    settings = {"model": model.fingerprint, "scales": s.mine_scales,
                "long_side": s.eval_long_side, "flip": s.mine_flip,
                **({"saliency_weight": s.mine_saliency} if s.mine_saliency else {}),
                "crf": cfg.crf.model_dump() if s.mine_crf else None, "labels": cfg.data.labels}
    # seg/<id>.png, written last, marks a finished image
    run_per_image(ctx, "make-ssnet-pseudo", voc, out, settings, lambda image_id: out / "seg" / f"{image_id}.png",
                  SsnetMiner, (ctx, stage, split, root, checkpoint), s.workers, f"make-ssnet-pseudo stage {stage} {split}",
                  scores=(f"ssnet{stage}/pseudo_seg", f"ssnet{stage}/pseudo_crf"))
    return out
