"""Tags only: no mask is read to choose a setting, and a dataset without masks runs end to end."""

import json
import shutil

import numpy as np
import pytest
import yaml
from PIL import Image
from tiny_run import write_config

from wsss.cli import main
from wsss.config import load_config
from wsss.cues.cam_threshold import auto_seed_thresholds, otsu_threshold
from wsss.cues.saliency import THRESHOLDS, agreement_threshold
from wsss.errors import WsssError
from wsss.io import save_npz
from wsss.walk.seeds import alpha_for_threshold


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
    tree["psa"]["eval_splits"] = ["train", "val"]
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
    seeds = json.loads((run_dir / "psa_labels" / "train" / "settings.json").read_text())
    psa = load_config(config).psa
    expected = [alpha_for_threshold(t) for t in auto_seed_thresholds(record["threshold"], psa.fg_margin, psa.bg_factor)]
    assert [round(a, 6) for a in expected] in [[round(v, 6) for v in pair] for pair in _pairs(seeds)]
    assert (run_dir / "seg" / "model.pt").exists() and len(list((run_dir / "psa_pseudo" / "val" / "rw_crf").glob("*.png"))) == 8
    assert not (run_dir / "eval" / "cam_train.json").exists()


def _pairs(tree):
    """Every list of two numbers in a settings record (the seeds' alphas)."""
    if isinstance(tree, dict):
        for value in tree.values():
            yield from _pairs(value)
    elif isinstance(tree, list) and len(tree) == 2 and all(isinstance(v, (int, float)) for v in tree):
        yield tree


def test_saliency_threshold_agrees_with_the_cam_foreground():
    """s* of `cams` is the threshold where S >= s overlaps the CAMs' foreground best: saliency
    0.7 on the object, 0.35 on a salient distractor the CAMs do not mark, 0.1 elsewhere."""
    saliency = np.full((10, 10), 0.1, dtype=np.float32)
    saliency[2:6, 2:6] = 0.7
    saliency[7:9, 7:9] = 0.35
    cam_foreground = np.zeros((10, 10), dtype=bool)
    cam_foreground[2:6, 2:5] = True  # the CAMs miss a column of the object: still the best overlap
    threshold, ious = agreement_threshold([(saliency, cam_foreground)])
    assert 0.35 < threshold <= 0.7  # above the distractor, at or below the object
    assert max(ious) == ious[THRESHOLDS.index(threshold)] and abs(max(ious) - 12 / 16) < 1e-4
    assert ious[THRESHOLDS.index(0.3)] < max(ious)  # taking in the distractor costs overlap


def test_saliency_thresholds_of_written_maps_read_no_mask(tiny_dataset, tmp_path):
    """Both estimates on maps written as PNGs beside CAMs, on a copy of the tiny set with no
    masks: the saliency is the true object mask blurred to 0.8 / 0.2, the CAMs mark the objects."""
    from wsss.cues.saliency import estimate_saliency_threshold, saliency_to_png
    from wsss.data.voc import VocDataset

    with_masks = VocDataset(tiny_dataset, "train")
    root = tmp_path / "tags_only"
    shutil.copytree(tiny_dataset, root, ignore=shutil.ignore_patterns("SegmentationClass"))
    voc = VocDataset(root, "train")
    maps, cams = tmp_path / "maps", tmp_path / "cams"
    maps.mkdir(), cams.mkdir()
    for index, image_id in enumerate(voc.ids):
        objects = with_masks.load_mask(index) > 0
        saliency = np.where(objects, 0.8, 0.2).astype(np.float32)
        Image.fromarray(saliency_to_png(saliency)).save(maps / f"{image_id}.png")
        keys = np.flatnonzero(voc.labels[index])
        save_npz(cams / f"{image_id}.npz", cams=np.repeat(objects[None].astype(np.float16), len(keys), 0), keys=keys)
    for method in ("cams", "otsu"):
        threshold, measured = estimate_saliency_threshold(method, voc, maps, cams, 0.5)
        assert 0.2 < threshold <= 0.8, method  # between the two levels: objects in, background out
    with pytest.raises(WsssError, match="unknown method"):
        estimate_saliency_threshold("masks", voc, maps)


