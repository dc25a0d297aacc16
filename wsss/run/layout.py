"""Every path of a run directory, in one place: the stages write there, ``--restart`` deletes
there, the report and the evaluations read there.

    <run>/config.yaml                      resolved config of the last command that found its dataset
    <run>/run_info.json                    versions, git commit, seed, hardware, command
    <run>/summary.json                     the metrics of every stage, updated as stages finish
    <run>/log.txt                          the log of every command
    <run>/report.html                      `wsss report`
    <run>/eval/<kind>_<name>.json          metrics: cam, saliency, pseudo, seg, seg_gt, ssnet<k>, ssnet<k>_pseudo, tune
    <run>/cam/                             CAM classifier: model.pt, checkpoint.pt, train_log.jsonl
    <run>/cams/<name>/<id>.npz             CAMs (float16) of a split
    <run>/saliency/<name>/<id>.png         saliency maps (0-255) of a split, the cue of PSA / IRN
    <run>/<m>_labels/<split>/<id>.png      a seed-and-walk method <m> (psa, irn): its confident seeds
                                           (0 bg, class, 255 unknown)
    <run>/<m>/                             its network: AffinityNet (psa), the class-boundary network (irn)
    <run>/<m>_pseudo/<name>/rw|rw_crf/<id>.png   its pseudo labels after the random walk (+ CRF)
    <run>/psa_pseudo/<name>/scores/<id>.npz      PSA: the walk's class scores (psa.save_scores)
    <run>/seg/, <run>/seg_gt/              the segmentation network on pseudo labels / ground truth
    <run>/ssnet1/, <run>/ssnet2/           SSNet, stage 1 and 2
    <run>/ssnet/saliency_split.json        SSNet: the saliency ids trained on and held out
    <run>/ssnet_pseudo/stage<k>/<name>/seg|crf/<id>.png   SSNet: mined pseudo labels
    <run>/predictions/                     where `wsss predict` is pointed by the closing lines

Each method has its own folders, so PSA's and IRN's results sit side by side in one run
directory; the run's ``pipeline:`` says which of them trains the segmentation network.
``<name>`` is a split's output name: the split itself, or ``<dataset folder>-<split>`` for a
dataset other than the config's (``RunContext.output_name``). Every per-image folder also holds
``settings.json``, the settings its files were made with.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("wsss")

FINAL_MODEL = "model.pt"
"""The final weights of a training stage (what later stages, predict and the report read)."""

TRAINING_CHECKPOINT = "checkpoint.pt"
"""What a stopped training resumes from (weights, optimiser, step, RNG)."""


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run directory ``root`` (nothing is created here)."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    # ----------------------------------------------------------------- run-wide files
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def run_info(self) -> Path:
        return self.root / "run_info.json"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def log(self) -> Path:
        return self.root / "log.txt"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    def eval_file(self, kind: str, name: str) -> Path:
        """``eval/<kind>_<name>.json``: the metrics of one stage (``kind``) on one split."""
        return self.eval_dir / f"{kind}_{name}.json"

    # ------------------------------------------------------------------------- CAMs
    @property
    def cam_dir(self) -> Path:
        return self.root / "cam"

    @property
    def cam_model(self) -> Path:
        return self.cam_dir / FINAL_MODEL

    def cams(self, name: str) -> Path:
        return self.root / "cams" / name

    def saliency(self, name: str) -> Path:
        """Saliency maps of a split (make-saliency): ``<id>.png``, 8-bit grey, S x 255."""
        return self.root / "saliency" / name

    # ------------------------------------------- a seed-and-walk method's folders (PSA, IRN)
    def seed_labels(self, method: str, split: str) -> Path:
        """The confident seeds of a split that ``method``'s network learns from."""
        return self.root / f"{method}_labels" / split

    def network_dir(self, method: str) -> Path:
        """``method``'s network: AffinityNet (psa), the class-boundary network (irn)."""
        return self.root / method

    def network_model(self, method: str) -> Path:
        return self.network_dir(method) / FINAL_MODEL

    def pseudo(self, method: str, name: str) -> Path:
        """``method``'s random-walk pseudo labels of a split: ``rw/``, ``rw_crf/`` (and PSA's
        ``scores/``) below it."""
        return self.root / f"{method}_pseudo" / name

    def pseudo_labels(self, method: str, name: str, crf: bool) -> Path:
        """The pseudo labels that train the segmentation network: after the CRF when it ran."""
        return self.pseudo(method, name) / ("rw_crf" if crf else "rw")

    # ----------------------------------------------------------------- segmentation
    def seg_dir(self, labels: str = "pseudo") -> Path:
        """``seg/`` (trained on pseudo labels) or ``seg_gt/`` (on the ground truth)."""
        return self.root / ("seg_gt" if labels == "gt" else "seg")

    def seg_model(self, labels: str = "pseudo") -> Path:
        return self.seg_dir(labels) / FINAL_MODEL

    # ------------------------------------------------------------------------ SSNet
    def ssnet_dir(self, stage: int) -> Path:
        return self.root / f"ssnet{stage}"

    def ssnet_model(self, stage: int) -> Path:
        return self.ssnet_dir(stage) / FINAL_MODEL

    @property
    def saliency_split(self) -> Path:
        return self.root / "ssnet" / "saliency_split.json"

    def ssnet_pseudo(self, stage: int, name: str) -> Path:
        """Pseudo labels mined with the stage-``stage`` SSNet: ``seg/`` and ``crf/`` below it."""
        return self.root / "ssnet_pseudo" / f"stage{stage}" / name

    def ssnet_pseudo_labels(self, stage: int, name: str, crf: bool) -> Path:
        """The labels stage 2 trains on: after the CRF when it ran."""
        return self.ssnet_pseudo(stage, name) / ("crf" if crf else "seg")

    # ------------------------------------------------------------------ the report
    def split_names(self) -> list[str]:
        """The splits that have CAMs or pseudo labels in this run (sorted, may repeat)."""
        found: list[str] = []
        for folder in [self.root / "cams", *sorted(self.root.glob("*_pseudo"))]:
            if folder.is_dir():
                found += sorted(p.name for p in folder.iterdir() if p.is_dir())
        return found


