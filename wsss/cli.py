"""The ``wsss`` command line: one sub-command per pipeline step, plus ``run`` for all of them.

Every command is one row of :data:`COMMANDS`: its arguments, the step it calls and how (the
step's module is imported only when the command runs, so ``wsss --help`` stays fast), the config
key ``--workers`` overrides, and the folder ``--restart`` discards. A new step is a new row.

Every command also runs under ``torchrun --nproc_per_node=N -m wsss ...`` (see wsss.distributed):
training stages then use DistributedDataParallel, per-image stages split the images between the
processes, and rank 0 alone writes logs, checkpoints and summaries.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from . import __version__
from .config import DEFAULT_MAX_SIDE, DEVICES, MAX_SCALE, MAX_SEED, load_config, valid_device
from .errors import WsssError
from .methods import METHODS, RENAMED_COMMANDS

log = logging.getLogger("wsss")

def _number(cast, valid, rule: str):
    """An argparse ``type`` that accepts numbers for which ``valid(value)`` holds."""
    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            value = None
        if value is None or not valid(value):
            raise argparse.ArgumentTypeError(f"{text!r}: expected {rule}")
        return value

    return parse


POSITIVE = _number(float, lambda v: v > 0, "a number > 0")
FRACTION = _number(float, lambda v: 0 < v < 1, "a number between 0 and 1")
COUNT = _number(int, lambda v: v >= 0, "an integer >= 0")
POSITIVE_INT = _number(int, lambda v: v >= 1, "an integer >= 1")
SCALE = _number(float, lambda v: 0 < v <= MAX_SCALE, f"a scale in (0, {MAX_SCALE:g}]")
SEED = _number(int, lambda v: 0 <= v <= MAX_SEED, f"an integer in 0..{MAX_SEED}")


def _device(text: str) -> str:
    if not valid_device(text):
        raise argparse.ArgumentTypeError(f"{text!r}: expected {DEVICES}")
    return text


class _Version(argparse.Action):
    """``--version``: the versions of wsss and torch (looked up only when asked for)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the versions of wsss and torch, then exit")

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib import metadata

        try:
            torch_version = metadata.version("torch")
        except metadata.PackageNotFoundError:
            torch_version = "not installed"
        print(f"wsss {__version__} (torch {torch_version})")
        parser.exit()


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML config (default: <run-dir>/config.yaml)")
    parser.add_argument("--run-dir", type=Path, help="folder of this run's outputs (default: runs/<name>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set cam.epochs=5 (repeatable)")
    parser.add_argument("--device", type=_device, help=f"{DEVICES} (overrides the config)")
    parser.add_argument("--seed", type=SEED, help="random seed (overrides the config)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _data_args(parser: argparse.ArgumentParser, with_checkpoint: bool = False, with_out_dir: bool = False) -> None:
    parser.add_argument("--split", help="split to process (default: from the config)")
    parser.add_argument("--data-root", type=Path, help="another VOC-layout dataset root")
    if with_checkpoint:
        parser.add_argument("--checkpoint", type=Path, help="model file to use instead of the run's own")
    if with_out_dir:
        parser.add_argument("--out-dir", type=Path, help="output folder (default: inside the run directory)")


_MAX_SIDE_PIXELS = _number(int, lambda v: v == 0 or v >= 16,
                           "the longest side in pixels (at least 16), or 0 for no limit")


def _max_side(text: str):
    """--max-side: pixels (>= 16), or 0 for no limit (None)."""
    return _MAX_SIDE_PIXELS(text) or None


def _train_args(parser: argparse.ArgumentParser) -> None:
    # no --resume: a stage always continues from its last checkpoint when one exists
    parser.add_argument("--restart", action="store_true",
                        help="discard this stage's checkpoint and outputs and start over (without it, training "
                             "continues from the last checkpoint)")


def _stage_arg(parser: argparse.ArgumentParser, what: str) -> None:
    # one default for every SSNet command: stage 2, the pipeline's final model
    parser.add_argument("--stage", type=int, choices=[1, 2], default=2,
                        help=f"{what} (default 2, the final model; stage 1's model mines the labels stage 2 trains on)")


def _tune_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=POSITIVE_INT, default=80, help="number of images of the split to use")
    parser.add_argument("--beta", type=POSITIVE, nargs="+", default=[4, 8, 16],
                        help="exponents beta of the affinities, T = D^-1 A^beta (default: 4 8 16)")
    parser.add_argument("--steps", type=COUNT, nargs="+", default=[32, 128, 256],
                        help="numbers of random-walk steps (default: 32 128 256)")
    parser.add_argument("--bg-threshold", type=FRACTION, nargs="+", default=None,
                        help="background thresholds c of the walk's input (alpha = log c / log(1 - c))")
    parser.add_argument("--saliency-weight", type=_number(float, lambda v: 0 <= v <= 1, "a number in [0, 1]"),
                        nargs="+", default=None,
                        help="weights w of saliency in the walk's background, (1 - w) b_cam + w (1 - S)^gamma "
                             "(default: saliency.walk_weight; > 0 needs make-saliency's maps of the split)")
    parser.add_argument("--saliency-power", type=POSITIVE, nargs="+", default=None,
                        help="exponents gamma of (1 - S) (default: saliency.walk_power, or from the thresholds)")


