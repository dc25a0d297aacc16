"""Step 7: train the segmentation network on the run's pseudo labels (or on ground truth).

``seg.labels: pseudo`` reads the PNGs the method's walk wrote (255 = ignore); ``gt`` trains the same
network on the split's masks: the fully supervised upper bound the weak model is compared with.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import torch.nn.functional as F

from ..data.crops import AugmentedCrops, LabelMapFolder
from ..data.transforms import JointAugment
from ..engine import TrainJob, config_fingerprint, seed_everything, skip_finished, train
from ..engine.checkpoint import training_settings
from ..errors import WsssError
from ..io import IGNORE_INDEX
from ..models import build_model
from ..models.build import deeplab_options
from ..models.segmentation import SegNet, logits_at
from ..run.context import RunContext
from ..run.per_image import output_settings

log = logging.getLogger("wsss")


def seg_loss(model: SegNet, batch: dict):
    """Pixel-wise cross-entropy, 255 ignored, on logits upsampled to the crop."""
    logits = logits_at(model, batch["image"], batch["target"].shape[-2:])
    return F.cross_entropy(logits, batch["target"], ignore_index=IGNORE_INDEX), {}


def run(ctx: RunContext, labels: Optional[str] = None, max_steps: Optional[int] = None) -> Path:
    cfg = ctx.config
    labels = labels or cfg.seg.labels
    split = cfg.data.train_split
    if labels == "gt":
        voc = ctx.dataset(split, require_masks=True)
        load_target = voc.load_mask
    else:
        voc = ctx.dataset(split)
        folder = ctx.pseudo_label_dir(split)
        missing = [i for i in voc.ids if not (folder / f"{i}.png").exists()]
        if missing:
            raise WsssError(f"{folder / missing[0]}.png: pseudo label missing; "
                            f"run `wsss make-{ctx.method}-pseudo --split {split}` first")
        load_target = LabelMapFolder(folder, voc.ids)
    seg_settings = {k: v for k, v in training_settings(cfg.seg).items() if k not in ("eval_scales", "eval_crf", "backbone")}
    backbone = ctx.backbone_of(cfg.seg)
    made_with = {} if labels == "gt" else {"pseudo_labels": {"folder": folder.name, **(output_settings(folder.parent) or {})}}
    # the pseudo labels' own settings (their walk, seeds, CAMs): labels made anew retrain the model
    fingerprint = config_fingerprint({"seg": seg_settings,
                                      "labels": labels, "backbone": backbone.model_dump(mode="json"),
                                      "split": split, "seed": cfg.seed, **made_with})
    final = ctx.layout.seg_model(labels)
    if skip_finished("train-seg", final, fingerprint):
        return final
    ctx.forget_scores("seg_gt" if labels == "gt" else "seg")
    seed_everything(cfg.seed)
    s = cfg.seg
    model = build_model("segmentation", backbone.name, s.output_stride, voc.num_classes, s.head, s.rates,
                        **ctx.backbone_weights(s), options=deeplab_options(s))
    job = TrainJob(
        kind="segmentation", model=model, param_groups=model.param_groups(),
        dataset=AugmentedCrops(voc, JointAugment.from_config(s), cfg.seed, target=load_target),
        loss_fn=seg_loss, optim=s, out_dir=ctx.layout.seg_dir(labels), fingerprint=fingerprint,
        max_steps=max_steps, **ctx.train_options(),
        optimizer=s.optimizer, adam_betas=tuple(s.adam_betas),
        meta={"class_names": voc.class_names, "backbone": backbone.name, "output_stride": s.output_stride,
              "head": s.head, "rates": list(s.rates), "labels": labels, "options": deeplab_options(s)},
    )
    return train(job)
