"""`wsss run --plan`: every stage, complete or to run and why, before anything is done; nothing
is written."""

import logging
import shutil

import yaml
from tiny_run import TINY_SEG

from wsss.cli import main


def _tree(folder):
    """Every file under ``folder`` with its bytes (a plan must leave them all as they were)."""
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _plan_lines(capsys, *args):
    assert main(["run", "--plan", "--no-progress", *args]) == 0
    out = capsys.readouterr().out
    # "  <state, 9 wide> <stage> <reason>"
    return out, {line[12:].split()[0]: line for line in out.splitlines()[1:] if line.startswith("  ")}


def test_plan_of_a_fresh_a_finished_and_a_changed_run(pseudo_run, tmp_path, capsys, caplog):
    config, source = pseudo_run
    settings = yaml.safe_load(config.read_text())
    settings["seg"] = TINY_SEG
    settings["psa"]["eval_splits"] = ["train"]
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(settings))

    # fresh: every stage runs, and the run directory is not even made
    fresh = tmp_path / "fresh"
    out, stages = _plan_lines(capsys, "--config", str(path), "--run-dir", str(fresh))
    assert "new run" in out and not fresh.exists()
    assert "not trained yet" in stages["train-cam"] and stages["train-cam"].split()[0] == "will"
    assert "reads what train-cam makes anew" in stages["make-cam/train"]
    assert "reads what make-psa-pseudo/train makes anew" in stages["train-seg"]

    # finished: a copy of a run gone through every stage
    run_dir = tmp_path / "run"
    shutil.copytree(source, run_dir)
    common = ["--config", str(path), "--run-dir", str(run_dir)]
    with caplog.at_level(logging.INFO, logger="wsss"):
        assert main(["run", "--no-progress", *common]) == 0
    capsys.readouterr()
    # the run told where it stood: its stages, the ones left to run, the time they would take
    assert "wsss run: " in caplog.text and "to run, about" in caplog.text
    assert "stage 6/" in caplog.text and "so far; about" in caplog.text
    before = _tree(run_dir)
    out, stages = _plan_lines(capsys, *common)
    assert all(line.split()[0] in ("complete", "scores") for line in stages.values()), out
    assert {"train-cam", "make-psa-labels", "train-psa", "make-psa-pseudo/train", "train-seg"} <= set(stages)
    assert "nothing to train or make" in out

    # one changed setting: named, and only what depends on it runs
    out, stages = _plan_lines(capsys, *common, "--set", "psa.beta=4")
    assert "settings changed since the run's config.yaml: psa.beta (8.0 -> 4.0)" in out
    assert stages["train-psa"].split()[0] == "complete" and stages["make-cam/train"].split()[0] == "complete"
    assert "made with other settings, discarded: beta (8.0 -> 4.0)" in stages["make-psa-pseudo/train"]
    assert "reads what make-psa-pseudo/train makes anew" in stages["train-seg"]
    # the segmentation network's own backbone: train-seg alone
    out, stages = _plan_lines(capsys, *common, "--set", "seg.backbone.name=efficientnet_lite1")
    assert "seg.backbone (None -> " in out
    assert "was trained with other settings" in stages["train-seg"]
    assert [n for n, line in stages.items() if line.split()[0] == "will"] == ["train-seg"], out
    # a setting of the classifier: everything after it
    out, stages = _plan_lines(capsys, *common, "--set", "cam.lr=0.02")
    assert "was trained with other settings" in stages["train-cam"]
    assert all(line.split()[0] in ("will", "scores") for line in stages.values()), out
    assert _tree(run_dir) == before  # the plans wrote nothing


def test_the_run_clock_corrects_its_estimate_as_stages_finish(caplog):
    """The estimate is the predicted seconds of the stages left, times real over predicted of
    the stages that ran; complete stages (predicted 0) cost nothing."""
    import logging

    from wsss.run.clock import RunClock, passes

    clock = RunClock({"train-cam": 100.0, "make-cam/train": 50.0, "train-seg": 0.0})
    assert clock.left() == 150.0 and "3 stages, 2 to run" in clock.opening()
    with caplog.at_level(logging.INFO, logger="wsss"):
        clock.stage_started("train-cam")
    assert "stage 1/3: train-cam" in caplog.text and "about 2 min left" in caplog.text
    clock.stage_finished("train-cam", 200.0)  # twice as slow as predicted
    assert clock.factor() == 2.0 and clock.left() == 100.0
    clock.stage_finished("make-cam/train", 0.5)  # a stage that found its work done does not count
    assert clock.factor() == 2.0 and clock.left() == 0.0
    assert passes([0.5, 1.0, 2.0], True) == 2 * (0.25 + 1 + 4)