def _saliency_checkpoint_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--saliency-checkpoint", type=Path, metavar="MODEL",
                        help="an SSNet model.pt (`wsss train-ssnet`) to make the maps with (default: saliency.checkpoint)")


def _seg_labels_arg(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--labels", choices=["pseudo", "gt"], help=help)


def _train_seg_args(parser: argparse.ArgumentParser) -> None:
    _seg_labels_arg(parser, "pseudo labels (default) or ground-truth masks")
    parser.add_argument("--max-steps", type=POSITIVE_INT, default=None,
                        help="stop after this many steps of the schedule and write model.pt; the same command "
                             "without it resumes and finishes the schedule")


def _eval_ssnet_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--saliency-data", type=Path, help="score saliency on every image of this images/ + masks/ "
                                                           "folder instead of the held-out part")
    parser.add_argument("--no-saliency", action="store_true", help="score the segmentation only")


def _eval_saliency_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, help="an SSNet model.pt (default: the run's ssnet2/model.pt); "
                                                   "its run directory is the default --run-dir")
    p.add_argument("--data", type=Path, action="append", required=True, metavar="DIR",
                   help="a saliency dataset: images/<id>.jpg and masks/<id>.png (0/255), e.g. ECSSD (repeatable)")
    p.add_argument("--scales", type=SCALE, nargs="+", default=[1.0], help="image scales whose maps are averaged "
                                                                              "(default: 1.0)")
    p.add_argument("--flip", action="store_true", help="also average the maps of the mirrored images")
    _saliency_crf_arg(p, " (default: ssnet.saliency_crf)")


