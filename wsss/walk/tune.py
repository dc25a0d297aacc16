"""`wsss tune`: sweep the random walk's hyperparameters on a labelled subset of a split.

The network's output (AffinityNet features for PSA, the class-boundary map for IRN) and the
CAMs are computed once per image; every (beta, steps, background threshold) combination, and
with a saliency cue every (saliency weight, power) of the background mix, then costs only a
walk and an argmax (no CRF), so a sweep over dozens of settings takes minutes.
The best setting is printed as ``--set`` overrides and saved to ``eval/tune_<split>.json``;
check that it holds on a split it was not chosen on.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
from tqdm import tqdm

from ..cues.cam import cam_dir, cam_to_label, load_cam
from ..cues.cam_threshold import cam_background_threshold
from ..cues.saliency import best_saliency_threshold, load_saliency, saliency_dir, saliency_power, saliency_settings
from ..distributed import on_main_process
from ..errors import WsssError
from ..io import save_json
from ..metrics import confusion_matrix, mean_iou
from ..run.context import RunContext

log = logging.getLogger("wsss")


@dataclass
class Walker:
    """What the sweep needs of a pipeline's walk.

    ``prepare(image) -> state``: the network's output for one (H, W, 3) image, computed once;
    ``labels(state, cams, keys, beta, steps, threshold, **cue) -> (H, W) labels`` with background
    threshold ``threshold`` (``cue``: ``saliency``, ``weight``, ``power`` of the background's
    saliency mix, when swept); ``overrides(best)``: the ``--set`` line for the best result.
    """

    prepare: Callable[[np.ndarray], object]
    labels: Callable[..., np.ndarray]
    overrides: Callable[[dict], str]
    extra: Callable[[float], dict] = lambda threshold: {}  # noqa: E731 - more columns of a result


def saliency_grid(ctx: RunContext, weights: Optional[Sequence[float]],
                  powers: Optional[Sequence[float]]) -> tuple[list[float], list[float]]:
    """The saliency weights and powers of the walk's background to sweep: as given, else the
    config's (``saliency.walk_weight``; ``walk_power``, or gamma from s* and t*)."""
    weights = list(weights) if weights is not None else [ctx.config.saliency.walk_weight]
    if powers is not None or not any(w > 0 for w in weights):
        return weights, list(powers) if powers is not None else [1.0]
    power = ctx.config.saliency.walk_power
    if power is None:
        power = saliency_power(best_saliency_threshold(ctx), cam_background_threshold(ctx, "saliency.walk_power"))
    return weights, [round(power, 4)]


@on_main_process  # scoring is not sharded: rank 0 scores, the others wait
def sweep(ctx: RunContext, walker: Walker, split: Optional[str] = None, root: Optional[Path] = None,
          limit: int = 80, betas: Sequence[float] = (4, 8, 16), steps_list: Sequence[int] = (32, 128, 256),
          thresholds: Optional[Sequence[float]] = None, saliency_weights: Optional[Sequence[float]] = None,
          saliency_powers: Optional[Sequence[float]] = None) -> dict:
    """mIoU of the walk's labels for every (beta, steps, background threshold, saliency weight,
    saliency power) on ``limit`` images of ``split`` spread over it; prints the best ten and
    returns the best. A weight > 0 needs the split's saliency maps (make-saliency)."""
    split = split or ctx.config.data.train_split
    voc = ctx.dataset(split, root, require_masks=True)
    if thresholds is None:
        thresholds = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    weights, powers = saliency_grid(ctx, saliency_weights, saliency_powers)
    with_saliency = any(w > 0 for w in weights)
    saliency_folder = saliency_dir(ctx, split, root)
    if with_saliency and saliency_settings(ctx, split, root) is None:
        raise WsssError(f"{saliency_folder}: no saliency maps to sweep the saliency weight with; run "
                        f"`wsss make-saliency --split {split}` first")
    cams_folder = cam_dir(ctx, split, root)
    # spread over the whole split: ids are often grouped by theme, so the first N are biased
    indices = sorted(set(np.linspace(0, len(voc) - 1, min(limit, len(voc))).round().astype(int).tolist()))
    cached = []
    for index in tqdm(indices, desc="tune: network", unit="img", disable=not ctx.progress):
        cams, keys = load_cam(cams_folder / f"{voc.ids[index]}.npz")
        image = voc.load_image(index)
        saliency = load_saliency(saliency_folder, voc.ids[index], image.shape[:2]) if with_saliency else None
        cached.append((walker.prepare(image), cams, keys, voc.load_mask(index, image.shape[:2]), saliency))
    cam_threshold = cam_background_threshold(ctx)
    cam_conf = sum(confusion_matrix(cam_to_label(c, k, cam_threshold), m, voc.num_classes)
                   for _, c, k, m, _ in cached)
    cam_miou = round(100 * mean_iou(cam_conf), 2)
    results = []
    grid = list(itertools.product(betas, steps_list, thresholds, weights, powers))
    for beta, steps, threshold, weight, power in tqdm(grid, desc="tune: grid", unit="setting",
                                                      disable=not ctx.progress):
        conf = np.zeros((voc.num_classes, voc.num_classes), dtype=np.int64)
        for state, cams, keys, mask, saliency in cached:
            cue = {"saliency": saliency, "weight": weight, "power": power} if weight > 0 else {}
            conf += confusion_matrix(walker.labels(state, cams, keys, beta, steps, threshold, **cue), mask,
                                     voc.num_classes)
        result = {"beta": beta, "steps": steps, "bg_threshold": threshold, **walker.extra(threshold)}
        if with_saliency:
            result.update(saliency_weight=weight, saliency_power=power)
        results.append({**result, "miou": round(100 * mean_iou(conf), 2)})
    results.sort(key=lambda r: -r["miou"])
    best = results[0]
    extra = [k for k in best if k not in ("beta", "steps", "bg_threshold", "miou")]
    print(f"{'beta':>6} {'steps':>6} {'bg thr':>7}" + "".join(f" {k:>7}" for k in extra) + f" {'mIoU':>7}")
    for r in results[:10]:
        print(f"{r['beta']:>6g} {r['steps']:>6d} {r['bg_threshold']:>7.2f}" + "".join(f" {r[k]:>7.3f}" for k in extra)
              + f" {r['miou']:>7.2f}")
    print(f"CAM alone on these images (background threshold {cam_threshold:.2f}): {cam_miou:.2f}")
    overrides = walker.overrides(best)
    if with_saliency:
        overrides += f" --set saliency.walk_weight={best['saliency_weight']:g}"
        if best["saliency_weight"] > 0:
            overrides += f" --set saliency.walk_power={best['saliency_power']:g}"
    print(f"best on {len(indices)} images of {split}: {overrides}")
    save_json(ctx.layout.eval_file("tune", ctx.output_name(split, root)),
              {"split": split, "num_images": len(indices), "cam_miou": cam_miou, "results": results})
    return best
