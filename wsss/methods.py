"""The methods ``wsss run`` knows, registered in one place: what each runs, in which order, and
where its outputs go.

A method is one of

* a **seed-and-walk** method (PSA, IRN): it declares three stages of its own in
  ``wsss.<name>.pipeline`` (seeds -> network -> walk). ``wsss run`` runs them between the CAM
  stages and the segmentation network, scoring the walk's labels where there are masks. Its
  settings are the config section of its name, its outputs the folders of its name
  (``<name>_labels/``, ``<name>/``, ``<name>_pseudo/``; :class:`wsss.run.layout.RunLayout`),
  so two of them sit side by side in one run directory;
* a method with a pipeline of its own (SSNet): ``wsss.<name>.pipeline.run(ctx)``.

A new method is a folder ``wsss/<name>/`` with its steps and its ``pipeline.py``, a config
section, a :class:`Method` here and its commands in ``wsss.cli``.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from typing import Optional

from .errors import WsssError

log = logging.getLogger("wsss")


@dataclass(frozen=True)
class Method:
    """One method: its ``pipeline:`` name, what ``wsss run`` does for it and what the report expects."""

    name: str
    title: str
    walk: bool  # a seed-and-walk method (STAGES in its pipeline.py) or one with its own run(ctx)
    tuner: Optional[str] = None  # the module whose run(ctx, ...) is `wsss tune` for its walk
    # the stages whose wall time a complete run records (the report's timing table)
    timed_stages: tuple[str, ...] = ()
    # commands of earlier versions -> today's, accepted with a line saying so
    renamed_commands: dict[str, str] = field(default_factory=dict)

    @property
    def pipeline(self):
        """``wsss.<name>.pipeline``, imported on first use (``wsss --help`` stays light)."""
        return importlib.import_module(f"wsss.{self.name}.pipeline")


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("psa", "AffinityNet (PSA; Ahn & Kwak, CVPR 2018)", walk=True, tuner="wsss.psa.tune",
           timed_stages=("train-cam", "train-psa", "make-psa-pseudo", "train-seg"),
           renamed_commands={"make-aff-labels": "make-psa-labels", "train-aff": "train-psa",
                             "make-pseudo": "make-psa-pseudo"}),
    Method("irn", "IRN (Ahn, Cho & Kwak, CVPR 2019)", walk=True, tuner="wsss.irn.tune",
           timed_stages=("train-cam", "train-irn", "make-irn-pseudo", "train-seg")),
    Method("ssnet", "SSNet (Zeng et al., ICCV 2019)", walk=False,
           timed_stages=("train-ssnet", "make-ssnet-pseudo", "eval-ssnet")),
)}
"""``pipeline:`` of a config -> its method."""

RENAMED_COMMANDS = {old: new for method in METHODS.values() for old, new in method.renamed_commands.items()}


def method_of(name: str) -> Method:
    if name not in METHODS:
        raise WsssError(f"pipeline: {name!r} is not a method; use one of {', '.join(METHODS)}")
    return METHODS[name]


def scored(ctx, split: str, stage: str) -> bool:
    """Whether ``split`` has masks for a stage that only scores; one line when it is skipped (a
    tags-only dataset runs every other stage)."""
    if ctx.dataset(split).has_masks:
        return True
    log.info("%s/%s: no masks in split %r, nothing to score against; skipped", stage, split, split)
    return False


def run_walk_method(ctx, method: Method):
    """CAMs -> the method's seeds (train split) -> its network -> its walk on its ``eval_splits``
    and the train split, each scored by eval-pseudo where there are masks -> train-seg -> eval-seg
    on val. With a saliency cue (``saliency.seeds`` or ``saliency.walk_weight``), make-saliency
    writes the maps of each split before the seeds and the walk read them; with
    ``saliency.checkpoint: train`` the run first trains (or reuses) that model."""
    from . import saliency_model
    from .cam import evaluate as eval_cam
    from .cam import make as make_cam
    from .cam import train as train_cam
    from .config import TRAIN_SALIENCY
    from .cues import saliency as make_saliency
    from .run.closing import RunOutcome
    from .run.timer import StageTimer
    from .segmentation import evaluate as eval_seg
    from .segmentation import train as train_seg
    from .walk import evaluate as eval_pseudo

    cfg = ctx.config
    stages = method.pipeline.STAGES
    eval_splits = getattr(cfg, method.name).eval_splits
    timed = StageTimer(ctx)
    with_saliency = cfg.saliency.used

    if with_saliency and cfg.saliency.checkpoint == TRAIN_SALIENCY:
        timed("train-saliency", saliency_model.run, ctx)
    timed("train-cam", train_cam.run, ctx)
    for split in cfg.cam.eval_splits:
        timed(f"make-cam/{split}", make_cam.run, ctx, split)
        if scored(ctx, split, "eval-cam"):
            timed(f"eval-cam/{split}", eval_cam.run, ctx, split)
    train_split = cfg.data.train_split
    if train_split not in cfg.cam.eval_splits:
        timed(f"make-cam/{train_split}", make_cam.run, ctx, train_split)
    if with_saliency:
        timed(f"make-saliency/{train_split}", make_saliency.run, ctx, train_split)
    timed(stages.seeds.command, stages.seeds.run, ctx, train_split)
    timed(stages.network.command, stages.network.run, ctx)
    for split in eval_splits:
        if split not in cfg.cam.eval_splits and split != train_split:
            timed(f"make-cam/{split}", make_cam.run, ctx, split)
        if with_saliency and split != train_split:
            timed(f"make-saliency/{split}", make_saliency.run, ctx, split)
        timed(f"{stages.walk.command}/{split}", stages.walk.run, ctx, split)
        if scored(ctx, split, "eval-pseudo"):
            timed(f"eval-pseudo/{split}", eval_pseudo.run, ctx, split)
    if train_split not in eval_splits:
        timed(f"{stages.walk.command}/{train_split}", stages.walk.run, ctx, train_split)
    timed("train-seg", train_seg.run, ctx)
    val = cfg.data.val_split
    if val and scored(ctx, val, "eval-seg"):
        timed(f"eval-seg/{val}", eval_seg.run, ctx, val)
    return RunOutcome(ctx.summary(), ctx.layout.seg_model(cfg.seg.labels))


def stage_inputs(ctx):
    """``name -> the stages whose outputs it reads`` for ``wsss run --plan`` (None: every stage
    before it). A seed-and-walk run: CAMs and maps from their models; the seeds from the train
    split's CAMs and maps; the network from the seeds; a split's walk from the network, the seeds,
    that split's CAMs and maps; the segmentation network from the train split's walk."""
    method = method_of(ctx.method)
    if not method.walk:
        return lambda name: None
    stages, train = method.pipeline.STAGES, ctx.config.data.train_split

    def inputs(name: str) -> Optional[list[str]]:
        command, _, split = name.partition("/")
        reads = {"train-saliency": [], "train-cam": [], "make-cam": ["train-cam"], "make-saliency": ["train-saliency"],
                 stages.seeds.command: [f"make-cam/{train}", f"make-saliency/{train}"],
                 stages.network.command: [stages.seeds.command],
                 stages.walk.command: [stages.network.command, stages.seeds.command, f"make-cam/{split}",
                                       f"make-saliency/{split}"],
                 "train-seg": [f"{stages.walk.command}/{train}"]}
        return reads.get(command)
    return inputs


def predicted_seconds(ctx, name: str) -> float:
    """The predicted wall time of stage ``name`` of a seed-and-walk run at the reference speeds
    (:mod:`wsss.run.clock`); 0 for a stage it has no model of."""
    from .run.clock import REFERENCE, passes, training_seconds

    cfg = ctx.config
    command, _, split = name.partition("/")
    method = method_of(ctx.method)
    images = len(ctx.dataset(split or cfg.data.train_split))
    if command == "train-saliency":
        from .ssnet.train import saliency_holdout

        stage = cfg.ssnet.stage1
        # a sample holds a crop of the dataset and k saliency crops; the saliency-only network's
        # (cls_weight 0) the saliency crops alone, an epoch one pass over the saliency set
        k = stage.saliency_per_sample
        if cfg.ssnet.saliency_only:
            images, crops = max(len(saliency_holdout(ctx)[0]) // k, 1), k
        else:
            crops = k + 1
        return training_seconds("train-saliency", images, stage, cfg.channels_last, cfg.backbone.name) * crops
    if command in ("train-cam", "train-seg"):
        section = getattr(cfg, command.split("-")[1])
        return training_seconds(command, images, section, cfg.channels_last, ctx.backbone_of(section).name)
    if method.walk:
        stages = method.pipeline.STAGES
        if command == stages.network.command:
            return training_seconds(f"train-{ctx.method}", images, getattr(cfg, ctx.method), cfg.channels_last,
                                    cfg.backbone.name)
        if command == stages.seeds.command:
            return images * REFERENCE["seeds"]
        if command == stages.walk.command:
            return images * REFERENCE["walk"]
    if command == "make-cam":
        return images * passes(cfg.cam.scales, cfg.cam.flip) * REFERENCE["make-cam"]
    if command == "make-saliency":
        return images * passes(cfg.saliency.scales, cfg.saliency.flip) * REFERENCE["make-saliency"]
    if command == "eval-seg":
        return images * REFERENCE["eval-seg"]
    return images * REFERENCE["eval"] if command.startswith("eval-") else 0.0


def run(ctx):
    """`wsss run`: every stage of the config's method, in order, each skipping work it finds
    complete (re-running the same command after an interruption continues where it stopped).
    A seed-and-walk run plans its stages first and tells, at each stage, how long the rest will
    take (:mod:`wsss.run.clock`). Returns the :class:`wsss.run.closing.RunOutcome`."""
    method = method_of(ctx.method)
    if method.walk and ctx.plan is None:
        _start_clock(ctx)
    return run_walk_method(ctx, method) if method.walk else method.pipeline.run(ctx)


def _start_clock(ctx) -> None:
    from .run.clock import RunClock
    from .run.plan import SCORES, WILL_RUN, make_plan

    try:
        plan = make_plan(ctx, run, stage_inputs(ctx))
        predicted = {s.name: predicted_seconds(ctx, s.name) if s.state in (WILL_RUN, SCORES) else 0.0
                     for s in plan.stages}
    except Exception as exc:  # noqa: BLE001 - the estimate is a courtesy: the stages meet any problem themselves
        log.debug("no time estimate: %s", exc)
        return
    ctx.clock = RunClock(predicted)
    log.info("wsss run: %s", ctx.clock.opening())
