"""Score SSNet: segmentation mIoU on a split with masks, saliency (max F, MAE, S-measure, mean
E-measure) on the held-out saliency images and on every benchmark of ``ssnet.saliency.eval_roots``,
and the mined pseudo labels against the masks of their split.

    eval/ssnet<k>_<split>.json          segmentation (single/multi-scale, +/- CRF) and saliency
    eval/ssnet<k>_pseudo_<split>.json   pseudo labels before / after the CRF
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from ..data.saliency import SaliencyDataset
from ..distributed import on_main_process
from ..errors import WsssError
from ..inference.predictor import Predictor
from ..inference.scoring import score_segmentation
from ..io import save_json
from ..metrics import format_iou_table, score_label_dir, segmentation_report
from ..run.context import RunContext, required_model
from .eval_saliency import evaluation_set, format_saliency_table, score_saliency
from .train import check_classes, check_stage, model_path, pseudo_dir, saliency_root, saliency_split

log = logging.getLogger("wsss")

HELD_OUT = "held-out"


def saliency_eval_sets(ctx: RunContext) -> dict[str, SaliencyDataset]:
    """{name: dataset} of the config's saliency benchmarks (``ssnet.saliency.eval_roots``), each
    checked (folders, one mask per image) so that a mistyped path fails before any training."""
    return {Path(root).name: evaluation_set(Path(root), "ssnet.saliency.eval_roots")
            for root in ctx.config.ssnet.saliency.eval_roots}


def saliency_sets(ctx: RunContext, saliency_data: Optional[Path]) -> dict[str, tuple[SaliencyDataset, str, str]]:
    """{name: (dataset, where it comes from, summary.json key suffix)} of what eval-ssnet scores:
    every image of ``saliency_data`` when given, else the held-out part of the training set (when
    ``holdout_every`` > 0) and the benchmarks of ``ssnet.saliency.eval_roots``."""
    if saliency_data is not None:
        name = Path(saliency_data).name
        return {name: (evaluation_set(Path(saliency_data), "--saliency-data"), str(saliency_data), f"/{name}")}
    sal = ctx.config.ssnet.saliency
    benchmarks = saliency_eval_sets(ctx)  # checked first: a mistyped folder fails before any scoring
    sets = {}
    _, held_out = saliency_split(ctx)
    if held_out:  # summary key ``ssnet<k>/saliency``, as before benchmarks were added
        sets[HELD_OUT] = (SaliencyDataset(saliency_root(ctx), held_out),
                          f"{sal.root} (held out: every {sal.holdout_every}th id)", "")
    sets.update({name: (dataset, str(dataset.root), f"/{name}") for name, dataset in benchmarks.items()})
    return sets


@on_main_process  # scoring is not sharded: rank 0 scores, the others wait
def run(ctx: RunContext, stage: int = 2, split: Optional[str] = None, root: Optional[Path] = None,
        checkpoint: Optional[Path] = None, saliency_data: Optional[Path] = None, saliency: bool = True) -> dict:
    """Segmentation of ``split`` (when it has masks) and saliency (single-scale and, with
    ``ssnet.saliency_eval_multiscale``, multi-scale + flip) of the held-out images and the
    ``ssnet.saliency.eval_roots`` benchmarks (or of every image of ``saliency_data``, another
    saliency dataset, instead)."""
    check_stage(stage)
    cfg = ctx.config
    s = cfg.ssnet
    split = split or cfg.data.val_split or cfg.data.train_split
    path = required_model(checkpoint, model_path(ctx, stage), f"SSNet stage-{stage} model", f"train-ssnet --stage {stage}")
    predictor = Predictor(path, cfg.device, max_side=s.eval_long_side, saliency_upsample=s.saliency_upsample,
                          saliency_crf=s.saliency_crf)
    if not predictor.has_saliency:
        raise WsssError(f"{path}: not an SSNet model; use `wsss eval-seg` for a segmentation model")
    name = ctx.output_name(split, root)
    result: dict = {"stage": stage, "checkpoint": str(path), "split": split}
    prefix = f"ssnet{stage}"

    voc = ctx.dataset(split, root)
    if voc.has_masks:
        check_classes(path, predictor.class_names, voc)
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
        sets = saliency_sets(ctx, saliency_data)
        if not sets:
            log.info("eval-ssnet: no saliency images held out (ssnet.saliency.holdout_every: 0) and no "
                     "ssnet.saliency.eval_roots; saliency not scored")
        variants = {"single-scale": ([1.0], False)}
        if s.saliency_eval_multiscale:
            variants["multi-scale+flip"] = (list(s.eval_scales), True)
        rows = {}
        for set_name, (dataset, source, key_suffix) in sets.items():
            scores = score_saliency(predictor, dataset, variants, ctx.progress, f"eval-ssnet saliency {set_name}")
            result.setdefault("saliency", {})[set_name] = scores
            result.setdefault("saliency_data", {})[set_name] = source
            ctx.update_summary(f"{prefix}/saliency{key_suffix}", scores)
            rows.update({f"{set_name} {variant}": value for variant, value in scores.items()})
        if rows:
            print(format_saliency_table(rows, f"SSNet stage {stage} saliency (scored at each image's size)"))
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
