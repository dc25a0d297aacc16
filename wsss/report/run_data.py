"""Reading what a run directory holds, tolerantly: any stage may be missing or newer than this code.

A run directory (its paths: ``wsss.run.layout.RunLayout``) has ``config.yaml``, ``run_info.json``,
``summary.json`` (metrics per ``<stage>/<split>`` key, ``timings_s``), ``eval/*.json`` (per-class
IoU, threshold sweeps, per-variant scores), ``<stage>/train_log.jsonl`` for every trained model,
``cams/<split>/`` and ``pseudo/<split>/{rw,rw_crf}/``. The metric table is built from
``summary.json`` alone, so a stage added later (SSNet, saliency) shows up without code changes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from ..config import upgrade_legacy_keys
from ..data.voc import VocDataset
from ..errors import WsssError
from ..io import read_json
from ..methods import METHODS, RENAMED_COMMANDS, Method
from ..run.layout import RunLayout, upgrade_legacy_layout

# summary.json keys that hold no metrics
NON_METRIC_KEYS = {"timings_s"}

# Titles and order of the stages this code knows; others follow in summary order, titled by key.
STAGE_TITLES = {
    "cam": "CAM (best background threshold)",
    "cam_threshold": "Background threshold t* the auto settings use (found without masks)",
    "saliency_threshold": "Saliency threshold s* the saliency cue uses (found without masks)",
    "saliency_maps": "Saliency maps as objects vs background (SSNet's, the seeds' and walk's cue)",
    "rw": "CAM + random walk (AffinityNet, or IRN's boundaries)",
    "rw_crf": "CAM + random walk + dense CRF",
    "seg": "Segmentation network (pseudo labels)",
    "seg_gt": "Segmentation network (ground truth, upper bound)",
}

# How each metric key reads in a table cell: (label, format); unknown keys print as key=value.
METRIC_FORMATS = {
    "miou": ("mIoU", "{:.2f}"),
    "best_threshold": ("bg threshold", "{:.2f}"),
    "object_iou": ("object IoU", "{:.2f}"),
    "threshold": ("threshold", "{:.2f}"),
    "max_f": ("max F", "{:.3f}"),
    "mae": ("MAE", "{:.3f}"),
    "s_measure": ("S", "{:.3f}"),
    "mean_e": ("mean E", "{:.3f}"),
    "saliency_threshold": ("at threshold", "{:.0f}/255"),
    "num_images": ("images", "{:.0f}"),
    "pixel_accuracy": ("pixel acc.", "{:.2f}"),
}

# The column of saliency scores (SSNet): measured on held-out saliency images and on saliency
# benchmarks (ECSSD, ...), not on a split.
SALIENCY_COLUMN = "saliency"

NOT_RUN = "not run"
NO_GROUND_TRUTH = "no ground truth"


@dataclass
class MetricRow:
    """One stage of the metric table: ``cells`` maps a split to its metrics or to a mark."""

    stage: str
    title: str
    cells: dict[str, dict | str] = field(default_factory=dict)


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSON-lines log; a line cut short by a kill is skipped."""
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def metric_entries(summary: dict) -> dict[str, dict]:
    """Flatten summary.json into {"<stage>/<split>": {metric: value}}.

    An entry is any mapping with at least one number; nested mappings (e.g. ``{"ssnet":
    {"stage2/val": {...}}}``) are joined into the key with "/".
    """
    entries: dict[str, dict] = {}

    def visit(key: str, value) -> None:
        if not isinstance(value, dict):
            return
        metrics = {k: v for k, v in value.items() if not isinstance(v, dict)}
        if any(is_number(v) for v in metrics.values()):
            entries[key] = metrics
        for child_key, child in value.items():
            if isinstance(child, dict):
                visit(f"{key}/{child_key}", child)

    for key, value in summary.items():
        if key not in NON_METRIC_KEYS and not key.startswith("_"):
            visit(key, value)
    return entries


