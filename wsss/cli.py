"""The ``wsss`` command line: one sub-command per pipeline step, plus ``run`` for all of them.

Every command also runs under ``torchrun --nproc_per_node=N -m wsss ...`` (see wsss.distributed):
training stages then use DistributedDataParallel, per-image stages split the images between the
processes, and rank 0 alone writes logs, checkpoints and summaries.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path

from . import __version__
from .config import DEFAULT_MAX_SIDE, DEVICES, load_config, valid_device
from .errors import WsssError

log = logging.getLogger("wsss")

# Commands that only score what a run made: they never rewrite its config.yaml / run_info.json
# (they write them only into a run directory that has none).
READ_ONLY_COMMANDS = {"eval-cam", "eval-pseudo", "eval-seg", "eval-ssnet", "eval-ssnet-pseudo", "eval-saliency", "tune"}


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
    parser.add_argument("--seed", type=int, help="random seed (overrides the config)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _data_args(parser: argparse.ArgumentParser, with_checkpoint: bool = False, with_out_dir: bool = False) -> None:
    parser.add_argument("--split", help="split to process (default: from the config)")
    parser.add_argument("--data-root", type=Path, help="another VOC-layout dataset root")
    if with_checkpoint:
        parser.add_argument("--checkpoint", type=Path, help="model file to use instead of the run's own")
    if with_out_dir:
        parser.add_argument("--out-dir", type=Path, help="output folder (default: inside the run directory)")


def _workers_arg(parser: argparse.ArgumentParser, key: str) -> None:
    parser.add_argument("--workers", type=COUNT, metavar="N",
                        help=f"worker processes on CPU, 0 = one per core (overrides {key})")


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wsss", description="Weakly supervised semantic segmentation from image-level tags.")
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run every stage of the pipeline (skips finished work; `pipeline: ssnet` "
                                   "in the config runs SSNet's)")
    _common(p)

    p = sub.add_parser("train-cam", help="train the multi-label classifier that gives CAMs")
    _common(p)
    _train_args(p)

    p = sub.add_parser("make-cam", help="compute multi-scale CAMs for a split")
    _common(p)
    _data_args(p, with_checkpoint=True, with_out_dir=True)
    _workers_arg(p, "cam.workers")

    p = sub.add_parser("eval-cam", help="score CAMs against masks (background threshold sweep)")
    _common(p)
    _data_args(p)
    p.add_argument("--cams", type=Path, help="folder of CAM .npz files (default: the run's)")

    p = sub.add_parser("make-aff-labels", help="confident seeds from CAMs (+ dense CRF) for AffinityNet")
    _common(p)
    p.add_argument("--split", help="split (default: the train split)")
    _workers_arg(p, "walk.workers")

    p = sub.add_parser("train-aff", help="train AffinityNet on the seed labels")
    _common(p)
    _train_args(p)

    p = sub.add_parser("make-pseudo", help="random walk (+ dense CRF) pseudo labels for a split")
    _common(p)
    _data_args(p, with_checkpoint=True)
    _workers_arg(p, "walk.workers")

    p = sub.add_parser("eval-pseudo", help="score CAM, CAM+RW and CAM+RW+CRF against masks")
    _common(p)
    _data_args(p)

    p = sub.add_parser("tune", help="sweep the random walk's hyperparameters on a labelled subset")
    _common(p)
    _data_args(p)
    p.add_argument("--limit", type=POSITIVE_INT, default=80, help="number of images of the split to use")
    p.add_argument("--beta", type=POSITIVE, nargs="+", default=[4, 8, 16],
                   help="exponents beta of the affinities, T = D^-1 A^beta (default: 4 8 16)")
    p.add_argument("--steps", type=COUNT, nargs="+", default=[32, 128, 256],
                   help="numbers of random-walk steps (default: 32 128 256)")
    p.add_argument("--bg-threshold", type=FRACTION, nargs="+", default=None,
                   help="background thresholds c of the walk's input (alpha = log c / log(1 - c))")

    p = sub.add_parser("train-seg", help="train the segmentation network on pseudo labels (or --labels gt)")
    _common(p)
    _train_args(p)
    p.add_argument("--labels", choices=["pseudo", "gt"], help="pseudo labels (default) or ground-truth masks")
    p.add_argument("--max-steps", type=POSITIVE_INT, default=None,
                   help="stop after this many steps of the schedule and write model.pt; the same command "
                        "without it resumes and finishes the schedule")

    p = sub.add_parser("eval-seg", help="score the segmentation network (single/multi-scale, +/- CRF)")
    _common(p)
    _data_args(p, with_checkpoint=True)
    p.add_argument("--labels", choices=["pseudo", "gt"], help="which of the run's models to score")

    p = sub.add_parser("train-ssnet", help="train SSNet (joint saliency + segmentation), stage 1 or 2")
    _common(p)
    _train_args(p)
    _stage_arg(p, "stage to train: 1 = Lc + Ls1; 2 adds Ls2 on the labels stage 1 mined")

    p = sub.add_parser("make-ssnet-pseudo", help="pseudo labels from an SSNet (restricted to image labels, + CRF)")
    _common(p)
    _data_args(p, with_checkpoint=True)
    _stage_arg(p, "which stage's SSNet mines them")
    _workers_arg(p, "ssnet.workers")

    p = sub.add_parser("eval-ssnet-pseudo", help="score SSNet pseudo labels against masks")
    _common(p)
    _data_args(p)
    _stage_arg(p, "whose pseudo labels to score: those the stage-1 or the stage-2 SSNet mined")

    p = sub.add_parser("eval-ssnet", help="score SSNet: segmentation mIoU and saliency MAE / max F")
    _common(p)
    _data_args(p, with_checkpoint=True)
    _stage_arg(p, "which stage's SSNet to score")
    p.add_argument("--saliency-data", type=Path, help="score saliency on every image of this images/ + masks/ folder "
                                                      "instead of the held-out part")
    p.add_argument("--no-saliency", action="store_true", help="score the segmentation only")

    p = sub.add_parser("eval-saliency", help="score an SSNet's saliency maps on images/ + masks/ folders "
                                             "(max F, MAE, S-measure, mean E-measure)")
    _common(p)
    p.add_argument("--checkpoint", type=Path, help="an SSNet model.pt (default: the run's ssnet2/model.pt); "
                                                   "its run directory is the default --run-dir")
    p.add_argument("--data", type=Path, action="append", required=True, metavar="DIR",
                   help="a saliency dataset: images/<id>.jpg and masks/<id>.png (0/255), e.g. ECSSD (repeatable)")

    p = sub.add_parser("predict", help="segment new images with a trained model",
                       description="Segment new images with a trained model. Exit status: 0 when every image "
                                   "was segmented, 1 when some could not be read (each is named above the "
                                   "summary; the others are written), 2 on an error that stops the command.")
    p.add_argument("--checkpoint", type=Path, required=True,
                   help="model.pt of `wsss train-seg`, or of `wsss train-ssnet` (also writes saliency maps)")
    p.add_argument("--input", type=Path, required=True, help="an image or a folder of images")
    p.add_argument("--output", type=Path, required=True, help="folder for masks and overlays")
    p.add_argument("--device", type=_device, default="auto", help=f"{DEVICES} (default auto: CUDA when available)")
    p.add_argument("--scales", type=POSITIVE, nargs="+", default=[1.0],
                   help="image scales whose predictions are averaged (default: 1.0)")
    p.add_argument("--flip", action="store_true", help="also average the predictions of the mirrored images")
    p.add_argument("--crf", action="store_true", help="refine the masks with the dense CRF (slower)")
    p.add_argument("--workers", type=COUNT, default=1, metavar="N", help="worker processes on CPU (0 = one per core)")
    p.add_argument("--amp", choices=["auto", "on", "off", "bf16", "fp16"], default="auto",
                   help="mixed precision (auto: bf16/fp16 on CUDA, off on CPU)")
    p.add_argument("--max-side", type=_max_side, default=DEFAULT_MAX_SIDE, metavar="N",
                   help=f"shrink larger images to this longer side before inference, masks are written at "
                        f"full size; bounds memory (default {DEFAULT_MAX_SIDE}; 0 = no limit)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")

    p = sub.add_parser("report", help="write the run's self-contained HTML report (report.html)")
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

    p = sub.add_parser("make-demo-data", help="write the generated demo dataset (VOC layout)")
    p.add_argument("--out", type=Path, required=True,
                   help="dataset root to write (JPEGImages/, SegmentationClass/, ...)")
    p.add_argument("--num-train", type=_number(int, lambda v: v >= 4, "an integer >= 4"), default=96,
                   help="images in the train split (default 96)")
    p.add_argument("--num-val", type=_number(int, lambda v: v >= 2, "an integer >= 2"), default=32,
                   help="images in the val split (default 32)")
    p.add_argument("--image-size", type=_number(int, lambda v: v >= 32, "an integer >= 32"), default=128,
                   help="side of the square images in pixels (default 128)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the generator (default 0)")
    return parser


def _launched_by_torchrun() -> tuple[bool, int]:
    """(started by torchrun with more than one process, this process's rank), without importing torch."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1, int(os.environ.get("RANK", "0"))


def _context(args):
    from . import distributed
    from .engine import resolve_device
    from .steps.common import RunContext

    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"device={args.device}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if getattr(args, "workers", None) is not None:
        key = {"make-cam": "cam.workers", "make-ssnet-pseudo": "ssnet.workers"}.get(args.command, "walk.workers")
        overrides.append(f"{key}={args.workers}")
    config_path = args.config
    if config_path is None and args.run_dir is not None and (args.run_dir / "config.yaml").exists():
        config_path = args.run_dir / "config.yaml"
    if config_path is None:
        raise WsssError("no config: pass --config configs/<name>.yaml, or --run-dir of an existing run")
    config = load_config(config_path, overrides)
    distributed.init_from_env(resolve_device(config.device))  # under torchrun: join the process group
    run_dir = args.run_dir or Path("runs") / config.name
    ctx = RunContext(run_dir, config, progress=not args.no_progress)
    ctx.prepare(record_config=args.command not in READ_ONLY_COMMANDS or not (run_dir / "config.yaml").exists())
    return ctx


def _dispatch(args) -> int:
    if args.command == "make-demo-data":
        from .data.demo import generate_demo_dataset

        root = generate_demo_dataset(args.out, args.num_train, args.num_val, args.image_size, args.seed)
        print(f"demo dataset written to {root}")
        return 0

    if args.command == "predict":
        from . import distributed, predict
        from .engine import resolve_device

        distributed.init_from_env(resolve_device(args.device))
        result = predict.run(args.checkpoint, args.input, args.output, args.device, args.scales, args.flip,
                             args.crf, progress=not args.no_progress, workers=args.workers, amp=args.amp,
                             max_side=args.max_side)
        counts = [f"{result.written} image(s) written"] + [f"{n} {what}" for n, what in (
            (result.kept, "kept from an earlier run"), (len(result.skipped), "skipped (see above)")) if n]
        print(f"predict: {', '.join(counts)}; masks in {args.output}")
        return 1 if result.skipped else 0

    if args.command == "report":
        from .steps import report

        run_dir = args.run_dir or args.run_dir_option
        if run_dir is None:
            raise WsssError("report: name the run directory, e.g. `wsss report runs/demo` or `--run-dir runs/demo`")
        print(f"report: {report.run(run_dir, args.output, args.data_root, args.images, args.device)}")
        return 0

    if args.command == "eval-saliency":
        from .steps import eval_saliency

        if args.run_dir is None and args.config is None:  # the checkpoint's own run
            args.run_dir = eval_saliency.default_run_dir(args.checkpoint)
        ctx = _context(args)
        eval_saliency.run(ctx, args.data, args.checkpoint)
        ctx.record()
        return 0

    ctx = _context(args)
    from . import distributed

    if getattr(args, "restart", False) and distributed.is_main():
        seg = "seg_gt" if getattr(args, "labels", None) == "gt" else "seg"
        stage_dir = {"train-cam": ctx.run_dir / "cam", "train-aff": ctx.run_dir / "aff",
                     "train-seg": ctx.run_dir / seg,
                     "train-ssnet": ctx.run_dir / f"ssnet{getattr(args, 'stage', 1)}"}.get(args.command)
        if stage_dir is not None and stage_dir.exists():
            shutil.rmtree(stage_dir)
    distributed.barrier()
    if args.command == "run":
        from .steps import pipeline

        pipeline.run(ctx)
    elif args.command == "train-cam":
        from .steps import train_cam

        path = train_cam.run(ctx)
        print(f"classifier: {path}")
    elif args.command == "make-cam":
        from .steps import make_cam

        split = args.split or ctx.config.data.train_split
        out = make_cam.run(ctx, split, args.data_root, args.checkpoint, args.out_dir)
        print(f"CAMs: {out}")
    elif args.command == "eval-cam":
        from .steps import eval_cam

        eval_cam.run(ctx, args.split or ctx.config.data.train_split, args.data_root, args.cams)
    elif args.command == "make-aff-labels":
        from .steps import make_aff_labels

        print(f"seed labels: {make_aff_labels.run(ctx, args.split)}")
    elif args.command == "train-aff":
        from .steps import train_aff

        print(f"AffinityNet: {train_aff.run(ctx)}")
    elif args.command == "make-pseudo":
        from .steps import make_pseudo

        print(f"pseudo labels: {make_pseudo.run(ctx, args.split, args.data_root, args.checkpoint)}")
    elif args.command == "eval-pseudo":
        from .steps import eval_pseudo

        eval_pseudo.run(ctx, args.split, args.data_root)
    elif args.command == "train-seg":
        from .steps import train_seg

        print(f"segmentation model: {train_seg.run(ctx, args.labels, max_steps=args.max_steps)}")
    elif args.command == "eval-seg":
        from .steps import eval_seg

        eval_seg.run(ctx, args.split, args.data_root, args.checkpoint, args.labels)
    elif args.command == "train-ssnet":
        from .steps import train_ssnet

        print(f"SSNet stage {args.stage}: {train_ssnet.run(ctx, args.stage)}")
    elif args.command == "make-ssnet-pseudo":
        from .steps import make_ssnet_pseudo

        out = make_ssnet_pseudo.run(ctx, args.stage, args.split, args.data_root, args.checkpoint)
        print(f"pseudo labels: {out}")
    elif args.command == "eval-ssnet-pseudo":
        from .steps import eval_ssnet

        eval_ssnet.run_pseudo(ctx, args.stage, args.split, args.data_root)
    elif args.command == "eval-ssnet":
        from .steps import eval_ssnet

        eval_ssnet.run(ctx, args.stage, args.split, args.data_root, args.checkpoint, args.saliency_data,
                       saliency=not args.no_saliency)
    elif args.command == "tune":
        from .steps import tune

        tune.run(ctx, args.split, args.data_root, args.limit, args.beta, args.steps, args.bg_threshold)
    ctx.record()  # a command that read no dataset records its config once it succeeded
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
