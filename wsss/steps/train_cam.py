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
from ..engine import FINAL_NAME, TrainJob, config_fingerprint, finished_model, seed_everything, train
from ..models.backbone import build_backbone
from ..models.classifier import CamNet
from .common import RunContext

log = logging.getLogger("wsss")


def build_cam_net(ctx: RunContext, num_classes: int, pretrained: bool = True) -> CamNet:
    cfg = ctx.config
    backbone = build_backbone(cfg.backbone.name, cfg.cam.output_stride,
                              pretrained=pretrained and cfg.backbone.pretrained, checkpoint=cfg.backbone.checkpoint)
    return CamNet(backbone, num_classes)


def multilabel_loss(model: CamNet, batch: dict):
    """MultiLabelSoftMarginLoss over the foreground classes (PSA train_cls.py)."""
    logits = model(batch["image"])
    loss = F.multilabel_soft_margin_loss(logits, batch["label"])
    return loss, {}


def cam_fingerprint(ctx: RunContext, class_names: list[str]) -> str:
    cfg = ctx.config
    return config_fingerprint({
        "cam": cfg.cam.model_dump(mode="json", exclude={"scales", "flip", "eval_splits", "thresholds", "workers",
                                                          "max_side"}),
        "backbone": cfg.backbone.model_dump(mode="json"),
        "classes": class_names, "split": cfg.data.train_split, "seed": cfg.seed,
    })


def model_path(ctx: RunContext) -> Path:
    return ctx.run_dir / "cam" / FINAL_NAME


def run(ctx: RunContext, max_steps: int | None = None) -> Path:
    """Train (or resume, or skip when finished) the CAM classifier; returns model.pt's path."""
    cfg = ctx.config
    voc = ctx.dataset(cfg.data.train_split)
    if not np.any(voc.labels):
        from ..errors import WsssError
        raise WsssError(f"{voc.root}: no image of split {voc.split!r} has a label; a classifier cannot learn from that")
    fingerprint = cam_fingerprint(ctx, voc.class_names)
    final = model_path(ctx)
    if finished_model(final, fingerprint):
        log.info("train-cam: %s is complete, skipping", final)
        return final
    seed_everything(cfg.seed)
    model = build_cam_net(ctx, voc.num_classes - 1)
    augment = JointAugment(cfg.cam.resize_long, cfg.cam.crop_size, cfg.cam.color_jitter)
    job = TrainJob(
        kind="cam", model=model, param_groups=model.param_groups(),
        dataset=AugmentedCrops(voc, augment, cfg.seed, image_labels=True), loss_fn=multilabel_loss, optim=cfg.cam,
        out_dir=ctx.run_dir / "cam", device=ctx.device, seed=cfg.seed, fingerprint=fingerprint,
        meta={"class_names": voc.class_names, "backbone": cfg.backbone.name, "output_stride": cfg.cam.output_stride},
        num_workers=cfg.num_workers, progress=ctx.progress, max_steps=max_steps, **ctx.train_options(),
    )
    return train(job)
