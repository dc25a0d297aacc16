"""A tiny run of the CAM stages on generated data, through the CLI, as a user would."""

import json
import os
import shutil

import numpy as np
import torch
import yaml
from quality import assert_beats
from tiny_run import untrained_classifier, write_config

from wsss.cli import main
from wsss.data.voc import VocDataset


def test_train_make_eval_cam(cam_run, tiny_dataset, capsys):
    tmp_path, config, run_dir = cam_run
    common = ["--config", str(config), "--run-dir", str(run_dir), "--no-progress"]
    model = run_dir / "cam" / "model.pt"
    assert model.exists() and (run_dir / "config.yaml").exists() and (run_dir / "run_info.json").exists()
    log = [json.loads(line) for line in (run_dir / "cam" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 4 * 5  # 32 images / batch 8 * 5 epochs
    first, last = (np.mean([r["loss"] for r in log[i: i + 4]]) for i in (0, len(log) - 4))
    assert_beats("CAM classifier: last epoch's loss below the first's (1 - last / first)", 1 - last / first, 0, 0.1)

    cams = sorted((run_dir / "cams" / "train").glob("*.npz"))
    assert len(cams) == 32
    data = np.load(cams[0])
    assert data["cams"].dtype == np.float16 and data["cams"].shape[1:] == (80, 80)

    result = json.loads((run_dir / "eval" / "cam_train.json").read_text())
    # CAMs must clearly beat predicting background everywhere, which an untrained classifier's
    # CAMs at their best threshold do not
    from wsss.metrics import confusion_matrix, mean_iou

    voc = VocDataset(tiny_dataset, "train")
    conf = sum(confusion_matrix(np.zeros_like(m), m, voc.num_classes) for m in (voc.load_mask(i) for i in range(len(voc))))
    baseline = 100 * mean_iou(conf)
    untrained_run = tmp_path / "untrained_run"
    untrained = ["--config", str(config), "--run-dir", str(untrained_run), "--no-progress"]
    untrained_classifier(tmp_path / "untrained.pt", tiny_dataset)
    assert main(["make-cam", *untrained, "--split", "train", "--checkpoint", str(tmp_path / "untrained.pt")]) == 0
    assert main(["eval-cam", *untrained, "--split", "train"]) == 0
    untrained_miou = json.loads((untrained_run / "eval" / "cam_train.json").read_text())["miou"]
    assert_beats("CAM mIoU on train (reference: all background)", result["miou"], baseline, 5, untrained=untrained_miou)
    assert len(result["sweep"]) == 19 and set(result["per_class_iou"]) >= {"background", "disc"}
    assert main(["eval-cam", *common, "--split", "train"]) == 0
    assert "mIoU" in capsys.readouterr().out

    # finished work is skipped: nothing is rewritten
    stamps = {p: p.stat().st_mtime_ns for p in [model, *cams]}
    assert main(["train-cam", *common]) == 0
    assert main(["make-cam", *common, "--split", "train"]) == 0
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())

    # an existing checkpoint on another dataset root and split: CAMs for new tagged images
    assert main(["make-cam", *common, "--data-root", str(tiny_dataset), "--split", "val",
                 "--checkpoint", str(model), "--out-dir", str(tmp_path / "new_cams")]) == 0
    assert len(list((tmp_path / "new_cams").glob("*.npz"))) == 8


def test_make_cam_stops_on_corrupt_image_and_keeps_finished_work(tmp_path, tiny_dataset, capsys):
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    config = write_config(tmp_path, root, scales=[1.0], flip=False)
    run_dir = tmp_path / "run"
    classifier = tmp_path / "cam.pt"
    untrained_classifier(classifier, root)  # any classifier will do here
    common = ["--config", str(config), "--run-dir", str(run_dir), "--no-progress", "--checkpoint", str(classifier)]
    bad = root / "JPEGImages" / "train_0010.jpg"
    good_bytes = bad.read_bytes()
    bad.write_bytes(good_bytes[:100])
    assert main(["make-cam", *common, "--split", "train"]) == 2
    err = capsys.readouterr().err
    assert "train_0010.jpg: cannot decode" in err and "Traceback" not in err
    written = sorted((run_dir / "cams" / "train").glob("*.npz"))
    assert len(written) == 10  # the ten before it, complete; no partial file
    assert not list((run_dir / "cams" / "train").glob(".*tmp"))
    stamps = {p: p.stat().st_mtime_ns for p in written}
    bad.write_bytes(good_bytes)
    assert main(["make-cam", *common, "--split", "train"]) == 0
    assert len(list((run_dir / "cams" / "train").glob("*.npz"))) == 32
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())