def _saliency_crf_arg(p: argparse.ArgumentParser, default: str = "") -> None:
    p.add_argument("--saliency-crf", action="store_true",
                   help=f"refine saliency maps with a two-label dense CRF{default}")


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, required=True,
                   help="model.pt of `wsss train-seg`, or of `wsss train-ssnet` (also writes saliency maps), or an "
                        ".onnx file of `wsss export` (runs in onnxruntime)")
    p.add_argument("--engine", choices=["torch", "onnxruntime"], default="torch",
                   help="what runs the network: torch (default), or onnxruntime on CPU (pip install 'wsss[onnx]'); "
                        "scales, flip, CRF and the rest are the same")
    p.add_argument("--input", type=Path, required=True, help="an image or a folder of images")
    p.add_argument("--output", type=Path, required=True, help="folder for masks and overlays")
    p.add_argument("--device", type=_device, default="auto", help=f"{DEVICES} (default auto: CUDA when available)")
    p.add_argument("--scales", type=SCALE, nargs="+", default=[1.0],
                   help="image scales whose predictions are averaged (default: 1.0)")
    p.add_argument("--flip", action="store_true", help="also average the predictions of the mirrored images")
    p.add_argument("--crf", action="store_true", help="refine the masks with the dense CRF (slower)")
    _saliency_crf_arg(p)
    p.add_argument("--saliency-upsample", choices=["map", "logits"], default="map",
                   help="SSNet: aggregate saliency at the network's stride, then upsample (map, default), or "
                        "upsample the class logits first (logits: sharper borders)")
    p.add_argument("--workers", type=COUNT, default=1, metavar="N", help="worker processes on CPU (0 = one per core)")
    p.add_argument("--amp", choices=["auto", "on", "off", "bf16", "fp16"], default="auto",
                   help="mixed precision (auto: bf16/fp16 on CUDA, off on CPU)")
    p.add_argument("--max-side", type=_max_side, default=DEFAULT_MAX_SIDE, metavar="N",
                   help=f"shrink larger images to this longer side before inference, masks are written at "
                        f"full size; bounds memory (default {DEFAULT_MAX_SIDE}; 0 = no limit)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, required=True,
                   help="model.pt of `wsss train-seg` or `wsss train-ssnet`")
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx",
                   help="onnx (for onnxruntime; needs pip install 'wsss[onnx]') or torchscript (torch.jit.load)")
    p.add_argument("--out", type=Path, required=True, help="file to write, e.g. model.onnx")


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", nargs="?",
                   help="run directory of `wsss run`: read, and the report written into it (unless --output)")
    p.add_argument("--run-dir", type=Path, dest="run_dir_option", metavar="RUN_DIR",
                   help="the same, spelt as for the other commands")
    p.add_argument("--output", type=Path, help="HTML file to write (default: RUN_DIR/report.html)")
    p.add_argument("--data-root", type=Path, help="the run's dataset, when data.root of its config does not reach it")
    p.add_argument("--images", nargs="+", default=None, metavar="ID",
                   help="image ids to show in the gallery besides best/median/worst (default: two spread over the split)")
    p.add_argument("--device", type=_device, default="cpu",
                   help="device for the segmentation model's gallery predictions")


def _demo_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True,
                   help="dataset root to write (JPEGImages/, SegmentationClass/, ...)")
    p.add_argument("--num-train", type=_number(int, lambda v: v >= 4, "an integer >= 4"), default=96,
                   help="images in the train split (default 96)")
    p.add_argument("--num-val", type=_number(int, lambda v: v >= 2, "an integer >= 2"), default=32,
                   help="images in the val split (default 32)")
    p.add_argument("--image-size", type=_number(int, lambda v: v >= 32, "an integer >= 32"), default=128,
                   help="side of the square images in pixels (default 128)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the generator (default 0)")


def _import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", type=Path, required=True, help="the folder of your photos (read, never written)")
    p.add_argument("--tags", type=Path, required=True,
                   help="CSV or TSV, one row per photo: file name, then its tags (separated by ; , or spaces; "
                        "empty = no object)")
    p.add_argument("--out", type=Path, required=True, help="the dataset folder to write (new, empty, or imported before)")
    p.add_argument("--val-fraction", type=_number(float, lambda v: 0 <= v < 1, "a number in [0, 1)"), default=0.2,
                   help="share of the photos held out as the val split, drawn with --seed (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/val draw (default 0)")
    p.add_argument("--link", action="store_true", help="symbolic links to the photos instead of copies")


def _import(tags, _, args) -> str:
    record = tags.import_tagged_images(args.images, args.tags, args.out, args.val_fraction, args.seed, args.link)
    return (f"dataset written to {args.out} ({record['num_train']} train, {record['num_val']} val, "
            f"{len(record['classes'])} classes); next:\n"
            f"  wsss run --config configs/msrc.yaml --set data.root={args.out} --run-dir runs/{args.out.name}")


# ---------------------------------------------------------------------------------- the commands


