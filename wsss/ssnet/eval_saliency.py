"""Score an SSNet's saliency maps on saliency benchmarks (ECSSD, DUTS-TE, any ``images/`` +
``masks/`` folder) as salient-object papers report them: max F (beta^2 = 0.3), MAE, S-measure
and mean E-measure (``wsss.metrics.SaliencyScores``, by pysodmetrics).

The network sees each image shrunk to ``ssnet.eval_long_side`` (when set: the scale it was
trained at); the map is upsampled to the image's original size and scored against the mask
there, as the benchmarks are scored.

    wsss eval-saliency --checkpoint runs/ssnet_msrc/ssnet2/model.pt --data ../shared/data/ecssd

writes ``eval/saliency_<model>.json`` (``<model>``: the checkpoint's folder, e.g. ``ssnet2``;
``saliency_<model>_<variant>.json`` for another variant than the default) into the run
directory, one entry per dataset, and ``<model>/saliency/<dataset>`` into summary.json under the
variant's name (:func:`variant_name`: ``single-scale`` by default, as ``eval-ssnet`` names it).

Sharper maps (``wsss.inference.saliency``): ``--scales 0.75 1 1.25 --flip`` averages over
scales and mirror images, ``--saliency-crf`` (or ``ssnet.saliency_crf``) refines each map with a
two-label dense CRF, ``--set ssnet.saliency_upsample=logits`` aggregates S from upsampled logits.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Optional, Sequence

from tqdm import tqdm

from ..data.saliency import SaliencyDataset, evaluation_ids
from ..distributed import on_main_process
from ..errors import WsssError
from ..inference.predictor import Predictor
from ..io import save_json
from ..metrics import SaliencyScores
from ..run.context import RunContext, required_model
from ..run.layout import RunLayout
from .train import model_path

log = logging.getLogger("wsss")

SINGLE_SCALE = "single-scale"

# (label, key, format) of the table's score columns
COLUMNS = (("max F", "max_f", "{:.4f}"), ("MAE", "mae", "{:.4f}"), ("S", "s_measure", "{:.4f}"),
           ("mean E", "mean_e", "{:.4f}"))


def default_run_dir(checkpoint: Optional[Path]) -> Path:
    """The run directory of ``<run>/<stage>/model.pt`` (the one with ``config.yaml``): where
    eval-saliency writes, and whose config it reads, when given neither --run-dir nor --config."""
    if checkpoint is None:
        raise WsssError("eval-saliency: pass --checkpoint RUN/ssnet2/model.pt, or --run-dir RUN to score the run's "
                        "final SSNet")
    run_dir = Path(checkpoint).resolve().parent.parent
    if not RunLayout(run_dir).config.exists():
        raise WsssError(f"{checkpoint}: not inside a run directory (no {RunLayout(run_dir).config}); pass --run-dir "
                        "for the scores and --config for the settings (device, ssnet.eval_long_side), e.g. "
                        "--config configs/ssnet_msrc.yaml")
    return run_dir


def evaluation_set(root: Path, setting: str) -> SaliencyDataset:
    """Every image of ``root`` (``images/`` + ``masks/``, paired one to one; checked here, before
    any image is scored); ``setting`` names where the folder came from, for the errors."""
    return SaliencyDataset(root, evaluation_ids(root, setting))


def score_saliency(predictor: Predictor, dataset: SaliencyDataset, variants: dict[str, tuple[Sequence[float], bool]],
                   progress: bool = True, desc: str = "eval saliency") -> dict[str, dict]:
    """{variant: scores (``SaliencyScores.result()``)} of the model's maps on every image of ``dataset``.

    ``variants`` maps a name to (scales, flip) of the predictor. Each (H, W) map is made at
    the predictor's working size and upsampled to the image's, whose mask must be (H, W) too.
    """
    scores = {name: SaliencyScores() for name in variants}
    for index in tqdm(range(len(dataset)), desc=desc, unit="img", disable=not progress, dynamic_ncols=True):
        image = dataset.load_image(index)
        mask = dataset.load_mask(index, image.shape[:2])
        for name, (scales, flip) in variants.items():
            predictor.scales, predictor.flip = list(scales), flip
            scores[name].add(predictor.saliency(image), mask)
    return {name: score.result() for name, score in scores.items()}


def format_saliency_table(rows: dict[str, dict], title: str) -> str:
    """A plain-text table, one row per dataset: max F, MAE, S, mean E and the image count.

    ``rows`` maps a dataset name to its scores (``SaliencyScores.result()``).
    """
    width = max([len(name) for name in rows] + [len("dataset")])
    header = f"{'dataset':<{width}} " + " ".join(f"{label:>7}" for label, _, _ in COLUMNS) + f" {'images':>7}"
    lines = [title, header]
    for name, scores in rows.items():
        cells = " ".join(f"{fmt.format(scores[key]):>7}" for _, key, fmt in COLUMNS)
        lines.append(f"{name:<{width}} {cells} {scores['num_images']:>7d}")
    return "\n".join(lines)


def _earlier_results(path: Path, settings: dict) -> dict:
    """The datasets an earlier eval-saliency scored into ``path`` with the same model and settings."""
    if not path.exists():
        return {}
    try:
        earlier = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}  # rewritten whole below
    return earlier.get("datasets", {}) if earlier.get("settings") == settings else {}


def variant_name(scales: Sequence[float], flip: bool, upsample: str = "map", crf: bool = False) -> str:
    """``single-scale`` or ``multi-scale`` (eval-ssnet's names), then ``+flip``, ``+logits`` (logits
    upsampled before the aggregation) and ``+crf`` for what is on, e.g. ``multi-scale+flip+crf``."""
    parts = [SINGLE_SCALE if list(scales) == [1.0] else "multi-scale"]
    parts += [name for name, on in (("flip", flip), ("logits", upsample == "logits"), ("crf", crf)) if on]
    return "+".join(parts)


@on_main_process  # scoring is not sharded: rank 0 scores, the others wait
def run(ctx: RunContext, data: Sequence[Path], checkpoint: Optional[Path] = None, scales: Sequence[float] = (1.0,),
        flip: bool = False, saliency_crf: bool = False) -> dict:
    """Score the saliency of ``checkpoint`` (default: the run's final SSNet, ``ssnet2/model.pt``)
    on every image of each folder of ``data``; returns {dataset name: scores}.

    ``scales`` / ``flip``: average the maps over these scales (and mirror images);
    ``saliency_crf``: refine each map by the two-label CRF (also on when ``ssnet.saliency_crf``);
    ``ssnet.saliency_upsample`` says where the map is upsampled."""
    if not data:
        raise WsssError("eval-saliency: name a folder to score with --data DIR (images/ + masks/)")
    names = [Path(d).name for d in data]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise WsssError(f"--data: two folders are named {duplicate!r}; their scores would overwrite each other, "
                        "score them one at a time")
    datasets = {Path(d).name: evaluation_set(Path(d), "--data") for d in data}  # every folder checked first

    path = required_model(checkpoint, model_path(ctx, 2), "SSNet stage-2 model", "train-ssnet --stage 2")
    s = ctx.config.ssnet
    max_side, upsample, crf = s.eval_long_side, s.saliency_upsample, saliency_crf or s.saliency_crf
    predictor = Predictor(path, ctx.config.device, max_side=max_side, saliency_upsample=upsample, saliency_crf=crf)
    if not predictor.has_saliency:
        raise WsssError(f"{path}: a segmentation model gives no saliency maps; pass the model.pt of "
                        "`wsss train-ssnet` (an SSNet)")
    label = path.resolve().parent.name  # ssnet1 / ssnet2 for a run's own models
    settings = {"checkpoint": str(path.resolve()), "model": predictor.fingerprint, "max_side": max_side,
                "scales": list(scales), "flip": flip, "saliency_upsample": upsample, "saliency_crf": crf}
    variant = variant_name(scales, flip, upsample, crf)
    # one file per variant, the default's named as before: scoring one variant keeps the others'
    out = ctx.layout.eval_file("saliency", label if variant == SINGLE_SCALE else f"{label}_{variant}")
    results = _earlier_results(out, settings)

    rows = {}
    for name, dataset in datasets.items():
        start = time.perf_counter()
        scores = score_saliency(predictor, dataset, {variant: (scales, flip)}, ctx.progress,
                                f"eval-saliency {name}")[variant]
        seconds = time.perf_counter() - start
        log.info("eval-saliency: %s, %d images in %.1f s (%.2f s/image)", name, len(dataset), seconds,
                 seconds / len(dataset))
        rows[name] = scores
        results[name] = {**scores, "data": str(Path(dataset.root).resolve()), "seconds": round(seconds, 1)}
        key = f"{label}/saliency/{name}"
        ctx.update_summary(key, {**ctx.summary().get(key, {}), variant: scores})
    save_json(out, {"settings": settings, "datasets": results})
    side = f", long side <= {max_side} px" if max_side else ""
    print(format_saliency_table(rows, f"saliency of {path} ({variant}{side}; scored at each image's size)"))
    print(f"eval-saliency: scores in {out}")
    return rows