def test_import_a_folder_of_photos_and_a_tags_file(tiny_dataset, tmp_path):
    """`wsss import`: photos + a CSV of tags -> a dataset with the class list the tags use, seeded
    splits and labels the loader reads; the photos folder is left byte for byte as it was."""
    from wsss.data.voc import VocDataset

    photos = tmp_path / "photos"
    photos.mkdir()
    source = VocDataset(tiny_dataset, "train")
    rows = ["image,tags"]
    for index in range(12):
        shutil.copy(source.image_path(index), photos / f"p{index}.jpg")
        tags = [source.class_names[k + 1] for k in np.flatnonzero(source.labels[index])]
        rows.append(f"p{index}.jpg,{' ; '.join(tags)}" if index % 2 else f"p{index}.jpg,\"{','.join(tags)}\"")
    (photos / "tags.csv").write_text("\n".join(rows) + "\n")
    (photos / "stray.png").write_bytes((photos / "p0.jpg").read_bytes())  # a photo with no row: left out
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    out = tmp_path / "mine"
    assert main(["import", "--images", str(photos), "--tags", str(photos / "tags.csv"), "--out", str(out),
                 "--val-fraction", "0.25", "--seed", "3"]) == 0
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before
    used = sorted({n for row in rows[1:] for n in row.split(",", 1)[1].replace('"', "").replace(";", " ")
                   .replace(",", " ").split()})
    assert (out / "class_names.txt").read_text().split() == ["background", *used]
    train, val = VocDataset(out, "train"), VocDataset(out, "val")
    assert len(val) == 3 and len(train) == 9 and not set(train.ids) & set(val.ids) and not val.has_masks
    record = json.loads((out / "import.json").read_text())
    assert record["left_out"] == ["stray.png"] and record["seed"] == 3
    for voc in (train, val):  # the labels are the tags of each photo, under the derived class list
        for index, image_id in enumerate(voc.ids):
            row = int(image_id[1:])
            expected = {source.class_names[k + 1] for k in np.flatnonzero(source.labels[row])}
            assert {voc.class_names[k + 1] for k in np.flatnonzero(voc.labels[index])} == expected
    again = tmp_path / "again"
    assert main(["import", "--images", str(photos), "--tags", str(photos / "tags.csv"), "--out", str(again),
                 "--val-fraction", "0.25", "--seed", "3"]) == 0
    assert (again / "ImageSets" / "Segmentation" / "val.txt").read_bytes() == \
        (out / "ImageSets" / "Segmentation" / "val.txt").read_bytes()  # the same seed, the same split


def test_tags_file_read_in_place_and_bad_rows(tmp_path, tiny_dataset):
    """A dataset folder with tags.tsv and no class_names.txt: labels and classes from the tags;
    a bad row is one line naming the file and line."""
    from wsss.data.tags import read_tags_file
    from wsss.data.voc import VocDataset

    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root, ignore=shutil.ignore_patterns("SegmentationClass", "image_labels.json",
                                                                      "class_names.txt"))
    table = json.loads((tiny_dataset / "image_labels.json").read_text())
    (root / "tags.tsv").write_text("".join(f"{i}.jpg\t{' '.join(t)}\n" for i, t in table.items()))
    voc = VocDataset(root, "train")
    original = VocDataset(tiny_dataset, "train")
    assert voc.class_names == ["background", *sorted({n for t in table.values() for n in t})]
    for index in range(len(voc)):
        assert {voc.class_names[k + 1] for k in np.flatnonzero(voc.labels[index])} == \
            {original.class_names[k + 1] for k in np.flatnonzero(original.labels[index])}
    bad = tmp_path / "bad.csv"
    for text, message in (("a.jpg,dog\na.jpg,cat\n", "bad.csv:2: image 'a.jpg' is listed again"),
                          ("a.jpg,background\n", "bad.csv:1: 'background' is not a tag"),
                          ("image,tags\n,dog\n", "bad.csv:2: no image name"),
                          ("a.jpg,../x\n", "bad.csv:1")):
        bad.write_text(text)
        with pytest.raises(WsssError, match=message):
            read_tags_file(bad)


def test_run_lists_every_problem_before_training(tiny_dataset, tmp_path, capsys):
    """Four problems in one config and dataset: all four named in one message, nothing trained."""
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root, ignore=shutil.ignore_patterns("SegmentationClass"))
    (root / "ImageSets" / "Segmentation" / "val.txt").unlink()
    first = (root / "ImageSets" / "Segmentation" / "train.txt").read_text().split()[0]
    (root / "JPEGImages" / f"{first}.jpg").unlink()
    config = write_config(tmp_path, root, eval_splits=["train", "val"])
    run_dir = tmp_path / "run"
    assert main(["run", "--config", str(config), "--run-dir", str(run_dir), "--no-progress",
                 "--set", "cam.bg_threshold=masks", "--set", "saliency.seeds=true",
                 "--set", f"saliency.checkpoint={tmp_path / 'nowhere.pt'}"]) == 2
    err = capsys.readouterr().err
    assert "4 problems, nothing was run" in err
    for part in (f"{first}.jpg: image not found", "val.txt: split file not found", "cam.bg_threshold: masks",
                 "nowhere.pt: saliency model not found"):
        assert part in err, part
    assert not (run_dir / "cam").exists()


def test_no_shipped_config_chooses_a_setting_from_masks():
    """Every config in configs/ runs on a dataset with no masks: none takes a threshold from
    masks, trains on them or derives labels from them."""
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert len(configs) >= 6
    for path in configs:
        config = load_config(path)
        choices = {"cam.bg_threshold": config.cam.bg_threshold, "saliency.threshold": config.saliency.threshold,
                   "seg.labels": config.seg.labels, "data.labels": config.data.labels}
        assert not {key for key, value in choices.items() if value in ("masks", "gt")}, (path.name, choices)