@dataclass(frozen=True)
class Command:
    """One sub-command: its arguments and the step it calls.

    ``call(step, ctx, args)`` runs the step (``step`` is the module ``module`` names, imported when
    the command runs; ``ctx`` the run's RunContext, or None for a command that takes no run
    directory) and returns the exit status, or a line to print (status 0).
    """

    name: str
    help: str
    module: Optional[str]  # the step's module, imported when the command runs
    call: Callable[[Any, Any, argparse.Namespace], Any]
    options: tuple[Callable[[argparse.ArgumentParser], None], ...] = ()
    uses_run: bool = True  # takes --config/--run-dir and gets a RunContext
    read_only: bool = False  # only scores: never rewrites the run's config.yaml / run_info.json
    workers_key: Optional[str] = None  # the config key --workers overrides
    trains: Optional[Callable[[Any, argparse.Namespace], Path]] = None  # (ctx, args) -> the folder --restart discards
    # (step, args) -> the run directory to use when given neither --run-dir nor --config
    default_run_dir: Optional[Callable[[Any, argparse.Namespace], Path]] = None
    description: Optional[str] = None


def _data(with_checkpoint: bool = False, with_out_dir: bool = False):
    return lambda parser: _data_args(parser, with_checkpoint, with_out_dir)


def _stage(what: str):
    return lambda parser: _stage_arg(parser, what)


def _train_split_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", help="split (default: the train split)")


def _run_pipeline(_, ctx, args):
    from . import methods, report
    from .precheck import check_run
    from .run.closing import finish

    check_run(ctx)  # every problem of the config and the dataset at once, before any stage starts
    finish(ctx, methods.run(ctx), report.run_safely)


def _plan_run(ctx) -> str:
    """`wsss run --plan`: the pre-check, then the plan; nothing is written."""
    from . import methods
    from .precheck import check_run
    from .run.plan import COMPLETE, describe, make_plan

    check_run(ctx)
    plan = make_plan(ctx, methods.run, methods.stage_inputs(ctx))
    seconds = sum(methods.predicted_seconds(ctx, s.name) for s in plan.stages if s.state != COMPLETE) \
        if methods.method_of(ctx.method).walk else None
    return describe(ctx, plan, seconds)


def _tune(_, ctx, a):
    tuners = {name: method.tuner for name, method in METHODS.items() if method.tuner}
    if ctx.method not in tuners:
        raise WsssError(f"tune sweeps a random walk's settings; pipeline {ctx.method!r} has none "
                        f"(use pipeline: {' or '.join(tuners)})")
    importlib.import_module(tuners[ctx.method]).run(ctx, a.split, a.data_root, a.limit, a.beta, a.steps, a.bg_threshold,
                                                  a.saliency_weight, a.saliency_power)


def _predict(predict, _, args) -> int:
    from . import distributed
    from .engine import resolve_device

    distributed.init_from_env(resolve_device(args.device))
    result = predict.run(args.checkpoint, args.input, args.output, args.device, args.scales, args.flip,
                         args.crf, progress=not args.no_progress, workers=args.workers, amp=args.amp,
                         max_side=args.max_side, saliency_upsample=args.saliency_upsample,
                         saliency_crf=args.saliency_crf, engine=args.engine)
    counts = [f"{result.written} image(s) written"] + [f"{n} {what}" for n, what in (
        (result.kept, "kept from an earlier run"), (len(result.skipped), "skipped (see above)")) if n]
    print(f"predict: {', '.join(counts)}; masks in {args.output}")
    return 1 if result.skipped else 0


def _report(report, _, args) -> str:
    run_dir = args.run_dir or args.run_dir_option
    if run_dir is None:
        raise WsssError("report: name the run directory, e.g. `wsss report runs/demo` or `--run-dir runs/demo`")
    return f"report: {report.run(run_dir, args.output, args.data_root, args.images, args.device)}"


def _demo_data(demo, _, args) -> str:
    root = demo.generate_demo_dataset(args.out, args.num_train, args.num_val, args.image_size, args.seed)
    return f"demo dataset written to {root}"


def _train_split(ctx, args) -> str:
    return args.split or ctx.config.data.train_split


