"""`wsss train-irn`: IRN's class-boundary network on the inter-pixel relations of the seeds
(IRN Sec. 3.2-3.3; its train_irn.py).

Each augmented crop's seed map (make-irn-labels) is brought to the stride-4 grid; every pixel
pair within ``irn.radius`` (each unordered pair once) is a background positive, a foreground
positive (same label), a negative (different labels) or ignored (an unknown end). The boundary
map B gives a_ij = 1 - max of B on the segment ij, trained with IRN's loss
L+_bg / 4 + L+_fg / 4 + L- / 2. The backbone is frozen as in IRN (only the boundary branch
learns) unless ``irn.train_backbone``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import torch

from ..data.crops import AugmentedCrops, LabelMapFolder
from ..data.transforms import JointAugment
from ..engine import TrainJob, config_fingerprint, seed_everything, skip_finished, train
from ..errors import WsssError
from ..models import build_model
from ..models.irn import IRNet
from ..run.context import RunContext
from ..run.per_image import output_settings
from ..walk.affinity import downsample_labels
from .boundary import boundary_loss
from .relations import relation_labels, relation_offsets

log = logging.getLogger("wsss")

KIND = "irn"

# what only the walk uses: changing it must not retrain the network
WALK_SETTINGS = {"walk_radius", "beta", "steps", "walk_bg_threshold", "walk_bg_factor", "walk_normalize",
                 "walk_background", "crf", "crf_power", "eval_splits", "workers"}


class BoundaryLoss:
    """loss_fn of the training job: IRN's boundary loss over the half neighbourhood of ``radius``."""

    def __init__(self, radius: int):
        self.radius = radius
        self.offsets = relation_offsets(radius)

    def __call__(self, model: IRNet, batch: dict):
        boundary = model(batch["image"])  # (B, 1, h, w) at stride 4
        seeds = downsample_labels(batch["target"], boundary.shape[-2:])
        bg_pos, fg_pos, neg = relation_labels(seeds, self.radius)
        loss, stats = boundary_loss(boundary, self.offsets.to(boundary.device), bg_pos, fg_pos, neg)
        with torch.no_grad():  # how much of the map is boundary, for the log
            stats["boundary_mean"] = float(boundary.mean())
        stats.pop("loss", None)
        return loss, stats


def irn_fingerprint(ctx: RunContext, seeds: dict) -> str:
    cfg = ctx.config
    return config_fingerprint({"irn": cfg.irn.model_dump(mode="json", exclude=WALK_SETTINGS),
                               "backbone": cfg.backbone.model_dump(mode="json"), "seeds": seeds,
                               "split": cfg.data.train_split, "seed": cfg.seed})


def run(ctx: RunContext, max_steps: Optional[int] = None) -> Path:
    """Train (or resume, or skip when finished) the boundary network; returns model.pt's path."""
    cfg = ctx.config
    voc = ctx.dataset(cfg.data.train_split)
    seed_dir = ctx.layout.seed_labels("irn", cfg.data.train_split)
    missing = [i for i in voc.ids if not (seed_dir / f"{i}.png").exists()]
    if missing:
        raise WsssError(f"{seed_dir / missing[0]}.png: IRN seed labels missing; run `wsss make-irn-labels` first")
    fingerprint = irn_fingerprint(ctx, output_settings(seed_dir) or {})
    final = ctx.layout.network_model("irn")
    if skip_finished("train-irn", final, fingerprint):
        return final
    seed_everything(cfg.seed)
    options = {"train_backbone": cfg.irn.train_backbone}
    model = build_model(KIND, cfg.backbone.name, cfg.irn.output_stride, voc.num_classes, **ctx.backbone_weights(),
                        options=options)
    job = TrainJob(
        kind=KIND, model=model, param_groups=model.param_groups(),
        dataset=AugmentedCrops(voc, JointAugment.from_config(cfg.irn), cfg.seed, target=LabelMapFolder(seed_dir, voc.ids)),
        loss_fn=BoundaryLoss(cfg.irn.radius), optim=cfg.irn, out_dir=ctx.layout.network_dir("irn"), fingerprint=fingerprint,
        max_steps=max_steps, **ctx.train_options(),
        meta={"class_names": voc.class_names, "backbone": cfg.backbone.name, "output_stride": cfg.irn.output_stride,
              "options": options},
    )
    return train(job)
