"""The walk's background threshold without masks: the one at which the walk keeps the CAMs' area.

A random walk spreads each class's score over the pixels its affinities join, so the walked
maps are flatter than the CAMs: their peaks fall and their tails rise. Against the background
threshold t* that separates object from background in the CAMs themselves, the walked scores
then mark a different amount of each image as object, and the threshold the walk needs is not
t*. (PSA's tuner, sweeping against train masks, chose 2/3 t* for PSA's walk on msrc; IRN's walk
needs another.) Both methods' walks redistribute a CAM's mass rather than create it, so a
threshold that keeps the foreground area the CAMs have at t* keeps their decision, drawn along
the network's boundaries instead of the CAMs' blur. ``walk_bg_factor: area`` finds it:

* the walk's network and labels on up to ``SAMPLE_IMAGES`` tagged train images spread over the
  split (a walk and an arg-max per candidate, no CRF, as `wsss tune` does);
* target: the share of their pixels the CAMs label foreground at t*;
* the candidate factor f of t* whose walked labels come closest to that share.

No mask is read. The choice, the shares and what it was made from are recorded in
``eval/walk_threshold_<method>_<split>.json`` and reused while they hold.
"""

from __future__ import annotations

import json
import logging
from typing import Callable

import numpy as np

from ..cues.cam import cam_dir, cam_settings, cam_to_label, load_cam
from ..cues.saliency import saliency_dir, walk_cue
from ..engine.plan import WouldRun, is_planning
from ..io import read_json, save_json
from ..run.context import RunContext
from .tune import Walker

log = logging.getLogger("wsss")

SAMPLE_IMAGES = 48
FACTORS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.1, 1.2)
"""Candidate factors of t*: the walk's background threshold is f t* for one of them."""


def foreground_share(labels: list[np.ndarray]) -> float:
    """The share of all pixels of a list of (H, W) label maps that is not background (0)."""
    return float(sum(int((lab > 0).sum()) for lab in labels) / max(1, sum(lab.size for lab in labels)))


def area_matched_factor(target: float, shares: dict[float, float]) -> float:
    """The factor whose foreground share is closest to ``target`` (the larger factor on a tie:
    the walk's labels then claim no more than the CAMs')."""
    return min(shares, key=lambda f: (abs(shares[f] - target), -f))


def walk_factor(ctx: RunContext, method: str, walker: Callable[[], Walker], t_star: float, beta: float, steps: int,
                settings: dict, cue=None) -> float:
    """The factor f of ``t_star`` at which ``method``'s walk (``walker()``: its network's
    :class:`Walker`, built only when the record is missing or stale) labels as much of the
    train images foreground as the CAMs do at ``t_star``. ``settings``: what the walk's labels
    depend on (its network, CAMs, saliency cue), recorded with the choice."""
    split = ctx.config.data.train_split
    path = ctx.layout.eval_file(f"walk_threshold_{method}", split)
    record = {"method": "area", "t_star": t_star, "beta": beta, "steps": steps, "factors": list(FACTORS),
              "images": SAMPLE_IMAGES, "settings": settings}
    cached = read_json(path, {})
    if isinstance(cached, dict) and all(cached.get(k) == v for k, v in _as_json(record).items()):
        return float(cached["factor"])
    if is_planning():
        raise WouldRun(f"the walk's background factor is found anew (area, {SAMPLE_IMAGES} {split} images)")
    voc = ctx.dataset(split)
    tagged = [i for i in range(len(voc)) if voc.labels[i].any()]
    if not tagged:
        return 1.0
    picks = sorted({tagged[int(round(j))] for j in np.linspace(0, len(tagged) - 1, min(SAMPLE_IMAGES, len(tagged)))})
    walk = walker()
    folder, saliency = cam_dir(ctx, split), saliency_dir(ctx, split)
    cam_labels, samples = [], []
    for index in picks:
        image_id = voc.ids[index]
        cams, keys = load_cam(folder / f"{image_id}.npz")
        image = voc.load_image(index)
        cam_labels.append(cam_to_label(cams, keys, t_star))
        mix = cue.walk_mix(saliency, image_id, image.shape[:2]) if cue is not None else {}
        samples.append((walk.prepare(image), cams, keys, mix))
    target = foreground_share(cam_labels)
    shares = {}
    for factor in FACTORS:
        threshold = min(0.95, t_star * factor)
        shares[factor] = round(foreground_share([walk.labels(state, cams, keys, beta, steps, threshold, **mix)
                                                 for state, cams, keys, mix in samples]), 4)
    factor = area_matched_factor(target, shares)
    save_json(path, {**_as_json(record), "factor": factor, "threshold": round(t_star * factor, 4), "masks": "none read",
                     "cam_share": round(target, 4), "walk_shares": {f"{f:g}": s for f, s in shares.items()},
                     "sampled": len(picks)})
    log.info("%s: the walk keeps the CAMs' foreground share (%.3f at t* %.2f) at background threshold %.3g = %g t* "
             "(%d train images; no mask read)", method, target, t_star, t_star * factor, factor, len(picks))
    return factor


def _as_json(value: dict) -> dict:
    """``value`` as it reads back from JSON (tuples as lists), for comparing with a record."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def walk_threshold(ctx: RunContext, method: str, factor, t_star: float, walker: Callable[[], Walker], beta: float,
                   steps: int, network_settings: Callable[[], dict]) -> float:
    """A walk's background threshold t* x ``factor`` (at most 0.95): a configured
    ``walk_bg_factor``, a number or ``area`` (:func:`walk_factor`, with the run's saliency cue of
    the walk; ``network_settings()``: what of the method's network the labels depend on)."""
    if factor != "area":
        return min(0.95, t_star * float(factor))
    split, cue = ctx.config.data.train_split, walk_cue(ctx)
    settings = {**network_settings(), "cams": cam_settings(ctx, split),
                "saliency": cue.walk_settings(ctx, split) if cue is not None else None}
    return min(0.95, t_star * walk_factor(ctx, method, walker, t_star, beta, steps, settings, cue))