COMMANDS: tuple[Command, ...] = (
    Command("run", "run every stage of the pipeline (skips finished work; `pipeline:` in the config picks "
                   "the method: psa, irn or ssnet)", None, _run_pipeline,
            (lambda p: p.add_argument("--plan", action="store_true",
                                      help="print every stage, whether it is complete or will run and why "
                                           "(a changed setting names itself), and do nothing"),)),
    Command("train-cam", "train the multi-label classifier that gives CAMs", "wsss.cam.train",
            lambda step, ctx, a: f"classifier: {step.run(ctx)}", (_train_args,),
            trains=lambda ctx, a: ctx.layout.cam_dir),
    Command("make-cam", "compute multi-scale CAMs for a split", "wsss.cam.make",
            lambda step, ctx, a: f"CAMs: {step.run(ctx, _train_split(ctx, a), a.data_root, a.checkpoint, a.out_dir)}",
            (_data(with_checkpoint=True, with_out_dir=True),), workers_key="cam.workers"),
    Command("eval-cam", "score CAMs against masks (background threshold sweep)", "wsss.cam.evaluate",
            lambda step, ctx, a: step.run(ctx, _train_split(ctx, a), a.data_root, a.cams),
            (_data(), lambda p: p.add_argument("--cams", type=Path, help="folder of CAM .npz files (default: the run's)")),
            read_only=True),
    Command("make-saliency", "saliency maps of a split from an SSNet model, the background cue of PSA / IRN "
                             "(saliency.seeds, saliency.walk_weight)", "wsss.cues.saliency",
            lambda step, ctx, a: f"saliency maps: {step.run(ctx, _train_split(ctx, a), a.data_root, a.saliency_checkpoint)}",
            (_data(), _saliency_checkpoint_arg), workers_key="saliency.workers"),
    Command("make-psa-labels", "PSA: confident seeds from CAMs (+ dense CRF) for AffinityNet", "wsss.psa.make_labels",
            lambda step, ctx, a: f"PSA seed labels: {step.run(ctx, a.split)}", (_train_split_arg,),
            workers_key="psa.workers"),
    Command("train-psa", "PSA: train AffinityNet on the seed labels", "wsss.psa.train",
            lambda step, ctx, a: f"AffinityNet: {step.run(ctx)}", (_train_args,),
            trains=lambda ctx, a: ctx.layout.network_dir("psa")),
    Command("make-psa-pseudo", "PSA: random walk (+ dense CRF) pseudo labels for a split", "wsss.psa.make_pseudo",
            lambda step, ctx, a: f"pseudo labels: {step.run(ctx, a.split, a.data_root, a.checkpoint)}",
            (_data(with_checkpoint=True),), workers_key="psa.workers"),
    Command("eval-pseudo", "score CAM, CAM+RW and CAM+RW+CRF against masks (the walk of the run's method)",
            "wsss.walk.evaluate",
            lambda step, ctx, a: step.run(ctx, a.split, a.data_root), (_data(),), read_only=True),
    Command("tune", "sweep the random walk's hyperparameters on a labelled subset (PSA's, or IRN's with "
                    "pipeline: irn)", None, _tune, (_data(), _tune_args), read_only=True),
    Command("make-irn-labels", "IRN: confident seeds from CAMs (+ dense CRF) for the boundary network",
            "wsss.irn.make_labels", lambda step, ctx, a: f"IRN seed labels: {step.run(ctx, a.split)}",
            (_train_split_arg,), workers_key="irn.workers"),
    Command("train-irn", "IRN: train the class-boundary network on the seeds' inter-pixel relations", "wsss.irn.train",
            lambda step, ctx, a: f"IRN boundary network: {step.run(ctx)}", (_train_args,),
            trains=lambda ctx, a: ctx.layout.network_dir("irn")),
    Command("make-irn-pseudo", "IRN: boundary-aware random walk (+ dense CRF) pseudo labels for a split",
            "wsss.irn.make_pseudo",
            lambda step, ctx, a: f"pseudo labels: {step.run(ctx, a.split, a.data_root, a.checkpoint)}",
            (_data(with_checkpoint=True),), workers_key="irn.workers"),
    Command("train-seg", "train the segmentation network on pseudo labels (or --labels gt)", "wsss.segmentation.train",
            lambda step, ctx, a: f"segmentation model: {step.run(ctx, a.labels, max_steps=a.max_steps)}",
            (_train_args, _train_seg_args), trains=lambda ctx, a: ctx.layout.seg_dir(a.labels or ctx.config.seg.labels)),
    Command("eval-seg", "score the segmentation network (single/multi-scale, +/- CRF)", "wsss.segmentation.evaluate",
            lambda step, ctx, a: step.run(ctx, a.split, a.data_root, a.checkpoint, a.labels),
            (_data(with_checkpoint=True), lambda p: _seg_labels_arg(p, "which of the run's models to score")),
            read_only=True),
    Command("train-ssnet", "train SSNet (joint saliency + segmentation), stage 1 or 2", "wsss.ssnet.train",
            lambda step, ctx, a: f"SSNet stage {a.stage}: {step.run(ctx, a.stage)}",
            (_train_args, _stage("stage to train: 1 = Lc + Ls1; 2 adds Ls2 on the labels stage 1 mined")),
            trains=lambda ctx, a: ctx.layout.ssnet_dir(a.stage)),
    Command("make-ssnet-pseudo", "pseudo labels from an SSNet (restricted to image labels, + CRF)", "wsss.ssnet.mine",
            lambda step, ctx, a: f"pseudo labels: {step.run(ctx, a.stage, a.split, a.data_root, a.checkpoint)}",
            (_data(with_checkpoint=True), _stage("which stage's SSNet mines them")), workers_key="ssnet.workers"),
    Command("eval-ssnet-pseudo", "score SSNet pseudo labels against masks", "wsss.ssnet.evaluate",
            lambda step, ctx, a: step.run_pseudo(ctx, a.stage, a.split, a.data_root),
            (_data(), _stage("whose pseudo labels to score: those the stage-1 or the stage-2 SSNet mined")),
            read_only=True),
    Command("eval-ssnet", "score SSNet: segmentation mIoU and saliency MAE / max F", "wsss.ssnet.evaluate",
            lambda step, ctx, a: step.run(ctx, a.stage, a.split, a.data_root, a.checkpoint, a.saliency_data,
                                          saliency=not a.no_saliency),
            (_data(with_checkpoint=True), _stage("which stage's SSNet to score"), _eval_ssnet_args), read_only=True),
    Command("eval-saliency", "score an SSNet's saliency maps on images/ + masks/ folders (max F, MAE, S-measure, "
                             "mean E-measure)", "wsss.ssnet.eval_saliency",
            lambda step, ctx, a: step.run(ctx, a.data, a.checkpoint, a.scales, a.flip, a.saliency_crf),
            (_eval_saliency_args,), read_only=True,
            default_run_dir=lambda step, a: step.default_run_dir(a.checkpoint)),
    Command("predict", "segment new images with a trained model", "wsss.predict", _predict, (_predict_args,),
            uses_run=False,
            description="Segment new images with a trained model. Exit status: 0 when every image was segmented, "
                        "1 when some could not be read (each is named above the summary; the others are "
                        "written), 2 on an error that stops the command."),
    Command("export", "write a segmentation model or SSNet as ONNX or TorchScript (any input size; class names "
                      "and preprocessing as metadata)", "wsss.export",
            lambda step, _, a: step.run(a.checkpoint, a.format, a.out), (_export_args,), uses_run=False),
    Command("report", "write the run's self-contained HTML report (report.html)", "wsss.report", _report,
            (_report_args,), uses_run=False),
    Command("make-demo-data", "write the generated demo dataset (VOC layout)", "wsss.data.demo", _demo_data,
            (_demo_data_args,), uses_run=False),
    Command("import", "make a dataset from a folder of photos and a tags file (CSV/TSV `image,tags`): class "
                      "list, labels and seeded train/val splits", "wsss.data.tags", _import, (_import_args,),
            uses_run=False),
)

