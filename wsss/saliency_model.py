"""The saliency cue's own model, trained by ``wsss run`` and shared between runs.

``saliency.checkpoint: train`` makes the saliency model a stage of a PSA or IRN run (``train-saliency``,
before the CAMs): SSNet's stage 1 (Zeng et al., ICCV 2019; the ``ssnet:`` section's ``stage1``,
its saliency set such as DUTS-TR and the dataset's tags), or with ``ssnet.cls_weight: 0`` the
saliency-only network (the same network with class-agnostic maps, on the saliency set alone),
trained once into ``saliency.store``:

    <store>/ssnet1-<key>/ssnet1/model.pt         the model (checkpoint.pt, train_log.jsonl beside it)
    <store>/ssnet1-<key>/ssnet/saliency_split.json

``<key>`` names what made it: the stage's training fingerprint (settings, backbone, classes,
seed), the saliency set's images and, for SSNet's stage 1, the train split's images and tags. A
run whose settings and data give the same key reuses the model, and says so: a second run
directory, or a changed walk or segmentation setting, trains no saliency model again; nor, for
the saliency-only network, another dataset. The run records the model it used in
``summary.json`` (``saliency_model``); make-saliency's maps record its fingerprint as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from .engine.checkpoint import finished_model
from .engine.plan import WouldRun, is_planning
from .run.context import RunContext
from .run.lock import run_lock
from .ssnet import train as ssnet_train
from .ssnet.train import SALIENCY_CLASSES, saliency_holdout, saliency_only, stage_fingerprint

log = logging.getLogger("wsss")

def store_context(ctx: RunContext, folder: Path) -> RunContext:
    """A context for ``folder`` in the store: the run's config and device, nothing recorded."""
    return RunContext(folder, ctx.config, progress=ctx.progress)


def _made_from(ctx: RunContext) -> tuple[str, Path]:
    """(the stage's training fingerprint, the store folder of this run's saliency model,
    ``<store>/ssnet1-<key>``): the key (16 hex digits) hashes the fingerprint and the saliency
    set's images, and for SSNet's stage 1 the train split's images and tags (the saliency-only
    network reads nothing of the dataset: one model serves every dataset)."""
    cfg = ctx.config
    train_ids, _ = saliency_holdout(ctx)
    if saliency_only(ctx, 1):
        made_from = {"stage": stage_fingerprint(ctx, 1, SALIENCY_CLASSES, {}), "saliency_images": train_ids}
    else:
        voc = ctx.dataset(cfg.data.train_split)
        made_from = {"stage": stage_fingerprint(ctx, 1, voc.class_names, {}),
                     "tags": [voc.ids, voc.labels.astype(int).tolist()], "saliency_images": train_ids}
    key = hashlib.sha256(json.dumps(made_from, sort_keys=True).encode()).hexdigest()[:16]
    return made_from["stage"], Path(cfg.saliency.store) / f"ssnet1-{key}"


def model_dir(ctx: RunContext) -> Path:
    """The store folder of this run's saliency model (:func:`_made_from`)."""
    return _made_from(ctx)[1]


def run(ctx: RunContext) -> Path:
    """Train SSNet stage 1 into the store, or reuse the one there; returns its model.pt. The run's
    later stages read it (``ctx.saliency_model``)."""
    fingerprint, folder = _made_from(ctx)  # the fingerprint reads no run directory: the store's is the run's
    store_ctx = store_context(ctx, folder)
    model = store_ctx.layout.ssnet_model(1)
    finished = finished_model(model, fingerprint)
    if not finished and is_planning():
        raise WouldRun(f"not in the store for these settings and data: trains {folder}")
    if finished:
        log.info("train-saliency: reusing %s (trained for the same settings and data)", model)
    else:
        network = "the saliency-only network" if saliency_only(ctx, 1) else "SSNet stage 1"
        log.info("train-saliency: %s into %s, shared by every run of the same settings and data", network, folder)
        with run_lock(folder, "train-saliency", "saliency model folder", "set another saliency.store"):
            ssnet_train.run(store_ctx, 1)
    ctx.saliency_model = model
    if not is_planning():
        ctx.update_summary("saliency_model", str(model))
    return model