LEGACY_FOLDERS = {"aff_labels": "psa_labels", "aff": "psa"}
"""Folders of run directories made before each method had its own: old name -> new name. Their
``pseudo/<name>/`` went to ``psa_pseudo/`` or ``irn_pseudo/``, as their settings say."""


def legacy_moves(root: Path) -> list[tuple[Path, Path]]:
    """(old, new) folder renames that bring a run directory made before per-method folders to
    today's layout; empty for a current one. Only wsss's own folders move, never onto a
    folder that exists."""
    root = Path(root)
    moves = [(root / old, root / new) for old, new in LEGACY_FOLDERS.items()]
    pseudo = root / "pseudo"
    if pseudo.is_dir():
        for folder in sorted(p for p in pseudo.iterdir() if p.is_dir()):
            try:
                settings = json.loads((folder / "settings.json").read_text())
            except (OSError, ValueError):
                continue
            method = "irn" if settings.get("method") == "irn" else "psa" if "affinity_net" in settings else None
            if method is not None:
                moves.append((folder, root / f"{method}_pseudo" / folder.name))
    return [(old, new) for old, new in moves if old.is_dir() and not new.exists()]


def upgrade_legacy_layout(root: Path) -> list[tuple[Path, Path]]:
    """Rename the folders of a run directory made before per-method folders (:func:`legacy_moves`);
    returns what moved. Each move is one rename: a command killed half-way leaves a run
    directory that the next command upgrades the rest of."""
    moves = legacy_moves(root)
    for old, new in moves:
        new.parent.mkdir(parents=True, exist_ok=True)
        old.rename(new)
    legacy_pseudo = Path(root) / "pseudo"
    if moves and legacy_pseudo.is_dir() and not any(legacy_pseudo.iterdir()):
        legacy_pseudo.rmdir()
    if moves:
        log.info("%s: made by an earlier wsss; folders renamed to today's layout: %s", root,
                 ", ".join(f"{old.relative_to(root)} -> {new.relative_to(root)}" for old, new in moves))
    return moves
