"""`wsss train-psa`: train AffinityNet on pair labels from the seeds (PSA train_aff.py).

Each augmented crop's seed map is brought to the feature stride; every pixel pair within the
radius (each unordered pair once) is a positive (same class, split into background and
foreground), a negative (different classes) or ignored (an unknown end). Loss: Eq. (7)-(10).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..config import PSA_WALK_SETTINGS
from ..data.crops import AugmentedCrops, LabelMapFolder
from ..data.transforms import JointAugment
from ..engine import TrainJob, config_fingerprint, seed_everything, skip_finished, train
from ..errors import WsssError
from ..models import build_model
from ..models.affinity_net import AffinityNet
from ..run.context import RunContext
from ..run.per_image import output_settings
from ..walk.affinity import affinity_from_features, affinity_loss, downsample_labels, pair_labels, pair_offsets

log = logging.getLogger("wsss")


class AffinityLoss:
    """Loss over the half neighbourhood (each unordered pair once, as PSA's path indices)."""

    def __init__(self, radius: int):
        self.offsets = pair_offsets(radius, half=True)

    def __call__(self, model: AffinityNet, batch: dict):
        features = model(batch["image"])
        seeds = downsample_labels(batch["target"], features.shape[-2:])
        affinity, _ = affinity_from_features(features, self.offsets.to(features.device))
        bg_pos, fg_pos, neg = pair_labels(seeds, self.offsets.to(features.device))
        loss, stats = affinity_loss(affinity, bg_pos, fg_pos, neg)
        with torch.no_grad():  # how well the affinities separate, for the log
            stats["pos_aff"] = float(affinity[bg_pos | fg_pos].mean()) if (bg_pos | fg_pos).any() else float("nan")
            stats["neg_aff"] = float(affinity[neg].mean()) if neg.any() else float("nan")
        stats.pop("loss", None)
        return loss, stats


def psa_fingerprint(ctx: RunContext, seeds: dict) -> str:
    """The training's settings, the seeds' (their CAMs, thresholds, saliency) among them: new
    seeds retrain AffinityNet."""
    cfg = ctx.config
    # under the key and with the keys of the section it had before PSA's walk settings joined it,
    # so that AffinityNets trained then still count as finished
    training = {k: v for k, v in cfg.psa.model_dump(mode="json").items() if k not in PSA_WALK_SETTINGS}
    return config_fingerprint({"aff": training, "backbone": cfg.backbone.model_dump(mode="json"),
                               "seeds": seeds, "split": cfg.data.train_split, "seed": cfg.seed})


def run(ctx: RunContext, max_steps: int | None = None) -> Path:
    cfg = ctx.config
    voc = ctx.dataset(cfg.data.train_split)
    seed_dir = ctx.layout.seed_labels("psa", cfg.data.train_split)
    missing = [i for i in voc.ids if not (seed_dir / f"{i}.png").exists()]
    if missing:
        raise WsssError(f"{seed_dir / missing[0]}.png: seed labels missing; run `wsss make-psa-labels` first")
    fingerprint = psa_fingerprint(ctx, output_settings(seed_dir) or {})
    final = ctx.layout.network_model("psa")
    if skip_finished("train-psa", final, fingerprint):
        return final
    seed_everything(cfg.seed)
    model = build_model("affinity", cfg.backbone.name, cfg.psa.output_stride, voc.num_classes, **ctx.backbone_weights())
    augment = JointAugment.from_config(cfg.psa)
    job = TrainJob(
        kind="affinity", model=model, param_groups=model.param_groups(),
        dataset=AugmentedCrops(voc, augment, cfg.seed, target=LabelMapFolder(seed_dir, voc.ids)),
        loss_fn=AffinityLoss(cfg.psa.radius), optim=cfg.psa,
        out_dir=ctx.layout.network_dir("psa"), fingerprint=fingerprint,
        meta={"class_names": voc.class_names, "backbone": cfg.backbone.name, "output_stride": cfg.psa.output_stride},
        max_steps=max_steps, **ctx.train_options(),
    )
    return train(job)