def split_key(key: str) -> tuple[str, str]:
    """"rw_crf/train" -> ("rw_crf", "train"); a key without a split -> (key, "").

    SSNet's saliency scores, ``ssnet2/saliency/<variant>`` (optionally with a dataset name before
    the variant), are a stage of their own per variant, in the saliency column:
    ("ssnet2/saliency: multi-scale+flip", SALIENCY_COLUMN).
    """
    stage, _, split = key.rpartition("/")
    if "/saliency" in stage:
        return f"{stage}: {split}", SALIENCY_COLUMN
    return (stage, split) if stage else (key, "")


def saliency_metrics(metrics: dict) -> dict:
    """A saliency entry's ``best_threshold`` is the 0-255 binarisation level of max F, not a
    background threshold: renamed so the table says so."""
    return {("saliency_threshold" if k == "best_threshold" else k): v for k, v in metrics.items()}


def format_metrics(metrics: dict) -> list[tuple[str, str]]:
    """(label, text) pairs for a table cell, known metrics first in a fixed order."""
    ordered = [k for k in METRIC_FORMATS if k in metrics] + [k for k in metrics if k not in METRIC_FORMATS]
    out = []
    for key in ordered:
        value = metrics[key]
        if key in METRIC_FORMATS and is_number(value):
            label, fmt = METRIC_FORMATS[key]
            out.append((label, fmt.format(value)))
        elif is_number(value):
            out.append((key, f"{value:.4g}"))
        elif isinstance(value, str) and value:
            out.append((key, value))
    return out


def stage_title(stage: str) -> str:
    if stage in STAGE_TITLES:
        return STAGE_TITLES[stage]
    base, _, variant = stage.partition(": ")
    if variant and base in STAGE_TITLES:
        return f"{STAGE_TITLES[base]}: {variant}"
    return stage.replace("_", " ").replace("/", " / ")