COMMANDS_BY_NAME = {command.name: command for command in COMMANDS}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wsss", description="Weakly supervised semantic segmentation from image-level tags.")
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.description)
        if command.uses_run:
            _common(p)
        for add in command.options:
            add(p)
        if command.workers_key:
            p.add_argument("--workers", type=COUNT, metavar="N",
                           help=f"worker processes on CPU, 0 = one per core (overrides {command.workers_key})")
    return parser


def _launched_by_torchrun() -> tuple[bool, int]:
    """(started by torchrun with more than one process, this process's rank), without importing torch."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1, int(os.environ.get("RANK", "0"))


def _context(args):
    from . import distributed
    from .engine import resolve_device
    from .run.context import RunContext

    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"device={args.device}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    command = COMMANDS_BY_NAME[args.command]
    if command.workers_key and args.workers is not None:
        overrides.append(f"{command.workers_key}={args.workers}")
    config_path = args.config
    if config_path is None and args.run_dir is not None and (args.run_dir / "config.yaml").exists():
        config_path = args.run_dir / "config.yaml"
    if config_path is None:
        raise WsssError("no config: pass --config configs/<name>.yaml, or --run-dir of an existing run")
    config = load_config(config_path, overrides)
    distributed.init_from_env(resolve_device(config.device))  # under torchrun: join the process group
    run_dir = args.run_dir or Path("runs") / config.name
    return RunContext(run_dir, config, progress=not args.no_progress)


def discard_stage(stage_dir: Path) -> None:
    """``--restart``: delete what a training stage wrote in its folder (weights, checkpoints,
    logs, records); anything else there, and so the folder, stays."""
    from .io import TEMP_MARK

    if not stage_dir.is_dir():
        return
    for path in stage_dir.iterdir():
        if path.is_file() and (path.suffix in (".pt", ".jsonl", ".json") or TEMP_MARK in path.name):
            path.unlink()
    with contextlib.suppress(OSError):
        stage_dir.rmdir()


def upgrade_command(argv: list[str]) -> list[str]:
    """``argv`` with a command of an earlier version (``make-aff-labels``) renamed to today's, and a
    line saying so; the help lists today's names only."""
    position = next((i for i, arg in enumerate(argv) if not arg.startswith("-")), None)
    if position is None or argv[position] not in RENAMED_COMMANDS:
        return argv
    new = RENAMED_COMMANDS[argv[position]]
    print(f"wsss: `wsss {argv[position]}` is now `wsss {new}`", file=sys.stderr)
    return [*argv[:position], new, *argv[position + 1:]]