def test_unwritable_run_dir_is_a_clear_error(tmp_path, tiny_dataset, capsys):
    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("")
        run_dir = blocker / "run"  # a path under a regular file can never be created
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        run_dir = locked / "run"
    config = write_config(tmp_path, tiny_dataset)
    assert main(["train-cam", "--config", str(config), "--run-dir", str(run_dir), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(run_dir) in err and "writable" in err


def test_bad_config_key_is_a_clear_error(tmp_path, tiny_dataset, capsys):
    config = write_config(tmp_path, tiny_dataset)
    assert main(["train-cam", "--config", str(config), "--set", "cam.epoch=2", "--run-dir", str(tmp_path / "r")]) == 2
    assert "cam.epoch: unknown key" in capsys.readouterr().err


def test_affinity_walk_and_pseudo_labels(pseudo_run):
    _, run_dir = pseudo_run  # make-psa-labels -> train-psa -> make-psa-pseudo -> eval-pseudo, in conftest.py
    seeds = sorted((run_dir / "psa_labels" / "train").glob("*.png"))
    assert len(seeds) == 32
    from PIL import Image

    seed_map = np.asarray(Image.open(seeds[0]))
    assert set(np.unique(seed_map)) <= {0, 1, 2, 3, 4, 5, 255}
    log = [json.loads(line) for line in (run_dir / "psa" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 3 * 4 and all(r["bg_pos_count"] > 0 for r in log)
    first, last = (np.mean([r["loss"] for r in log[i: i + 4]]) for i in (0, len(log) - 4))
    assert_beats("AffinityNet: last epoch's loss below the first's (1 - last / first)", 1 - last / first, 0, 0.1)
    for kind in ("rw", "rw_crf"):
        pngs = sorted((run_dir / "psa_pseudo" / "train" / kind).glob("*.png"))
        assert len(pngs) == 32
        img = Image.open(pngs[0])
        assert img.mode == "P" and img.size == (80, 80)
    result = json.loads((run_dir / "eval" / "pseudo_train.json").read_text())["results"]
    assert result["rw_crf"]["miou"] > 0
    # The walk's labels are not held to a bound: on this tiny set (CAMs of mIoU ~25, so poor
    # seeds) the walk on the untrained network's affinities scores as well or better.


def test_a_stage_turned_off_loses_its_score(pseudo_run, tmp_path):
    """make-psa-pseudo with psa.crf off discards the CRF labels (other settings), and eval-pseudo
    then drops their old score from summary.json instead of showing it beside the new one."""
    config, pseudo_run_dir = pseudo_run
    run_dir = tmp_path / "run"
    shutil.copytree(pseudo_run_dir, run_dir)
    assert "rw_crf/train" in json.loads((run_dir / "summary.json").read_text())
    common = ["--config", str(config), "--run-dir", str(run_dir), "--no-progress", "--set", "psa.crf=false"]
    assert main(["make-psa-pseudo", *common, "--split", "train"]) == 0
    assert main(["eval-pseudo", *common, "--split", "train"]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert "rw/train" in summary and "rw_crf/train" not in summary
    assert not (run_dir / "psa_pseudo" / "train" / "rw_crf").exists()


def test_the_segmentation_network_on_a_backbone_of_its_own(pseudo_run, tmp_path):
    """seg.backbone: the segmentation network is built, recorded and scored on its own backbone
    while every other stage keeps the run's; changing it retrains train-seg alone."""
    config, pseudo_run_dir = pseudo_run
    run_dir = tmp_path / "run"
    shutil.copytree(pseudo_run_dir, run_dir)
    common = ["--config", str(config), "--run-dir", str(run_dir), "--no-progress"]
    seg = ["--set", "seg.epochs=1", "--set", "seg.crop_size=64", "--set", "seg.resize_long=[56,72]",
           "--set", "seg.eval_scales=[1.0]", "--set", "seg.eval_crf=false"]
    assert main(["train-seg", *common, *seg]) == 0
    plain = torch.load(run_dir / "seg" / "model.pt", weights_only=True)
    wide = ["--set", "seg.backbone.name=efficientnet_lite1"]
    assert main(["train-seg", *common, *seg, *wide]) == 0
    model = torch.load(run_dir / "seg" / "model.pt", weights_only=True)
    assert plain["meta"]["backbone"] == "efficientnet_lite0" and model["meta"]["backbone"] == "efficientnet_lite1"
    assert model["fingerprint"] != plain["fingerprint"]
    # lite1 has 21 blocks to lite0's 16
    blocks = {int(k.split(".")[2]) for k in model["model"] if k.startswith("backbone._blocks.")}
    assert len(blocks) == 21
    assert main(["eval-seg", *common, *seg, *wide, "--split", "train"]) == 0
    assert "seg/train" in json.loads((run_dir / "summary.json").read_text())
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["backbone"]["name"] == "efficientnet_lite0"


def test_new_inputs_retrain_the_stages_that_read_them(pseudo_run, tmp_path, caplog):
    """A segmentation model belongs to the pseudo labels it trained on: labels made anew (another
    walk) retrain it instead of "complete, skipping". And a finished AffinityNet whose seeds changed
    trains anew, its old checkpoint.pt set aside, instead of stopping on it."""
    import logging

    config, pseudo_run_dir = pseudo_run
    run_dir = tmp_path / "run"
    shutil.copytree(pseudo_run_dir, run_dir)
    common = ["--config", str(config), "--run-dir", str(run_dir), "--no-progress"]
    seg = ["--set", "seg.epochs=1", "--set", "seg.crop_size=64", "--set", "seg.resize_long=[56,72]"]
    assert main(["train-seg", *common, *seg]) == 0
    first = torch.load(run_dir / "seg" / "model.pt", weights_only=True)["fingerprint"]
    # a score of this model on another data root (eval-seg --data-root), which the run cannot redo
    summary_path = run_dir / "summary.json"
    score = {"seg/original-val": {"miou": 61.0, "note": "single-scale"}}
    summary_path.write_text(json.dumps({**json.loads(summary_path.read_text()), **score}))
    with caplog.at_level(logging.INFO, logger="wsss"):
        assert main(["train-seg", *common, *seg]) == 0  # same labels: reused
        before = json.loads(summary_path.read_text())
        assert before["seg/original-val"] == score["seg/original-val"]
        assert any("train-seg" in r.getMessage() and "complete, skipping" in r.getMessage() for r in caplog.records)
        caplog.clear()
        assert "rw/train" in before and "rw_crf/train" in before
        assert main(["make-psa-pseudo", *common, "--split", "train", "--set", "psa.steps=8"]) == 0
        # labels made anew lose their old score until eval-pseudo scores them (a run without masks never does)
        assert not {"rw/train", "rw_crf/train"} & set(json.loads(summary_path.read_text()))
        assert main(["train-seg", *common, *seg, "--set", "psa.steps=8"]) == 0
        assert not any("complete, skipping" in r.getMessage() for r in caplog.records)
    assert torch.load(run_dir / "seg" / "model.pt", weights_only=True)["fingerprint"] != first
    summary = json.loads(summary_path.read_text())
    assert not any(key.startswith("seg/") for key in summary)  # the old model's score is gone, no other
    assert {k for k in before if not k.startswith(("seg/", "rw"))} <= set(summary)
    # CAMs made anew by the same classifier (other scales): their old score goes too, no other
    assert main(["make-cam", *common, "--split", "train", "--set", "cam.scales=[1.0]"]) == 0
    after = json.loads(summary_path.read_text())
    assert "cam/train" in summary and set(summary) - set(after) == {"cam/train"}

    # new seeds (as a retrained classifier gives): train-psa trains anew
    seeds = run_dir / "psa_labels" / "train" / "settings.json"
    seeds.write_text(json.dumps({**json.loads(seeds.read_text()), "cams": {"model": "retrained"}}))
    assert (run_dir / "psa" / "checkpoint.pt").exists()
    with caplog.at_level(logging.INFO, logger="wsss"):
        assert main(["train-psa", *common]) == 0
    assert any("from a finished training of other settings; training anew" in r.getMessage() for r in caplog.records)
    log = [json.loads(line) for line in (run_dir / "psa" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 13))  # one whole schedule, not the old one continued


def test_tune_sweeps_psas_walk_and_refuses_a_pipeline_without_one(pseudo_run, tmp_path, capsys):
    """`wsss tune` under pipeline: affinity sweeps PSA's walk (every setting scored, the best as
    --set overrides, the sweep saved); under ssnet, which has no walk, it is a one-line error."""
    config, pseudo_run_dir = pseudo_run
    run_dir = tmp_path / "run"
    shutil.copytree(pseudo_run_dir, run_dir)
    common = ["--config", str(config), "--run-dir", str(run_dir), "--no-progress"]
    assert main(["tune", *common, "--split", "train", "--limit", "6", "--beta", "8", "--steps", "16",
                 "--bg-threshold", "0.3", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "best on 6 images of train: --set psa.beta=8 --set psa.steps=16 --set psa.walk_alpha=" in out
    results = json.loads((run_dir / "eval" / "tune_train.json").read_text())["results"]
    assert sorted(r["bg_threshold"] for r in results) == [0.3, 0.5] and all(0 < r["miou"] <= 100 for r in results)
    assert main(["tune", *common, "--set", "pipeline=ssnet", "--split", "train"]) == 2
    assert "tune sweeps a random walk's settings; pipeline 'ssnet' has none" in capsys.readouterr().err
