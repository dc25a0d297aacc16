"""SSNet training, stage 1 or 2 (Zeng et al., ICCV 2019, Sec. 3.3).

Every batch holds B augmented crops of the segmentation set (only their image-level labels,
and in stage 2 their mined pseudo labels, are used) and B crops of the saliency set (only
their masks are used); one forward pass runs both halves.

    stage 1:  L = w_cls Lc + w_sal Ls1
    stage 2:  L = w_cls Lc + w_sal Ls1 + w_seg Ls2   (pseudo labels from `wsss make-ssnet-pseudo --stage 1`)

Outputs: ``ssnet1/`` and ``ssnet2/`` (``model.pt``, ``checkpoint.pt``, ``train_log.jsonl`` with
the loss terms per step) and ``ssnet/saliency_split.json`` (the saliency ids trained on and
held out).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .. import distributed
from ..config import SsnetStageConfig
from ..data.crops import AugmentedCrops, LabelMapFolder
from ..data.demo import demo_saliency_complete, generate_demo_saliency
from ..data.saliency import MixedCrops, SaliencyDataset, saliency_ids, split_holdout
from ..data.transforms import JointAugment
from ..engine import TrainJob, config_fingerprint, load_model_weights, model_fingerprint, seed_everything, skip_finished, train
from ..engine.checkpoint import read_wsss_file, training_settings
from ..errors import WsssError
from ..io import save_json
from ..models import build_model, load_model
from ..models.build import deeplab_options
from ..models.ssnet import SSNet
from ..run.context import RunContext, required_model
from ..run.per_image import output_settings
from .losses import classification_loss, pseudo_label_loss, saliency_loss

log = logging.getLogger("wsss")

KIND = "ssnet"

SALIENCY_MAPS = 15
SALIENCY_CLASSES = ["background"] + [f"salient_{i}" for i in range(1, SALIENCY_MAPS + 1)]
"""The saliency-only network's classes: 15 class-agnostic maps H_i aggregated by Eq. 1,
S = sum_i v_i H_i, whatever the dataset. It reads nothing of the user's dataset (neither its
classes nor its images), so one model serves every dataset. 15 as the network first measured
(msrc's class count): with one map (S = v_1 H_1) IRN's labels on msrc scored 72.36 against 73.62
(BENCHMARKS.md)."""


def check_stage(stage: int) -> int:
    if stage not in (1, 2):
        raise WsssError(f"--stage must be 1 or 2, not {stage}")
    return stage


def stage_config(ctx: RunContext, stage: int) -> SsnetStageConfig:
    return ctx.config.ssnet.stage1 if check_stage(stage) == 1 else ctx.config.ssnet.stage2


def saliency_only(ctx: RunContext, stage: int) -> bool:
    """Stage 1 without Lc (cls_weight 0): the saliency-only network, trained on the saliency set alone."""
    return check_stage(stage) == 1 and ctx.config.ssnet.saliency_only


def model_path(ctx: RunContext, stage: int) -> Path:
    return ctx.layout.ssnet_model(check_stage(stage))


def pseudo_dir(ctx: RunContext, stage: int, split: str, root: Optional[Path] = None) -> Path:
    """Pseudo labels mined with the stage-``stage`` model: ``ssnet_pseudo/stage<k>/<split>/``."""
    return ctx.layout.ssnet_pseudo(check_stage(stage), ctx.output_name(split, root))


def final_pseudo_dir(ctx: RunContext, stage: int, split: str, root: Optional[Path] = None) -> Path:
    """The labels stage 2 trains on: after the CRF when ``ssnet.mine_crf``, else before it."""
    return ctx.layout.ssnet_pseudo_labels(check_stage(stage), ctx.output_name(split, root), ctx.config.ssnet.mine_crf)


def saliency_root(ctx: RunContext) -> Path:
    """The saliency dataset root; generates the demo saliency set there first when asked to."""
    sal = ctx.config.ssnet.saliency
    if sal.demo is not None and not demo_saliency_complete(sal.root):
        log.info("generating the demo saliency dataset in %s", sal.root)
        generate_demo_saliency(sal.root, sal.demo.num_images, sal.demo.image_size, sal.demo.seed)
    return Path(sal.root)


def saliency_holdout(ctx: RunContext) -> tuple[list[str], list[str]]:
    """(ids trained on, ids held out for scoring) of the saliency set (generated first for the demo)."""
    return split_holdout(saliency_ids(saliency_root(ctx)), ctx.config.ssnet.saliency.holdout_every)


def saliency_split(ctx: RunContext) -> tuple[list[str], list[str]]:
    """:func:`saliency_holdout`, recorded in ``ssnet/saliency_split.json``."""
    sal = ctx.config.ssnet.saliency
    train_ids, held_out = saliency_holdout(ctx)
    if not train_ids:
        raise WsssError(f"{sal.root}: every saliency image is held out; raise ssnet.saliency.holdout_every")
    if distributed.is_main():
        save_json(ctx.layout.saliency_split,
                  {"root": str(sal.root), "holdout_every": sal.holdout_every, "train": train_ids, "held_out": held_out})
    return train_ids, held_out


def check_classes(path: Path, trained: list[str], voc) -> None:
    """An SSNet segments the dataset's classes only when it was trained for them (the saliency-only
    network's maps are no classes: SALIENCY_CLASSES)."""
    if trained != voc.class_names:
        raise WsssError(f"{path}: trained for classes {trained[1:]}, the dataset has {voc.class_names[1:]}; "
                        "use an SSNet trained with Lc (ssnet.cls_weight > 0) on this dataset")


def load_ssnet(path: Path, device: torch.device | str = "cpu") -> SSNet:
    """An SSNet ``model.pt``, built from its own metadata, in eval mode on ``device``."""
    return load_model(path, device, KIND).model


def check_same_head(stage1: Path, stage_cfg: SsnetStageConfig) -> None:
    """Stage 2 starting from stage 1 needs the same head (with or without the low-level skip)."""
    options = (read_wsss_file(stage1).get("meta") or {}).get("options") or {}
    trained = bool(options.get("head_skip", False))  # files without options: the plain head
    if trained != stage_cfg.head_skip:
        raise WsssError(f"{stage1}: trained with head_skip {trained}, but "
                        f"ssnet.stage2.head_skip is {stage_cfg.head_skip}; init_from_stage1 needs the same head: "
                        "set ssnet.stage2.head_skip to stage 1's, or ssnet.stage2.init_from_stage1=false")


class SsnetLoss:
    """loss_fn of the training job: one forward pass over [segmentation crops; saliency crops]."""

    def __init__(self, cls_weight: float, sal_weight: float, seg_weight: float, negative: str, with_pseudo: bool):
        self.cls_weight, self.sal_weight, self.seg_weight = cls_weight, sal_weight, seg_weight
        self.negative, self.with_pseudo = negative, with_pseudo
        # cls_weight 0 in stage 1 trains a saliency-only network: the dataset's crops would add
        # nothing to the loss, so they are neither loaded nor run
        self.saliency_only = cls_weight == 0 and not with_pseudo

    def __call__(self, model: SSNet, batch: dict):
        # (B, k, ...) saliency crops -> (k B, ...)
        sal_images, sal_target = batch["sal_image"].flatten(0, 1), batch["sal_target"].flatten(0, 1)
        saliency_only = self.saliency_only
        count = 0 if saliency_only else batch["image"].shape[0]
        logits, v_logits = model(sal_images if saliency_only else torch.cat([batch["image"], sal_images]))
        # Lc pools the logits spatially: at the network's stride, the mean equals that of the
        # bilinearly upsampled map up to border effects, at a fraction of the cost.
        loss_cls = logits.new_zeros(()) if saliency_only else classification_loss(logits[:count], batch["label"])
        sal_logits = F.interpolate(logits[count:], size=sal_target.shape[-2:], mode="bilinear", align_corners=False)
        loss_sal = saliency_loss(sal_logits, v_logits[count:], sal_target, self.negative)
        loss = self.cls_weight * loss_cls + self.sal_weight * loss_sal
        stats = {"loss_cls": float(loss_cls.detach()), "loss_sal": float(loss_sal.detach())}
        if self.with_pseudo:
            seg_logits = F.interpolate(logits[:count], size=batch["target"].shape[-2:], mode="bilinear",
                                       align_corners=False)
            loss_seg = pseudo_label_loss(seg_logits, batch["target"])
            loss = loss + self.seg_weight * loss_seg
            stats["loss_seg"] = float(loss_seg.detach())
        return loss, stats


def lr_schedule(stage_cfg: SsnetStageConfig):
    """None (the engine's poly decay) or the reference code's step decay: gamma^(step // step_every)."""
    if stage_cfg.lr_decay == "poly":
        return None
    every, gamma = stage_cfg.step_every, stage_cfg.step_gamma
    return lambda step, total: gamma ** (step // every)




def stage_fingerprint(ctx: RunContext, stage: int, class_names: list[str], extra: dict) -> str:
    """The settings a stage's model is made from; ``class_names`` its classes (the saliency-only
    network's SALIENCY_CLASSES: it reads no train split)."""
    cfg = ctx.config
    s = cfg.ssnet
    data = {"classes": class_names}
    if not saliency_only(ctx, stage):
        data["split"] = cfg.data.train_split
    return config_fingerprint({
        "stage": stage, "train": training_settings(stage_config(ctx, stage)),
        "weights": [s.cls_weight, s.sal_weight, s.seg_weight if stage == 2 else 0], "negative": s.saliency_negative,
        "saliency": {"root": str(s.saliency.root), "holdout_every": s.saliency.holdout_every},
        "backbone": cfg.backbone.model_dump(mode="json"), **data, "seed": cfg.seed, **extra,
    })


def run(ctx: RunContext, stage: int = 1, max_steps: Optional[int] = None) -> Path:
    """Train (or resume, or skip when finished) SSNet stage 1 or 2; returns model.pt's path."""
    cfg = ctx.config
    stage_cfg = stage_config(ctx, stage)
    split = cfg.data.train_split
    alone = saliency_only(ctx, stage)
    voc = None if alone else ctx.dataset(split)
    if voc is not None and not np.any(voc.labels):
        raise WsssError(f"{voc.root}: no image of split {split!r} has a label; SSNet's Lc cannot learn from that")
    if distributed.is_main():  # under torchrun the demo saliency set is generated once, by rank 0
        saliency_root(ctx)
    distributed.barrier()
    train_ids, _ = saliency_split(ctx)
    saliency = SaliencyDataset(saliency_root(ctx), train_ids)

    extra: dict = {}
    target = None
    init: Optional[Path] = None
    if stage == 2:
        folder = final_pseudo_dir(ctx, 1, split)
        missing = [i for i in voc.ids if not (folder / f"{i}.png").exists()]
        if missing:
            raise WsssError(f"{folder / missing[0]}.png: pseudo label missing; run "
                            f"`wsss make-ssnet-pseudo --stage 1 --split {split}` first")
        target = LabelMapFolder(folder, voc.ids)
        stage1 = required_model(None, model_path(ctx, 1), "SSNet stage-1 model", "train-ssnet --stage 1")
        extra["pseudo_labels"] = output_settings(folder.parent) or str(folder)
        if stage_cfg.init_from_stage1:
            init = stage1
            check_same_head(stage1, stage_cfg)
            extra["init"] = model_fingerprint(stage1)
    class_names = SALIENCY_CLASSES if alone else voc.class_names
    fingerprint = stage_fingerprint(ctx, stage, class_names, extra)
    final = model_path(ctx, stage)
    if skip_finished("train-ssnet", final, fingerprint):
        return final

    seed_everything(cfg.seed)
    model = build_model(KIND, cfg.backbone.name, stage_cfg.output_stride, len(class_names), stage_cfg.head,
                        stage_cfg.rates, pretrained=cfg.backbone.pretrained and init is None,
                        backbone_checkpoint=None if init is not None else cfg.backbone.checkpoint,
                        options=deeplab_options(stage_cfg))
    if init is not None:
        load_model_weights(model, init, KIND, stage_cfg.output_stride)
        log.info("train-ssnet: stage 2 starts from %s", init)
    augment = JointAugment.from_config(stage_cfg)
    seg_crops = None if alone else AugmentedCrops(voc, augment, cfg.seed, target=target, image_labels=True)
    s = cfg.ssnet
    loss_fn = SsnetLoss(s.cls_weight, s.sal_weight, s.seg_weight, s.saliency_negative, with_pseudo=stage == 2)
    job = TrainJob(
        kind=KIND, model=model, param_groups=model.param_groups(),
        dataset=MixedCrops(seg_crops, saliency, augment, cfg.seed, stage_cfg.saliency_per_sample),
        loss_fn=loss_fn,
        optim=stage_cfg, out_dir=ctx.layout.ssnet_dir(stage), fingerprint=fingerprint,
        max_steps=max_steps, **ctx.train_options(),
        optimizer=stage_cfg.optimizer, adam_betas=tuple(stage_cfg.adam_betas), lr_schedule=lr_schedule(stage_cfg),
        meta={"class_names": class_names, "backbone": cfg.backbone.name, "output_stride": stage_cfg.output_stride,
              "head": stage_cfg.head, "rates": list(stage_cfg.rates), "stage": stage,
              "options": deeplab_options(stage_cfg)},
    )
    return train(job)
