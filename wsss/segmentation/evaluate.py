"""Score the segmentation network: single-scale and multi-scale + flip, with and without CRF."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from ..distributed import on_main_process
from ..errors import WsssError
from ..inference.predictor import Predictor
from ..inference.scoring import score_segmentation
from ..io import save_json
from ..metrics import format_iou_table, segmentation_report
from ..run.context import RunContext

log = logging.getLogger("wsss")


@on_main_process  # scoring is not sharded: rank 0 scores, the others wait
def run(ctx: RunContext, split: Optional[str] = None, root: Optional[Path] = None,
        checkpoint: Optional[Path] = None, labels: Optional[str] = None) -> dict:
    cfg = ctx.config
    split = split or cfg.data.val_split or cfg.data.train_split
    voc = ctx.dataset(split, root, require_masks=True)
    labels = labels or cfg.seg.labels
    path = Path(checkpoint) if checkpoint else ctx.layout.seg_model(labels)
    if not path.exists():
        raise WsssError(f"{path}: segmentation model not found; run `wsss train-seg` first or pass --checkpoint")
    predictor = Predictor(path, cfg.device, max_side=None)  # scored at the dataset's own resolution
    if predictor.class_names != voc.class_names:
        raise WsssError(f"{path}: trained for classes {predictor.class_names[1:]}, the dataset has {voc.class_names[1:]}")
    confusions = score_segmentation(predictor, voc, cfg.seg.eval_scales, cfg.seg.eval_crf, cfg.crf.size_relative,
                                    ctx.progress, f"eval-seg {split}")
    reports = {name: segmentation_report(conf, voc.class_names) for name, conf in confusions.items()}
    name = ctx.output_name(split, root)
    kind = "seg_gt" if labels == "gt" and checkpoint is None else "seg"
    result = {"split": split, "checkpoint": str(path), "miou": {k: r["miou"] for k, r in reports.items()},
              "per_class_iou": {k: r["per_class_iou"] for k, r in reports.items()}}
    save_json(ctx.layout.eval_file(kind, name), result)
    best = max(result["miou"], key=result["miou"].get)
    ctx.update_summary(f"{kind}/{name}", {"miou": result["miou"][best], "note": best})
    print(format_iou_table(result["per_class_iou"], title=f"{kind} {name}"))
    return result
