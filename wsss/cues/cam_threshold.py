"""The CAMs' background threshold t* without a single mask.

Every ``auto`` setting downstream (PSA's seeds and walk background, IRN's seeds and background,
the saliency cue's power) derives its value from t*, the score above which a pixel's largest
normalised CAM marks it as foreground. PSA and IRN pick it against the train masks; a user with
tags only has none. Two mask-free estimates, both from the train split's CAMs alone:

* ``evidence``: the classifier's own evidence. Show it only the pixels above t (the rest set to
  its mean colour): the largest t whose region keeps 90% of the score for the image's tags that
  the region above the lowest threshold (0.05) gets, in the mean over up to 64 tagged train
  images. Above t* lies what the classifier needs to see.
* ``otsu``: Otsu's threshold of the pooled max-CAM values of the tagged images. Normalised CAMs
  peak at 1 on each object and fall towards 0 on the background, so their histogram has an
  object mode and a background mode; t* is where a two-class split of it has the least
  within-class variance.

``cam.bg_threshold`` picks: ``auto`` (= ``evidence``), ``otsu``, ``masks`` (the named opt-in that sweeps
against the train masks, eval-cam's best: for ablations only), or a number.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..config import ThresholdSweep
from ..engine.plan import WouldRun, is_planning
from ..errors import WsssError
from ..io import read_json, save_json
from ..run.context import RunContext
from .cam import cam_dir, cam_settings, load_cam

log = logging.getLogger("wsss")

MASK_FREE_METHODS = ("evidence", "otsu")

RETAIN = 0.9
"""evidence: the share of the score of the region above the lowest threshold that the region
above t* keeps."""


def otsu_threshold(values: np.ndarray, bins: int = 100) -> float:
    """Otsu's threshold of ``values`` in [0, 1]: (N,) -> the bin edge between the two classes
    that maximises the between-class variance w0 w1 (mu0 - mu1)^2."""
    counts, edges = np.histogram(np.clip(values, 0, 1), bins=bins, range=(0.0, 1.0))
    counts = counts.astype(np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(counts)
    w1 = w0[-1] - w0
    m0 = np.cumsum(counts * centres)
    mu0 = m0 / np.maximum(w0, 1e-12)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1e-12)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return round(float(edges[1:][int(np.argmax(between[:-1]))]), 4)  # a bin edge: 0.48, not 0.47999998


@torch.no_grad()
def kept_scores(net, image: torch.Tensor, peak: torch.Tensor, classes: torch.Tensor,
                thresholds: np.ndarray) -> np.ndarray:
    """The classifier's mean sigmoid score of the image's tagged ``classes`` when only the pixels
    whose largest CAM exceeds each threshold are shown (the rest set to the network's mean
    colour, i.e. zero after its normalisation): (3, H, W) image, (H, W) peak -> (T,)."""
    fill = image.new_tensor(net.backbone.pixel_mean).view(3, 1, 1)
    shown = torch.stack([torch.where(peak > float(t), image, fill) for t in thresholds])
    return torch.sigmoid(net(shown))[:, classes].mean(dim=1).numpy()


def evidence_threshold(net, voc, folder: Path, chosen: list[int], thresholds: list[float]) -> tuple[float, dict]:
    """The largest of ``thresholds`` (ascending) whose region above it keeps RETAIN of the score
    that the region above the lowest one gets (all that the CAMs touch, shown the same way), in
    the mean over ``chosen`` images: the classifier's own evidence, above t* lies what it needs
    to see."""

    kept = np.zeros(len(thresholds))
    for index in chosen:
        cams, keys = load_cam(folder / f"{voc.ids[index]}.npz")
        image = torch.from_numpy(voc.load_image(index)).permute(2, 0, 1).float()
        classes = torch.as_tensor(np.asarray(keys), dtype=torch.long)
        kept += kept_scores(net, image, torch.from_numpy(cams.max(axis=0)), classes, thresholds)
    kept /= len(chosen)
    keeping = [float(t) for t, score in zip(thresholds, kept) if score >= RETAIN * kept[0]]
    threshold = max(keeping)  # the lowest threshold keeps its own score: never empty
    return threshold, {"images": len(chosen), "retain": RETAIN,
                       "kept_score": {f"{t:.2f}": float(s) for t, s in zip(thresholds, kept)}}


def estimate(method: str, voc, folder: Path, classifier: Optional[Path] = None,
             thresholds: Optional[list[float]] = None, limit: int = 64) -> tuple[float, dict]:
    """t* of ``method`` from the CAMs in ``folder`` of the split ``voc`` (tagged images only; the
    first ``limit`` of them spread over the split for evidence, which needs the CAM ``classifier``
    and the images, and tries ``thresholds``: eval-cam's sweep, ``cam.thresholds``, by default);
    returns (t*, what was measured)."""

    tagged = [i for i in range(len(voc)) if voc.labels[i].any()]
    if not tagged:
        raise WsssError(f"{folder}: no image of split {voc.split!r} has a tag; a background threshold needs CAMs")
    if method == "evidence":
        from ..models import load_model

        net = load_model(classifier, "cpu", "cam").model
        chosen = [tagged[int(k)] for k in np.linspace(0, len(tagged) - 1, min(limit, len(tagged)))]
        return evidence_threshold(net, voc, folder, chosen, thresholds or ThresholdSweep().values())
    if method == "otsu":
        pooled = []
        for index in tagged:
            cams, _ = load_cam(folder / f"{voc.ids[index]}.npz")
            pooled.append(cams.max(axis=0)[::2, ::2].ravel())  # every 4th pixel is plenty for a histogram
        threshold = otsu_threshold(np.concatenate(pooled))
        return threshold, {"images": len(tagged)}
    raise WsssError(f"cam.bg_threshold: unknown method {method!r}; use auto, {', '.join(MASK_FREE_METHODS)}, "
                    "masks or a number")


def mask_free_threshold(ctx, method: str) -> float:
    """t* of ``method`` for the run's train CAMs, cached in ``eval/cam_threshold_<split>.json``
    with the CAMs' settings (new CAMs: estimated again)."""

    split = ctx.config.data.train_split
    folder = cam_dir(ctx, split)
    settings = cam_settings(ctx, split)
    if settings is None:
        raise WsssError(f"{folder}: no CAMs of split {split!r}; the background threshold comes from them "
                        "(run `wsss make-cam` first)")
    path = ctx.layout.eval_file("cam_threshold", split)
    sweep = ctx.config.cam.thresholds.values()
    cached = read_json(path, {})
    if isinstance(cached, dict) and cached.get("cams") == settings and cached.get("method") == method \
            and cached.get("thresholds", sweep) == sweep:
        return float(cached["threshold"])
    if is_planning():
        raise WouldRun(f"t* is estimated anew from the {split} CAMs ({method})")
    voc = ctx.dataset(split)
    threshold, measured = estimate(method, voc, folder, ctx.layout.cam_model, sweep)
    save_json(path, {"method": method, "threshold": threshold, "masks": "none read", "cams": settings,
                     "thresholds": sweep, **measured})
    log.info("background threshold t* = %.2f from the %s CAMs alone (%s; no mask read)", threshold, split, method)
    ctx.update_summary(f"cam_threshold/{split}", {"threshold": threshold, "method": method})
    return threshold


def cam_background_threshold(ctx: RunContext, instead: str = "a fixed threshold") -> float:
    """The CAMs' background threshold t* that the ``auto`` settings of later stages derive theirs
    from, as ``cam.bg_threshold`` says: a number; mask-free from the train CAMs (auto, evidence,
    otsu: :mod:`wsss.cues.cam_threshold`); or, with the named opt-in ``masks``, the threshold at which the
    train CAMs scored best against the train masks (eval-cam's result; ``instead``: the setting
    to use without it, for the error)."""
    source = ctx.config.cam.bg_threshold
    if isinstance(source, float):
        return source
    if source != "masks":
        return mask_free_threshold(ctx, "evidence" if source == "auto" else source)
    path = ctx.layout.eval_file("cam", ctx.config.data.train_split)
    if not path.exists():
        raise WsssError(f"{path}: not found; cam.bg_threshold: masks needs `wsss eval-cam` on the train split (with "
                        f"masks) first (or set cam.bg_threshold: auto, or {instead})")
    return float(read_json(path)["best_threshold"])


def auto_seed_thresholds(best_threshold: float, fg_margin: float, bg_factor: float) -> tuple[float, float]:
    """(confident-foreground, confident-background) CAM thresholds around the CAMs' best background
    threshold t*: t* + fg_margin (1 - t*) and t* bg_factor (``seeds: auto`` of PSA and IRN)."""
    t = best_threshold
    return min(0.95, t + fg_margin * (1 - t)), max(0.01, t * bg_factor)
