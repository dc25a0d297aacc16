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
    <run>/aff_labels/<split>/<id>.png      PSA: confident seeds (0 bg, class, 255 unknown)
    <run>/aff/                             PSA: AffinityNet
    <run>/irn_labels/<split>/<id>.png      IRN: confident seeds (0 bg, class, 255 unknown)
    <run>/irn/                             IRN: the class-boundary network
    <run>/pseudo/<name>/rw|rw_crf/<id>.png the run's pseudo labels after the random walk (+ CRF),
                                           PSA's or IRN's (pipeline:)
    <run>/pseudo/<name>/scores/<id>.npz    PSA: the walk's class scores (walk.save_scores)
    <run>/seg/, <run>/seg_gt/              the segmentation network on pseudo labels / ground truth
    <run>/ssnet1/, <run>/ssnet2/           SSNet, stage 1 and 2
    <run>/ssnet/saliency_split.json        SSNet: the saliency ids trained on and held out
    <run>/ssnet_pseudo/stage<k>/<name>/seg|crf/<id>.png   SSNet: mined pseudo labels
    <run>/predictions/                     where `wsss predict` is pointed by the closing lines

``<name>`` is a split's output name: the split itself, or ``<dataset folder>-<split>`` for a
dataset other than the config's (``RunContext.output_name``). Every per-image folder also holds
``settings.json``, the settings its files were made with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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

    # -------------------------------------------------------------------------- PSA
    def seed_labels(self, split: str) -> Path:
        return self.root / "aff_labels" / split

    @property
    def affinity_dir(self) -> Path:
        return self.root / "aff"

    @property
    def affinity_model(self) -> Path:
        return self.affinity_dir / FINAL_MODEL

    def pseudo(self, name: str) -> Path:
        """The random walk's pseudo labels of a split (PSA's or IRN's): ``rw/``, ``rw_crf/`` and
        ``scores/`` below it."""
        return self.root / "pseudo" / name

    def pseudo_labels(self, name: str, crf: bool) -> Path:
        """The pseudo labels that train the segmentation network: after the CRF when it ran."""
        return self.pseudo(name) / ("rw_crf" if crf else "rw")

    # -------------------------------------------------------------------------- IRN
    def irn_seed_labels(self, split: str) -> Path:
        return self.root / "irn_labels" / split

    @property
    def irn_dir(self) -> Path:
        return self.root / "irn"

    @property
    def irn_model(self) -> Path:
        return self.irn_dir / FINAL_MODEL

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
        """The splits that have CAMs or PSA pseudo labels in this run (sorted, may repeat)."""
        found: list[str] = []
        for folder in (self.root / "cams", self.root / "pseudo"):
            if folder.is_dir():
                found += sorted(p.name for p in folder.iterdir() if p.is_dir())
        return found