class RunData:
    """Everything the report shows, read from one run directory (nothing is written there)."""

    def __init__(self, run_dir: Path, data_root: Optional[Path] = None):
        self.run_dir = Path(run_dir)
        self.layout = RunLayout(self.run_dir)
        if not self.run_dir.is_dir():
            raise WsssError(f"{self.run_dir}: run directory not found; pass the --run-dir of a `wsss run`")
        upgrade_legacy_layout(self.run_dir)
        config_path = self.layout.config
        self.config: dict[str, Any] = {}
        if config_path.exists():
            try:
                self.config = yaml.safe_load(config_path.read_text()) or {}
                # a run of an earlier version reads in today's keys
                self.config = upgrade_legacy_keys(self.config, warn=False) if isinstance(self.config, dict) else {}
            except yaml.YAMLError as exc:
                raise WsssError(f"{config_path}: not valid YAML ({exc})") from None
        self.summary: dict = read_json(self.layout.summary, {})
        if not self.config and not self.summary:
            raise WsssError(f"{self.run_dir}: neither config.yaml nor summary.json here; is this a run directory?")
        self.run_info: dict = read_json(self.layout.run_info, {})
        self.evals: dict[str, dict] = {p.stem: read_json(p, {}) for p in sorted(self.layout.eval_dir.glob("*.json"))}
        self.train_logs: dict[str, list[dict]] = {
            p.parent.name: read_jsonl(p) for p in sorted(self.run_dir.glob("*/train_log.jsonl"))
        }
        self.data_root = self._find_data_root(data_root)
        self._datasets: dict[str, Optional[VocDataset]] = {}

    # --- config and dataset -------------------------------------------------------------------------
    def section(self, name: str) -> dict:
        value = self.config.get(name)
        return value if isinstance(value, dict) else {}

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.run_dir.name)

    def _find_data_root(self, override: Optional[Path]) -> Optional[Path]:
        """The dataset root: --data-root, else data.root as written, relative to the working directory,
        the project the run directory lives in (``<project>/runs/<name>``), or the run directory."""
        if override is not None:
            if not Path(override).is_dir():
                raise WsssError(f"{override}: --data-root not found; point it at the run's VOC-layout dataset")
            return Path(override)
        root = self.section("data").get("root")
        if not root:
            return None
        root = Path(root)
        candidates = [root] if root.is_absolute() else [root, self.run_dir.parent.parent / root, self.run_dir / root]
        for candidate in candidates:
            if (candidate / "ImageSets").is_dir():
                return candidate.resolve()
        return None

    def dataset(self, split: str) -> Optional[VocDataset]:
        """The split's dataset, None when the data or the split cannot be found."""
        if split not in self._datasets:
            self._datasets[split] = None
            if self.data_root is not None:
                try:
                    self._datasets[split] = VocDataset(self.data_root, split, labels=self.section("data").get("labels", "auto"))
                except WsssError:
                    pass
        return self._datasets[split]

    def has_ground_truth(self, split: str) -> Optional[bool]:
        """True/False when the split's masks were checked, None when the dataset is not reachable."""
        voc = self.dataset(split)
        return None if voc is None else voc.has_masks

    def splits(self) -> list[str]:
        """The splits this run touched: config's train/val first, then any other with outputs or metrics."""
        data = self.section("data")
        found = [data.get("train_split") or "train"]
        if data.get("val_split"):
            found.append(data["val_split"])
        for key in metric_entries(self.summary):
            split = split_key(key)[1]
            if split != SALIENCY_COLUMN:
                found.append(split)
        found += self.layout.split_names()
        return list(dict.fromkeys(s for s in found if s))

    # --- metrics ------------------------------------------------------------------------------------
    @property
    def pipeline(self) -> str:
        """The config's ``pipeline``: its method (configs older than the key are PSA's)."""
        return str(self.config.get("pipeline") or "psa")

    @property
    def method(self) -> Method:
        return METHODS.get(self.pipeline, METHODS["psa"])

    def expected_stages(self) -> list[tuple[str, str]]:
        """(stage, split) pairs the config asks its pipeline to score."""
        data, cam, walk = self.section("data"), self.section("cam"), self.section(self.method.name)
        if not self.method.walk:
            train, val = data.get("train_split") or "train", data.get("val_split")
            expected = [("ssnet1/pseudo_seg", train), ("ssnet2/pseudo_seg", train)]
            return expected + ([("ssnet1/seg", val), ("ssnet2/seg", val)] if val else [])
        expected = [("cam", s) for s in cam.get("eval_splits", [])]
        for split in walk.get("eval_splits", []):
            expected.append(("rw", split))
            if walk.get("crf", True):
                expected.append(("rw_crf", split))
        if data.get("val_split") and "seg" in self.config:
            expected.append(("seg", data["val_split"]))
        return expected

    def metric_rows(self) -> tuple[list[str], list[MetricRow]]:
        """(split columns, rows) of the metric table.

        Rows come from summary.json; a stage whose eval file scores several variants (the
        segmentation network single/multi-scale, +/- CRF) gets one row per variant. A stage the
        config expects but summary.json lacks is marked "not run", or "no ground truth" when its
        split has no masks to score against.
        """
        rows: dict[str, MetricRow] = {}
        for key, metrics in metric_entries(self.summary).items():
            stage, split = split_key(key)
            variants = self.eval_variants(stage, split)
            if variants:
                for variant, miou in variants.items():
                    name = f"{stage}: {variant}"
                    rows.setdefault(name, MetricRow(name, stage_title(name))).cells[split] = {"miou": miou}
            else:
                if split == SALIENCY_COLUMN:
                    metrics = saliency_metrics(metrics)
                rows.setdefault(stage, MetricRow(stage, stage_title(stage))).cells[split] = metrics
        for stage, split in self.expected_stages():
            family = [r for r in rows.values() if r.stage == stage or r.stage.startswith(f"{stage}: ")]
            if any(split in r.cells for r in family):
                continue
            for row in family or [rows.setdefault(stage, MetricRow(stage, stage_title(stage)))]:
                row.cells[split] = NO_GROUND_TRUTH if self.has_ground_truth(split) is False else NOT_RUN
        # outputs made on a split without masks: say why they have no score
        for split in self.splits():
            if self.has_ground_truth(split) is False:
                method = self.method.name
                for stage, folder in (("cam", self.layout.cams(split)),
                                      ("rw", self.layout.pseudo_labels(method, split, crf=False)),
                                      ("rw_crf", self.layout.pseudo_labels(method, split, crf=True))):
                    if folder.is_dir():
                        rows.setdefault(stage, MetricRow(stage, stage_title(stage))).cells.setdefault(split, NO_GROUND_TRUTH)
        order = list(STAGE_TITLES)
        ranked = sorted(rows.values(), key=lambda r: (order.index(r.stage.split(": ")[0]) if r.stage.split(": ")[0] in order
                                                      else len(order), list(rows).index(r.stage)))
        columns = [s for s in self.splits() if any(s in r.cells for r in ranked)]
        for extra in (SALIENCY_COLUMN, ""):
            if any(extra in r.cells for r in ranked):
                columns.append(extra)
        return columns, ranked

    def eval_variants(self, stage: str, split: str) -> dict[str, float]:
        """{variant: mIoU} when ``eval/<stage>_<split>.json`` scores several variants, else {}."""
        result = self.evals.get(f"{stage.replace('/', '_')}_{split}", {})
        miou = result.get("miou") if isinstance(result, dict) else None
        if isinstance(miou, dict) and all(is_number(v) for v in miou.values()):
            return dict(miou)
        return {}

    def per_class_series(self) -> dict[str, tuple[list[str], dict[str, list[Optional[float]]]]]:
        """{split: (class names, {series: IoU per class})} from every eval file with per-class IoU."""
        charts: dict[str, tuple[list[str], dict[str, list[Optional[float]]]]] = {}
        for stem, result in self.evals.items():
            per_class = result.get("per_class_iou") if isinstance(result, dict) else None
            if not isinstance(per_class, dict) or not per_class:
                continue
            split = str(result.get("split") or stem.rpartition("_")[2])
            kind = stem[: -len(split) - 1] if stem.endswith(f"_{split}") else stem
            if all(isinstance(v, dict) for v in per_class.values()):
                columns = {(name if kind in ("pseudo", "cam") else f"{kind} {name}"): v for name, v in per_class.items()}
            elif kind == "cam" and "best_threshold" in result:
                columns = {f"CAM@{result['best_threshold']:.2f}": per_class}
            else:
                columns = {kind: per_class}
            classes, series = charts.setdefault(split, ([], {}))
            for name, values in columns.items():
                for cls in values:
                    if cls not in classes:
                        classes.append(cls)
                series.setdefault(name, values)
        return {split: (classes, {name: [v.get(c) if is_number(v.get(c)) else None for c in classes]
                                  for name, v in series.items()})
                for split, (classes, series) in charts.items()}

    def threshold_sweeps(self) -> dict[str, tuple[list[float], list[float], float]]:
        """{split: (thresholds, mIoU per threshold, best threshold)} from eval/cam_<split>.json."""
        sweeps = {}
        for stem, result in self.evals.items():
            sweep = result.get("sweep") if isinstance(result, dict) else None
            if isinstance(sweep, list) and sweep:
                points = [(p["threshold"], p["miou"]) for p in sweep
                          if is_number(p.get("threshold")) and is_number(p.get("miou"))]
                if points:
                    split = str(result.get("split") or stem.rpartition("_")[2])
                    sweeps[split] = ([p[0] for p in points], [p[1] for p in points], result.get("best_threshold"))
        return sweeps

    # --- run facts ----------------------------------------------------------------------------------
    def info(self, *keys: str):
        """The first of ``keys`` found in run_info.json, at its top level or one level down
        (``git_commit`` or ``versions.git_commit`` or ``git.commit``)."""
        for key in keys:
            if key in self.run_info and self.run_info[key] not in (None, ""):
                return self.run_info[key]
            head, _, tail = key.partition(".")
            node = self.run_info.get(head)
            if tail and isinstance(node, dict) and node.get(tail) not in (None, ""):
                return node[tail]
        for node in self.run_info.values():
            if isinstance(node, dict):
                for key in keys:
                    if node.get(key) not in (None, ""):
                        return node[key]
        return None

    def timings(self) -> dict[str, float]:
        """Wall time per stage; a stage of an earlier version under today's command name."""
        timings = self.summary.get("timings_s", {})
        if not isinstance(timings, dict):
            return {}
        renamed = lambda key: "/".join([RENAMED_COMMANDS.get(key.split("/")[0], key.split("/")[0]), *key.split("/")[1:]])  # noqa: E731
        return {renamed(k): float(v) for k, v in timings.items() if is_number(v)}