def _dispatch(args) -> int:
    command = COMMANDS_BY_NAME[args.command]
    step = importlib.import_module(command.module) if command.module else None
    if not command.uses_run:
        result = command.call(step, None, args)
    else:
        if command.default_run_dir is not None and args.run_dir is None and args.config is None:
            args.run_dir = command.default_run_dir(step, args)
        ctx = _context(args)
        if getattr(args, "plan", False):  # reads the run directory, writes nothing: no lock, log or record
            print(_plan_run(ctx))
            return 0
        from . import distributed
        from .run.lock import run_lock

        # one command per run directory (rank 0 holds the lock for all of torchrun's processes)
        with run_lock(ctx.run_dir, args.command) if distributed.is_main() else contextlib.nullcontext():
            ctx.prepare(record_config=not command.read_only or not ctx.layout.config.exists())
            if command.trains is not None and args.restart and distributed.is_main():
                discard_stage(command.trains(ctx, args))
            distributed.barrier()
            result = command.call(step, ctx, args)
            ctx.record()  # the command succeeded: its config is the run's now
    if isinstance(result, str):
        print(result)
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(upgrade_command(list(sys.argv[1:] if argv is None else argv)))
    level = logging.DEBUG if getattr(args, "verbose", False) else logging.INFO
    prefix = "wsss"
    torchrun, rank = _launched_by_torchrun()
    if torchrun:  # rank 0 reports; the others speak only of trouble
        prefix = f"wsss[{rank}]"
        level = level if rank == 0 else logging.WARNING
        if rank != 0:
            sys.stdout = open(os.devnull, "w")  # results are printed once, by rank 0
    logging.basicConfig(level=level, format=f"{prefix}: %(message)s")
    try:
        return _dispatch(args)
    except WsssError as exc:
        print(f"{prefix}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted; re-run the same command to continue", file=sys.stderr)
        return 130
    finally:
        if "wsss.distributed" in sys.modules:  # leave torchrun's process group cleanly
            sys.modules["wsss.distributed"].shutdown()


if __name__ == "__main__":
    sys.exit(main())
