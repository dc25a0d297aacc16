"""Step 1: train the multi-label classifier whose weights give the CAMs.

Loss: multi-label soft margin (PSA's train_cls), on randomly rescaled, flipped, jittered crops.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch.nn.functional as F

from ..data.crops import AugmentedCrops
from ..data.transforms import JointAugment
from ..engine import TrainJob, config_fingerprint, seed_everything, skip_finished, train
from ..errors import WsssError
from ..models import build_model
from ..models.classifier import CamNet
from ..run.context import RunContext

log = logging.getLogger("wsss")


def multilabel_loss(model: CamNet, batch: dict):
    """MultiLabelSoftMarginLoss over the foreground classes (PSA train_cls.py)."""
    logits = model(batch["image"])
    loss = F.multilabel_soft_margin_loss(logits, batch["label"])
    return loss, {}


def cam_fingerprint(ctx: RunContext, class_names: list[str]) -> str:
    cfg = ctx.config
    return config_fingerprint({
        "cam": cfg.cam.model_dump(mode="json", exclude={"scales", "flip", "eval_splits", "thresholds", "workers",
                                                          "max_side", "bg_threshold"}),
        "backbone": cfg.backbone.model_dump(mode="json"),
        "classes": class_names, "split": cfg.data.train_split, "seed": cfg.seed,
    })


def run(ctx: RunContext, max_steps: int | None = None) -> Path:
    """Train (or resume, or skip when finished) the CAM classifier; returns model.pt's path."""
    cfg = ctx.config
    voc = ctx.dataset(cfg.data.train_split)
    if not np.any(voc.labels):
        raise WsssError(f"{voc.root}: no image of split {voc.split!r} has a label; a classifier cannot learn from that")
    fingerprint = cam_fingerprint(ctx, voc.class_names)
    final = ctx.layout.cam_model
    if skip_finished("train-cam", final, fingerprint):
        return final
    ctx.forget_scores("cam")
    seed_everything(cfg.seed)
    model = build_model("cam", cfg.backbone.name, cfg.cam.output_stride, voc.num_classes, **ctx.backbone_weights())
    augment = JointAugment.from_config(cfg.cam)
    job = TrainJob(
        kind="cam", model=model, param_groups=model.param_groups(),
        dataset=AugmentedCrops(voc, augment, cfg.seed, image_labels=True), loss_fn=multilabel_loss, optim=cfg.cam,
        out_dir=ctx.layout.cam_dir, fingerprint=fingerprint,
        meta={"class_names": voc.class_names, "backbone": cfg.backbone.name, "output_stride": cfg.cam.output_stride},
        max_steps=max_steps, **ctx.train_options(),
    )
    return train(job)
