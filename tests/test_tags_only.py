"""Tags only: no mask is read to choose a setting, and a dataset without masks runs end to end."""

import json
import shutil

import numpy as np
import yaml
from tiny_run import write_config

from wsss.cam.seeds import alpha_for_threshold, auto_seed_thresholds
from wsss.cam.threshold import otsu_threshold
from wsss.cli import main
from wsss.config import load_config


def test_otsu_splits_two_modes_between_them():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0.15, 0.05, 7000), rng.normal(0.8, 0.05, 3000)]).clip(0, 1)
    assert 0.25 < otsu_threshold(values) < 0.65  # between the modes' bulk (mean +- 2 sd)
    shifted = np.concatenate([rng.normal(0.05, 0.02, 5000), rng.normal(0.45, 0.05, 5000)]).clip(0, 1)
    assert 0.09 < otsu_threshold(shifted) < 0.35
    assert otsu_threshold(np.full(100, 0.2)) <= 0.21  # one mode: no split above it


def test_a_run_on_a_dataset_without_masks(tiny_dataset, tmp_path, caplog):
    """`wsss run` on the tiny set with no SegmentationClass folder at all: every stage that
    trains or writes labels runs, each scoring stage says in one line that it is skipped, and the
    background threshold comes from the CAMs and the classifier alone."""
    import logging

    root = tmp_path / "tags_only"
    shutil.copytree(tiny_dataset, root, ignore=shutil.ignore_patterns("SegmentationClass"))
    config = write_config(tmp_path, root)
    tree = yaml.safe_load(config.read_text())
    tree["cam"]["eval_splits"] = ["train", "val"]
    tree["walk"]["eval_splits"] = ["train", "val"]
    tree["seg"] = {"epochs": 1, "batch_size": 8, "crop_size": 64, "resize_long": [56, 72], "eval_scales": [1.0]}
    config.write_text(yaml.safe_dump(tree))
    run_dir = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="wsss"):
        assert main(["run", "--config", str(config), "--run-dir", str(run_dir), "--no-progress"]) == 0
    skipped = [r.getMessage() for r in caplog.records if "nothing to score against; skipped" in r.getMessage()]
    assert {m.split(":")[0] for m in skipped} == {"eval-cam/train", "eval-cam/val", "eval-pseudo/train",
                                                   "eval-pseudo/val", "eval-seg/val"}
    record = json.loads((run_dir / "eval" / "cam_threshold_train.json").read_text())
    assert record["method"] == "evidence" and record["masks"] == "none read" and 0 < record["threshold"] < 1
    seeds = json.loads((run_dir / "aff_labels" / "train" / "settings.json").read_text())
    aff = load_config(config).aff
    expected = [alpha_for_threshold(t) for t in auto_seed_thresholds(record["threshold"], aff.fg_margin, aff.bg_factor)]
    assert [round(a, 6) for a in expected] in [[round(v, 6) for v in pair] for pair in _pairs(seeds)]
    assert (run_dir / "seg" / "model.pt").exists() and len(list((run_dir / "pseudo" / "val" / "rw_crf").glob("*.png"))) == 8
    assert not (run_dir / "eval" / "cam_train.json").exists()


def _pairs(tree):
    """Every list of two numbers in a settings record (the seeds' alphas)."""
    if isinstance(tree, dict):
        for value in tree.values():
            yield from _pairs(value)
    elif isinstance(tree, list) and len(tree) == 2 and all(isinstance(v, (int, float)) for v in tree):
        yield tree
