"""Score SSNet: segmentation mIoU on a split with masks, saliency MAE / max F on the held-out
saliency images, and the mined pseudo labels against the masks of their split.

    eval/ssnet<k>_<split>.json          segmentation (single/multi-scale, +/- CRF) and saliency
    eval/ssnet<k>_pseudo_<split>.json   pseudo labels before / after the CRF
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from ..data.saliency import SaliencyDataset, saliency_ids
from ..distributed import on_main_process
from ..errors import WsssError
from ..io import save_json
from ..metrics import SaliencyScores, format_iou_table, segmentation_report
from ..predict import Predictor
from ..run.context import RunContext, required_model
from ..segmentation.evaluate import score_label_dir, score_segmentation
from .train import check_stage, model_path, pseudo_dir, saliency_root, saliency_split

log = logging.getLogger("wsss")


def score_saliency(predictor: Predictor, dataset: SaliencyDataset, scales, progress: bool = True) -> dict:
    """MAE and max F (beta^2 = 0.3) of the model's saliency maps, single-scale and multi-scale + flip."""
    variants = {"single-scale": ([1.0], False), "multi-scale+flip": (list(scales), True)}
    scores = {name: SaliencyScores() for name in variants}
    for index in tqdm(range(len(dataset)), desc="eval saliency", unit="img", disable=not progress, dynamic_ncols=True):
        image = dataset.load_image(index)
        mask = dataset.load_mask(index, image.shape[:2])
        for name, (variant_scales, flip) in variants.items():
            predictor.scales, predictor.flip = variant_scales, flip
            scores[name].add(predictor.saliency(image), mask)
    return {name: score.result() for name, score in scores.items()}


@on_main_process  # scoring is not sharded: rank 0 scores, the others wait
def run(ctx: RunContext, stage: int = 2, split: Optional[str] = None, root: Optional[Path] = None,
        checkpoint: Optional[Path] = None, saliency_data: Optional[Path] = None, saliency: bool = True) -> dict:
    """Segmentation of ``split`` (when it has masks) and saliency of the held-out images (or of
    every image of ``saliency_data``, another saliency dataset)."""
    check_stage(stage)
    cfg = ctx.config
    s = cfg.ssnet
    split = split or cfg.data.val_split or cfg.data.train_split
    path = required_model(checkpoint, model_path(ctx, stage), f"SSNet stage-{stage} model", f"train-ssnet --stage {stage}")
    predictor = Predictor(path, cfg.device, max_side=s.eval_long_side)
    if not predictor.has_saliency:
        raise WsssError(f"{path}: not an SSNet model; use `wsss eval-seg` for a segmentation model")
    name = ctx.output_name(split, root)
    result: dict = {"stage": stage, "checkpoint": str(path), "split": split}
    prefix = f"ssnet{stage}"

    voc = ctx.dataset(split, root)
    if voc.has_masks:
        if predictor.class_names != voc.class_names:
            raise WsssError(f"{path}: trained for classes {predictor.class_names[1:]}, the dataset has {voc.class_names[1:]}")
        confusions = score_segmentation(predictor, voc, s.eval_scales, s.eval_crf, cfg.crf.size_relative, ctx.progress,
                                        f"eval-ssnet {split}")
        reports = {k: segmentation_report(conf, voc.class_names) for k, conf in confusions.items()}
        result["miou"] = {k: r["miou"] for k, r in reports.items()}
        result["per_class_iou"] = {k: r["per_class_iou"] for k, r in reports.items()}
        best = max(result["miou"], key=result["miou"].get)
        ctx.update_summary(f"{prefix}/seg/{name}", {"miou": result["miou"][best], "note": best})
        print(format_iou_table(result["per_class_iou"], title=f"SSNet stage {stage} {name}"))
    else:
        log.info("eval-ssnet: split %s has no masks; segmentation not scored", split)

    if saliency:
        if saliency_data is not None:
            dataset, source = SaliencyDataset(saliency_data, saliency_ids(saliency_data)), str(saliency_data)
        else:
            _, held_out = saliency_split(ctx)
            dataset = SaliencyDataset(saliency_root(ctx), held_out) if held_out else None
            source = f"{s.saliency.root} (held out: every {s.saliency.holdout_every}th id)"
        if dataset is None:
            log.info("eval-ssnet: no saliency images held out (ssnet.saliency.holdout_every: 0); saliency not scored")
        else:
            result["saliency"] = score_saliency(predictor, dataset, s.eval_scales, ctx.progress)
            result["saliency_data"] = source
            for variant, value in result["saliency"].items():
                print(f"SSNet stage {stage} saliency ({variant}, {value['num_images']} images): "
                      f"MAE {value['mae']:.4f}, max F {value['max_f']:.4f}")
            key = f"{prefix}/saliency" if saliency_data is None else f"{prefix}/saliency/{Path(saliency_data).name}"
            ctx.update_summary(key, result["saliency"])
    save_json(ctx.layout.eval_file(prefix, name), result)
    return result


@on_main_process  # scoring is not sharded: rank 0 scores, the others wait
def run_pseudo(ctx: RunContext, stage: int = 1, split: Optional[str] = None, root: Optional[Path] = None) -> dict:
    """Score the pseudo labels mined with the stage-``stage`` model against ``split``'s masks."""
    check_stage(stage)
    split = split or ctx.config.data.train_split
    voc = ctx.dataset(split, root, require_masks=True)
    base = pseudo_dir(ctx, stage, split, root)
    name = ctx.output_name(split, root)
    results, columns = {}, {}
    for key, label in (("seg", f"SSNet{stage}"), ("crf", f"SSNet{stage}+CRF")):
        if (base / key).is_dir():
            report = segmentation_report(score_label_dir(voc, base / key, ctx.progress, f"eval {label}"), voc.class_names)
            results[key] = {"miou": report["miou"]}
            columns[label] = report["per_class_iou"]
            ctx.update_summary(f"ssnet{stage}/pseudo_{key}/{name}", {"miou": report["miou"]})
    if not columns:
        raise WsssError(f"{base}: no pseudo labels to score; run `wsss make-ssnet-pseudo --stage {stage} --split {split}` first")
    save_json(ctx.layout.eval_file(f"ssnet{stage}_pseudo", name),
              {"split": split, "stage": stage, "results": results, "per_class_iou": columns})
    print(format_iou_table(columns, title=f"SSNet pseudo labels {name}"))
    return results
