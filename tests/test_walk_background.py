"""The walk's background threshold without masks (``walk_bg_factor: area``): the factor of t* at
which the walk's labels keep the CAMs' foreground share."""

from __future__ import annotations

import json
import shutil

import numpy as np

from wsss.cli import main
from wsss.config import load_config
from wsss.walk.background import FACTORS, area_matched_factor, foreground_share
from wsss.walk.seeds import alpha_for_threshold


def test_foreground_share_counts_every_pixel_that_is_not_background():
    a = np.array([[0, 1], [2, 0]], dtype=np.uint8)
    b = np.zeros((2, 3), dtype=np.uint8)
    b[0, 0] = 5
    assert foreground_share([a, b]) == 3 / 10
    assert foreground_share([]) == 0.0


def test_area_matched_factor_is_the_closest_share_and_the_larger_on_a_tie():
    shares = {0.5: 0.40, 0.7: 0.31, 0.9: 0.22, 1.0: 0.18}
    assert area_matched_factor(0.30, shares) == 0.7
    assert area_matched_factor(0.5, {0.8: 0.75, 0.9: 0.25}) == 0.9  # 0.25 both ways: the larger factor


def test_area_factor_of_psa_walk_is_found_recorded_and_reused(pseudo_run, tmp_path, caplog):
    config, run_dir = pseudo_run
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    common = ["--config", str(config), "--run-dir", str(run), "--no-progress", "--split", "train",
              "--set", "psa.walk_alpha=null", "--set", "psa.walk_bg_factor=area"]
    assert main(["make-psa-pseudo", *common]) == 0
    record = json.loads((run / "eval" / "walk_threshold_psa_train.json").read_text())
    assert record["masks"] == "none read" and record["method"] == "area"
    shares = {float(f): s for f, s in record["walk_shares"].items()}
    assert set(shares) == set(FACTORS)
    # the recorded choice is the factor whose walked labels come closest to the CAMs' share
    best = min(abs(s - record["cam_share"]) for s in shares.values())
    assert abs(shares[record["factor"]] - record["cam_share"]) == best
    # a walk that flattens the CAMs marks less as foreground at a higher threshold
    ordered = [shares[f] for f in sorted(shares)]
    assert ordered[0] >= ordered[-1]
    settings = json.loads((run / "psa_pseudo" / "train" / "settings.json").read_text())
    t_star = record["t_star"]
    assert settings["alpha"] == alpha_for_threshold(min(0.95, t_star * record["factor"]))
    assert load_config(config).cam.bg_threshold == "auto"  # t* itself without masks as well

    caplog.clear()
    assert main(["make-psa-pseudo", *common]) == 0  # the record holds: nothing is measured again
    assert "keeps the CAMs' foreground share" not in caplog.text
