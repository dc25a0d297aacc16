"""Saliency as the background cue of PSA and IRN: the seeds, the walk's background,
make-saliency, and runs on generated data with SSNet's saliency and with an oracle saliency."""

import json
import logging
import shutil

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from tiny_run import TINY_SEG

from wsss.cli import main
from wsss.cues.saliency import foreground_confusions, saliency_power
from wsss.data.voc import VocDataset
from wsss.io import IGNORE_INDEX, load_mask
from wsss.irn.make_pseudo import walked_scores
from wsss.metrics import iou_per_class
from wsss.walk.seeds import mixed_background, saliency_guided_seeds, scores_to_labels, scores_with_background

U = IGNORE_INDEX


def test_saliency_guided_seeds_follow_the_rules_on_a_hand_made_map():
    """CAM seeds (class 3 with a leak onto context, background, unknown) against a saliency map:
    unsalient foreground -> unknown, salient background -> unknown, unsalient non-object -> background."""
    seeds = np.array([[3, 3, 3, 0],
                      [3, 3, U, 0],
                      [U, U, U, 0]], dtype=np.uint8)
    saliency = np.array([[0.9, 0.9, 0.1, 0.1],
                         [0.9, 0.4, 0.9, 0.8],
                         [0.1, 0.3, 0.45, 0.2]], dtype=np.float32)
    out = saliency_guided_seeds(seeds, saliency, fg_min=0.5, bg_max=0.25)
    expected = np.array([[3, 3, 0, 0],    # (0,2): CAM leak onto unsalient context -> background (S <= 0.25)
                         [3, U, U, U],    # (1,1): S 0.4 between: unknown; (1,3): salient bg seed -> unknown
                         [0, U, U, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(out, expected)
    # an image with no class: every pixel is a real negative, salient or not
    np.testing.assert_array_equal(saliency_guided_seeds(seeds, saliency, 0.5, 0.25, has_classes=False), seeds)
    with pytest.raises(ValueError, match="differ in size"):
        saliency_guided_seeds(seeds, saliency[:, :3], 0.5, 0.25)


def test_walk_background_mixes_cam_and_saliency():
    """b = (1 - w) (1 - max CAM)^alpha + w (1 - S)^gamma; w = 0 is PSA's, w = 1 saliency alone."""
    cams = np.array([[[0.9, 0.2], [0.0, 0.5]]], dtype=np.float32)  # (1, 2, 2)
    saliency = np.array([[1.0, 0.0], [0.5, 0.8]], dtype=np.float32)
    cam_bg = (1 - cams[0]) ** 2
    np.testing.assert_allclose(scores_with_background(cams, 2.0)[0], cam_bg, rtol=1e-6)
    np.testing.assert_allclose(scores_with_background(cams, 2.0, saliency, 0.0, 3.0)[0], cam_bg, rtol=1e-6)
    mixed = scores_with_background(cams, 2.0, saliency, 0.25, 3.0)
    np.testing.assert_allclose(mixed[0], 0.75 * cam_bg + 0.25 * (1 - saliency) ** 3, rtol=1e-6)
    np.testing.assert_allclose(mixed[1:], cams)
    # saliency alone decides where the CAM is weak: (0,1) and (1,1) hold CAM 0.2 / 0.5
    alone = scores_with_background(cams, 2.0, saliency, 1.0, 1.0)
    np.testing.assert_array_equal(scores_to_labels(alone, np.array([4])), [[5, 0], [0, 5]])
    np.testing.assert_array_equal(scores_to_labels(scores_with_background(cams, 2.0), np.array([4])), [[5, 0], [0, 5]])
    assert scores_to_labels(scores_with_background(cams, 8.0), np.array([4]))[0, 1] == 5  # weak background: leak
    assert scores_to_labels(scores_with_background(cams, 8.0, saliency, 0.5, 1.0), np.array([4]))[0, 1] == 0
    with pytest.raises(ValueError, match="differ in size"):
        mixed_background(cam_bg, saliency[:1], 0.5, 1.0)


def test_irn_walk_background_mixes_saliency_into_either_background():
    """IRN's constant background and PSA's walked one both take the saliency mix."""
    torch.manual_seed(0)
    boundary = torch.rand(6, 6) * 0.2
    cams = np.random.default_rng(0).random((2, 24, 24)).astype(np.float32)
    saliency = np.zeros((24, 24), dtype=np.float32)
    saliency[:, 12:] = 1
    plain = walked_scores(boundary, cams, 2, 10.0, 8, 0.25, True, "constant")
    mixed = walked_scores(boundary, cams, 2, 10.0, 8, 0.25, True, "constant", saliency, 0.5, 1.0)
    np.testing.assert_allclose(mixed[0], 0.5 * 0.25 + 0.5 * (1 - saliency), rtol=1e-6)
    np.testing.assert_allclose(mixed[1:], plain[1:])
    walked = walked_scores(boundary, cams, 2, 10.0, 8, 0.25, True, "walked", saliency, 1.0, 1.0)
    unsalient, salient = walked[0][:, :10].mean(), walked[0][:, 14:].mean()
    assert unsalient > 0.7 and salient < 0.3  # walked, the saliency's background stays on its side
    cam_only = walked_scores(boundary, cams, 2, 10.0, 8, 0.25, True, "walked")
    assert abs(cam_only[0][:, :10].mean() - cam_only[0][:, 14:].mean()) < 0.05  # the CAMs alone: no side


def test_foreground_scores_on_a_known_map():
    """Saliency as objects vs background: void skipped, counts and IoU by hand."""
    saliency = np.array([[0.9, 0.6, 0.2], [0.1, 0.7, 0.0]], dtype=np.float32)
    mask = np.array([[2, 2, 0], [0, 0, U]], dtype=np.uint8)
    conf = foreground_confusions(saliency, mask, thresholds=(0.5,))[0]
    # truth bg: (0,2) 0.2, (1,0) 0.1, (1,1) 0.7 -> 2 below, 1 above; truth object: 0.9, 0.6 -> both above
    np.testing.assert_array_equal(conf, [[2, 1], [0, 2]])
    background, objects = iou_per_class(conf)
    assert background == pytest.approx(2 / 3) and objects == pytest.approx(2 / 3)
    assert saliency_power(0.5, 0.25) == pytest.approx(2.0)  # (1 - 0.5)^2 = 0.25


def _oracle_saliency(run_dir, dataset_root, split):
    """Saliency maps from the masks (objects 255, the rest 0), written where make-saliency writes,
    with a settings record: the cue at its best, for a test of what the cue does."""
    voc = VocDataset(dataset_root, split)
    out = run_dir / "saliency" / split
    out.mkdir(parents=True, exist_ok=True)
    for index, image_id in enumerate(voc.ids):
        mask = voc.load_mask(index)
        Image.fromarray(np.where((mask > 0) & (mask != U), 255, 0).astype(np.uint8), mode="L").save(out / f"{image_id}.png")
    (out / "settings.json").write_text(json.dumps({"oracle": True}))
    return voc


def test_oracle_saliency_lifts_the_walk_and_cleans_the_seeds(pseudo_run, tmp_path, tiny_dataset):
    """With the masks as saliency, the walk's labels beat PSA's alone by a wide margin at every
    number of steps (the tuner's sweep), make-psa-pseudo's labels rise, and the seeds keep to the
    saliency: no object seed off the objects, background wherever S is 0."""
    config, source = pseudo_run
    run_dir = tmp_path / "run"
    shutil.copytree(source, run_dir)
    before = json.loads((run_dir / "eval" / "pseudo_train.json").read_text())["results"]["rw"]["miou"]
    voc = _oracle_saliency(run_dir, tiny_dataset, "train")
    common = ["--config", str(config), "--run-dir", str(run_dir), "--no-progress", "--set", "saliency.threshold=0.5"]
    assert main(["tune", *common, "--split", "train", "--limit", "32", "--beta", "8", "--steps", "0", "8",
                 "--bg-threshold", "0.3", "--saliency-weight", "0", "1", "--saliency-power", "1"]) == 0
    results = json.loads((run_dir / "eval" / "tune_train.json").read_text())["results"]
    miou = {(r["steps"], r["saliency_weight"]): r["miou"] for r in results}
    for steps in (0, 8):  # measured: 22.0 -> 53.8 and 20.9 -> 34.6
        assert miou[steps, 1] > miou[steps, 0] + 10, miou
    common += ["--set", "saliency.walk_weight=1", "--set", "saliency.walk_power=1"]
    # no saliency.checkpoint: the maps are complete, so make-saliency keeps them
    assert main(["make-saliency", *common]) == 0
    assert main(["make-psa-pseudo", *common, "--split", "train"]) == 0
    assert main(["eval-pseudo", *common, "--split", "train"]) == 0
    after = json.loads((run_dir / "eval" / "pseudo_train.json").read_text())["results"]["rw"]["miou"]
    assert after > before, (before, after)
    assert json.loads((run_dir / "psa_pseudo" / "train" / "settings.json").read_text())["saliency"]["maps"] == {"oracle": True}

    assert main(["make-psa-labels", *common, "--set", "saliency.seeds=true", "--set", "saliency.walk_weight=0"]) == 0
    recorded = json.loads((run_dir / "psa_labels" / "train" / "settings.json").read_text())["saliency"]
    assert recorded["fg_min"] == 0.5 and recorded["bg_max"] == 0.25
    for index, image_id in enumerate(voc.ids):
        seeds = load_mask(run_dir / "psa_labels" / "train" / f"{image_id}.png")
        objects = (voc.load_mask(index) > 0) & (voc.load_mask(index) != U)
        assert not ((seeds > 0) & (seeds != U) & ~objects).any()
        if voc.labels[index].any():
            assert (seeds[~objects] == 0).all()


def _run_with_saliency(config, cam_run_dir, tmp_path, sections: dict):
    """`wsss run` of the tiny config with ``sections`` and a one-epoch segmentation network, in a
    copy of ``cam_run_dir``; returns (the config's path, the run directory)."""
    settings = {**yaml.safe_load(config.read_text()), **sections, "seg": TINY_SEG}
    path = tmp_path / "with_saliency.yaml"
    path.write_text(yaml.safe_dump(settings))
    run_dir = tmp_path / "run"
    shutil.copytree(cam_run_dir, run_dir)
    assert main(["run", "--config", str(path), "--run-dir", str(run_dir), "--no-progress"]) == 0
    return path, run_dir


def test_psa_pipeline_with_ssnet_saliency_runs_end_to_end(cam_run, ssnet_run, tmp_path, tiny_dataset):
    """`wsss run` (PSA) with SSNet's saliency on generated data: make-saliency for each split,
    saliency-guided seeds, the mixed walk, a segmentation model; outputs at image size, scored."""
    _, config, cam_run_dir = cam_run
    ssnet_dir, _ = ssnet_run
    path, run_dir = _run_with_saliency(
        config, cam_run_dir, tmp_path,
        {"saliency": {"checkpoint": str(ssnet_dir / "ssnet1" / "model.pt"), "seeds": True, "walk_weight": 0.5}})
    summary = json.loads((run_dir / "summary.json").read_text())
    assert 0 < summary["saliency_maps/train"]["threshold"] < 1
    assert summary["saliency_maps/train"]["miou"] > 0
    chosen = json.loads((run_dir / "eval" / "saliency_threshold_train.json").read_text())
    assert chosen["method"] == "otsu" and chosen["masks"] == "none read"  # s* from the maps alone, by default
    assert summary["saliency_threshold/train"]["threshold"] == chosen["threshold"]
    stages = {"make-saliency/train", "make-psa-labels", "train-psa", "make-psa-pseudo/train", "train-seg"}
    assert stages <= set(summary["timings_s"])
    voc = VocDataset(tiny_dataset, "train")
    for index in (0, len(voc) - 1):
        image = voc.load_image(index)
        grey = np.asarray(Image.open(run_dir / "saliency" / "train" / f"{voc.ids[index]}.png"))
        assert grey.shape == image.shape[:2] and grey.dtype == np.uint8
    seed_settings = json.loads((run_dir / "psa_labels" / "train" / "settings.json").read_text())
    assert seed_settings["saliency"]["maps"]["model"]  # the SSNet's fingerprint: new maps, new seeds
    pseudo_settings = json.loads((run_dir / "psa_pseudo" / "train" / "settings.json").read_text())
    assert pseudo_settings["saliency"]["weight"] == 0.5 and pseudo_settings["saliency"]["power"] > 0
    assert (run_dir / "seg" / "model.pt").exists()
    # another walk weight re-walks; the seeds (and so AffinityNet) do not depend on it
    seed_file = run_dir / "psa_labels" / "train" / f"{voc.ids[0]}.png"
    made = seed_file.stat().st_mtime_ns
    assert main(["make-psa-labels", "--config", str(path), "--run-dir", str(run_dir), "--no-progress",
                 "--set", "saliency.walk_weight=0.25"]) == 0
    assert seed_file.stat().st_mtime_ns == made
    # the tuner sweeps the saliency weight beside the walk's settings
    assert main(["tune", "--config", str(path), "--run-dir", str(run_dir), "--no-progress", "--split", "train",
                 "--limit", "4", "--beta", "8", "--steps", "8", "--bg-threshold", "0.3",
                 "--saliency-weight", "0", "0.5", "1"]) == 0
    results = json.loads((run_dir / "eval" / "tune_train.json").read_text())["results"]
    assert sorted(r["saliency_weight"] for r in results) == [0, 0.5, 1]


def test_saliency_cue_errors_name_the_fix(pseudo_run, tmp_path, tiny_dataset, capsys):
    config, source = pseudo_run
    run_dir = tmp_path / "run"
    shutil.copytree(source, run_dir)
    common = ["--config", str(config), "--run-dir", str(run_dir), "--no-progress"]
    # no model configured and no maps
    assert main(["make-saliency", *common]) == 2
    assert "no saliency model: set saliency.checkpoint" in capsys.readouterr().err
    # a model that gives no saliency
    assert main(["make-saliency", *common, "--saliency-checkpoint", str(run_dir / "psa" / "model.pt")]) == 2
    assert "not an SSNet model" in capsys.readouterr().err
    # the walk asks for maps that were never made
    assert main(["make-psa-pseudo", *common, "--set", "saliency.walk_weight=0.5", "--set", "saliency.walk_power=1",
                 "--set", "saliency.threshold=0.5"]) == 2
    assert "run `wsss make-saliency --split train` first" in capsys.readouterr().err
    assert main(["tune", *common, "--saliency-weight", "0.5", "--set", "saliency.threshold=0.5",
                 "--saliency-power", "1"]) == 2
    assert "no saliency maps to sweep" in capsys.readouterr().err
    # a map of the wrong size names its file and the fix
    voc = _oracle_saliency(run_dir, tiny_dataset, "train")
    wrong = run_dir / "saliency" / "train" / f"{voc.ids[0]}.png"
    Image.new("L", (7, 5)).save(wrong)
    assert main(["make-psa-pseudo", *common, "--set", "saliency.walk_weight=0.5", "--set", "saliency.walk_power=1",
                 "--set", "saliency.threshold=0.5"]) == 2
    err = capsys.readouterr().err
    assert str(wrong) in err and "saliency map is 7x5" in err and "re-run `wsss make-saliency`" in err


def test_the_run_trains_its_saliency_model_once_and_a_second_run_reuses_it(cam_run, tmp_path, tiny_dataset,
                                                                          caplog, capsys):
    """`saliency.checkpoint: train`: `wsss run` trains SSNet's stage 1 into the shared store
    first, the maps come from it; another run directory of the same settings and data reuses the
    very file, and says so; another seed is another model."""
    from wsss import saliency_model
    from wsss.config import load_config
    from wsss.run.context import RunContext

    _, config, cam_run_dir = cam_run
    store = tmp_path / "store"
    path, run_dir = _run_with_saliency(config, cam_run_dir, tmp_path, {
        "saliency": {"checkpoint": "train", "store": str(store), "seeds": True, "walk_weight": 0.5},
        "ssnet": {"saliency": {"root": str(tmp_path / "saliency"), "holdout_every": 0,
                               "demo": {"num_images": 12, "image_size": 80, "seed": 3}},
                  "stage1": {"output_stride": 16, "epochs": 1, "batch_size": 8, "optimizer": "adam", "lr": 2e-4,
                             "resize_long": [56, 72], "crop_size": 64}}})
    models = list(store.glob("ssnet1-*/ssnet1/model.pt"))
    assert len(models) == 1
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["saliency_model"] == str(models[0]) and "train-saliency" in summary["timings_s"]
    maps = json.loads((run_dir / "saliency" / "train" / "settings.json").read_text())
    assert maps["model"] == torch.load(models[0], map_location="cpu", weights_only=True)["fingerprint"]
    assert (run_dir / "seg" / "model.pt").exists() and not (run_dir / "ssnet1").exists()
    made = models[0].read_bytes()
    # the plan of the finished run: every stage complete, the saliency model's too, nothing written
    files = {path: path.read_bytes() for path in sorted([*run_dir.rglob("*"), *store.rglob("*")]) if path.is_file()}
    assert main(["run", "--plan", "--config", str(path), "--run-dir", str(run_dir)]) == 0
    assert "complete  train-saliency" in capsys.readouterr().out
    assert files == {p: p.read_bytes() for p in sorted([*run_dir.rglob("*"), *store.rglob("*")]) if p.is_file()}

    other = RunContext(tmp_path / "another_run", load_config(path))
    with caplog.at_level(logging.INFO, logger="wsss"):
        assert saliency_model.run(other) == models[0]
    assert "train-saliency: reusing" in caplog.text and models[0].read_bytes() == made
    reseeded = RunContext(tmp_path / "another_run", load_config(path, ["seed=1"]))
    assert saliency_model.model_dir(reseeded) != models[0].parents[1]


def test_the_saliency_only_network_reads_no_dataset_and_serves_every_dataset(cam_run, tmp_path, caplog, capsys):
    """``ssnet.cls_weight: 0``: the saliency-only network has class-agnostic maps, whatever the
    dataset's classes, trains on the saliency set alone (an epoch is one pass over it) and a run on another dataset
    reuses it, even when that dataset is not there: nothing of it is read. Its maps serve the cue."""
    from wsss import saliency_model
    from wsss.config import load_config
    from wsss.cues import saliency as make_saliency
    from wsss.run.context import RunContext

    _, config, _ = cam_run
    settings = {**yaml.safe_load(config.read_text()),
                "saliency": {"checkpoint": "train", "store": str(tmp_path / "store"), "seeds": True, "walk_weight": 0.5},
                "ssnet": {"cls_weight": 0.0,
                          "saliency": {"root": str(tmp_path / "saliency"), "holdout_every": 0,
                                       "demo": {"num_images": 12, "image_size": 80, "seed": 3}},
                          "stage1": {"output_stride": 16, "epochs": 1, "batch_size": 4, "optimizer": "adam",
                                     "lr": 2e-4, "resize_long": [56, 72], "crop_size": 64}}}
    path = tmp_path / "saliency_only.yaml"
    path.write_text(yaml.safe_dump(settings))
    run = RunContext(tmp_path / "run", load_config(path))
    model = saliency_model.run(run)
    state = torch.load(model, map_location="cpu", weights_only=True)
    assert state["meta"]["class_names"] == ["background", *(f"salient_{i}" for i in range(1, 16))]
    assert state["meta"]["steps"] == 12 // 4  # one pass over the 12 saliency images, 4 a batch
    made = model.read_bytes()
    elsewhere = RunContext(tmp_path / "run_elsewhere", load_config(path, [f"data.root={tmp_path / 'no_dataset'}"]))
    with caplog.at_level(logging.INFO, logger="wsss"):
        assert saliency_model.run(elsewhere) == model
    assert "train-saliency: reusing" in caplog.text and model.read_bytes() == made
    # its maps are no classes: mining SSNet's labels with it is refused in one line
    assert main(["make-ssnet-pseudo", "--config", str(path), "--run-dir", str(tmp_path / "run"), "--stage", "1",
                 "--checkpoint", str(model), "--no-progress"]) == 2
    assert "use an SSNet trained with Lc (ssnet.cls_weight > 0)" in capsys.readouterr().err
    maps = make_saliency.run(run)
    voc = run.dataset("train")
    for index in (0, len(voc) - 1):
        saliency = np.asarray(Image.open(maps / f"{voc.ids[index]}.png"))
        assert saliency.shape == voc.load_image(index).shape[:2] and saliency.max() > saliency.min()
