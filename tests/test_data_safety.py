"""Never lose a user's file: wsss deletes and overwrites only what it wrote, writes only inside
its output folders, refuses names that are paths, and a failed command leaves the run as it was.
Every user file that must survive is compared byte for byte."""

import errno
import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from tiny_run import untrained_classifier

from wsss.cli import main
from wsss.config import load_config
from wsss.data.demo import generate_demo_dataset
from wsss.data.voc import VocDataset
from wsss.errors import WsssError
from wsss.io import save_image

ROOT = Path(__file__).resolve().parents[1]


def snapshot(folder):
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("wsss: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture()
def dataset(tiny_dataset, tmp_path):
    root = tmp_path / "voc"
    shutil.copytree(tiny_dataset, root)
    return root


def config_file(tmp_path, root, **sections):
    path = tmp_path / "c.yaml"
    tree = {"name": "safety", "device": "cpu", "data": {"root": str(root)}, "backbone": {"pretrained": False},
            "cam": {"scales": [1.0], "flip": False, "crop_size": 64}}
    for key, value in sections.items():
        tree[key] = {**tree.get(key, {}), **value} if isinstance(value, dict) else value
    path.write_text(yaml.safe_dump(tree))
    return path


@pytest.fixture()
def classifier(dataset, tmp_path):
    path = tmp_path / "cam.pt"
    untrained_classifier(path, dataset)
    return path


def write_split(root, name, ids):
    (root / "ImageSets" / "Segmentation" / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))


# ------------------------------------------------------------------ 1. deletes only what it made


def test_make_cam_refuses_a_foreign_out_dir_and_keeps_its_files(dataset, classifier, tmp_path, capsys):
    foreign = tmp_path / "mine"
    shutil.copytree(dataset, foreign / "dataset")
    (foreign / "notes.txt").write_text("my notes")
    (foreign / "settings.json").write_text('{"theme": "dark"}')  # someone else's settings.json
    before = snapshot(foreign)
    command = ["make-cam", "--config", str(config_file(tmp_path, dataset)), "--run-dir", str(tmp_path / "run"),
               "--checkpoint", str(classifier), "--split", "val", "--out-dir", str(foreign), "--no-progress"]
    assert main(command) == 2
    assert "holds files wsss did not write" in one_line_error(capsys)
    assert snapshot(foreign) == before


def test_changed_settings_discard_only_wsss_files(dataset, classifier, tmp_path, capsys):
    config = config_file(tmp_path, dataset)
    common = ["--config", str(config), "--run-dir", str(tmp_path / "run"), "--checkpoint", str(classifier),
              "--split", "val", "--no-progress"]
    assert main(["make-cam", *common]) == 0
    cams = tmp_path / "run" / "cams" / "val"
    (cams / "README.md").write_text("what these CAMs are for")  # the user's note beside wsss's files
    assert main(["make-cam", *common, "--set", "cam.scales=[1.0,1.5]"]) == 0
    assert (cams / "README.md").read_text() == "what these CAMs are for"
    assert len(list(cams.glob("*.npz"))) == 8
    assert json.loads((cams / "settings.json").read_text())["scales"] == [1.0, 1.5]


def test_restart_deletes_only_the_stages_own_files(dataset, tmp_path):
    config = config_file(tmp_path, dataset, cam={"epochs": 1, "batch_size": 8, "resize_long": [56, 72]})
    run_dir = tmp_path / "run"
    (run_dir / "cam").mkdir(parents=True)
    (run_dir / "cam" / "my_notes.txt").write_text("keep me")
    assert main(["train-cam", "--config", str(config), "--run-dir", str(run_dir), "--no-progress", "--restart"]) == 0
    assert (run_dir / "cam" / "my_notes.txt").read_text() == "keep me"
    assert (run_dir / "cam" / "model.pt").exists()


# ------------------------------------------------------------------ 2. ids and splits are names


@pytest.mark.parametrize("bad_id", ["../../other/SegmentationClass/train_0005", "/tmp/x/victim", "a/b", "..",
                                    "x" * 300, ".hidden"])
def test_ids_that_are_paths_are_refused_with_their_line(dataset, bad_id):
    write_split(dataset, "train", ["train_0000", bad_id])
    with pytest.raises(WsssError) as caught:
        VocDataset(dataset, "train")
    message = str(caught.value)
    assert "train.txt:2: image id" in message and "\n" not in message


def test_an_id_that_climbs_out_writes_nothing_outside(dataset, classifier, tmp_path, capsys):
    victim = tmp_path / "other"
    shutil.copytree(dataset, victim)
    before = snapshot(victim)
    write_split(dataset, "val", ["val_0000", "../../other/SegmentationClass/val_0001"])
    command = ["make-cam", "--config", str(config_file(tmp_path, dataset)), "--run-dir", str(tmp_path / "run"),
               "--checkpoint", str(classifier), "--split", "val", "--no-progress"]
    assert main(command) == 2
    assert "val.txt:2: image id" in one_line_error(capsys)
    assert snapshot(victim) == before


def test_duplicate_ids_are_an_error(dataset):
    write_split(dataset, "train", ["train_0000", "train_0001", "train_0000"])
    with pytest.raises(WsssError, match=r"train.txt:3: image id 'train_0000' is listed again \(first on line 1\)"):
        VocDataset(dataset, "train")


@pytest.mark.parametrize("option", [["--split", "../../x"], ["--set", "name=/abs/path"],
                                    ["--set", "data.train_split=../x"]])
def test_split_and_run_names_are_not_paths(dataset, classifier, tmp_path, capsys, option, monkeypatch):
    monkeypatch.chdir(tmp_path)
    command = ["make-cam", "--config", str(config_file(tmp_path, dataset)), "--checkpoint", str(classifier),
               "--no-progress", *option]
    before = snapshot(tmp_path)
    assert main(command) == 2
    err = one_line_error(capsys)
    assert "separator" in err or "relative path" in err, err
    assert {k for k in snapshot(tmp_path) if k not in before and not k.startswith("runs/")} == set()
    assert not list(tmp_path.rglob("*.npz"))


# ------------------------------------------------------------------ 3. predict's output


@pytest.fixture(scope="module")
def seg_model(tmp_path_factory):
    from wsss.models.backbone import build_backbone
    from wsss.models.segmentation import SegNet

    torch.manual_seed(0)
    net = SegNet(build_backbone("efficientnet_lite0", 16, pretrained=False), 3, "largefov").eval()
    path = tmp_path_factory.mktemp("seg_model") / "model.pt"
    torch.save({"kind": "segmentation", "fingerprint": "test", "model": net.state_dict(),
                "meta": {"class_names": ["background", "a", "b"], "backbone": "efficientnet_lite0", "head": "largefov",
                         "output_stride": 16}}, path)
    return path


def photos(folder, count=2):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for n in range(count):
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(folder / f"p{n}.png")
    return folder


@pytest.mark.parametrize("where", ["same", "inside"])
def test_predict_refuses_an_output_in_its_input(seg_model, tmp_path, capsys, where):
    inputs = photos(tmp_path / "photos")
    before = snapshot(inputs)
    output = inputs if where == "same" else inputs / "masks"
    assert main(["predict", "--checkpoint", str(seg_model), "--input", str(inputs), "--output", str(output),
                 "--no-progress", "--device", "cpu"]) == 2
    assert "choose an --output outside it" in one_line_error(capsys)
    assert snapshot(inputs) == before


def test_predict_never_overwrites_a_file_it_did_not_write(seg_model, tmp_path, capsys):
    inputs, output = photos(tmp_path / "photos"), tmp_path / "out"
    output.mkdir()
    (output / "p0.png").write_bytes(b"the user's own p0.png")
    before = snapshot(output)
    command = ["predict", "--checkpoint", str(seg_model), "--input", str(inputs), "--output", str(output),
               "--no-progress", "--device", "cpu"]
    assert main(command) == 2
    assert "p0.png: exists and was not written by wsss predict" in one_line_error(capsys)
    assert snapshot(output) == before
    (output / "p0.png").unlink()
    assert main(command) == 0  # the folder is wsss's now: a re-run keeps its masks
    assert main(command) == 0
    assert "0 image(s) written, 2 kept" in capsys.readouterr().out


def test_a_full_disk_leaves_no_partial_overlay_and_temp_cleanup_spares_other_names(seg_model, tmp_path, monkeypatch,
                                                                                     capsys):
    inputs, output = photos(tmp_path / "photos"), tmp_path / "out"
    output.mkdir()
    (output / ".vim-session.tmp").write_text("the user's editor session")
    real_fsync, calls = os.fsync, []

    def full_disk(fd):  # the settings record goes through; the disk is full from the first overlay on
        calls.append(fd)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    command = ["predict", "--checkpoint", str(seg_model), "--input", str(inputs), "--output", str(output),
               "--no-progress", "--device", "cpu"]
    assert main(command) == 2
    assert "cannot write (No space left on device); free space" in one_line_error(capsys)
    assert sorted(p.name for p in output.iterdir()) == [".vim-session.tmp", ".wsss-predict.json"]
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert main(command) == 0
    assert (output / ".vim-session.tmp").read_text() == "the user's editor session"
    assert not [p for p in output.iterdir() if ".wsss-" in p.name and p.suffix == ".tmp"]


# ------------------------------------------------------------------ 4. the demo generator


def test_demo_generator_writes_only_into_an_empty_or_generated_folder(dataset, tmp_path, capsys):
    (dataset / ".wsss-generated").unlink()  # a real dataset: wsss did not generate it
    (dataset / "class_names.txt").unlink()  # "incomplete" to the demo check: it would generate
    before = snapshot(dataset)
    config = config_file(tmp_path, dataset, data={"demo": {"num_train": 4, "num_val": 2, "image_size": 32}})
    assert main(["make-cam", "--config", str(config), "--run-dir", str(tmp_path / "run"), "--no-progress"]) == 2
    assert "holds files wsss did not generate" in one_line_error(capsys)
    assert snapshot(dataset) == before
    # its own folder, half written (killed): generated again
    half = tmp_path / "demo"
    generate_demo_dataset(half, 4, 2, 32)
    (half / "image_labels.json").unlink()
    generate_demo_dataset(half, 4, 2, 32)
    assert (half / "image_labels.json").exists()


# ------------------------------------------------------------------ 5. a failed command changes nothing


@pytest.mark.parametrize("option", [["--seed", "99999999999999999999999"], ["--set", "seed=99999999999999999999999"],
                                    ["--set", "cam.scales=[1e9]"], ["--set", "psa.steps=1000000000000"],
                                    ["--set", "irn.steps=100000"]])
def test_out_of_range_settings_fail_before_anything_changes(dataset, classifier, tmp_path, capsys, option):
    config = config_file(tmp_path, dataset)
    run_dir = tmp_path / "run"
    common = ["--config", str(config), "--run-dir", str(run_dir), "--checkpoint", str(classifier), "--split", "val",
              "--no-progress"]
    assert main(["make-cam", *common]) == 0
    before = snapshot(run_dir)
    try:
        assert main(["make-cam", *common, *option]) == 2
    except SystemExit as exc:  # a bad --seed is the command line's error (argparse)
        assert exc.code == 2
    capsys.readouterr()
    after = snapshot(run_dir)
    after.pop("log.txt"), before.pop("log.txt")
    assert after == before


def test_workers_are_capped_at_the_cores(tmp_path):
    config = load_config(None, ["cam.workers=100000", "psa.workers=100000", "num_workers=100000"])
    assert config.cam.workers == config.psa.workers == config.num_workers == os.cpu_count()


def test_a_command_that_fails_midway_keeps_the_runs_config(dataset, classifier, tmp_path, capsys):
    config = config_file(tmp_path, dataset)
    run_dir = tmp_path / "run"
    common = ["--config", str(config), "--run-dir", str(run_dir), "--checkpoint", str(classifier), "--no-progress"]
    assert main(["make-cam", *common, "--split", "val"]) == 0
    recorded = (run_dir / "config.yaml").read_bytes()
    bad = dataset / "JPEGImages" / "train_0003.jpg"
    bad.write_bytes(bad.read_bytes()[:50])
    assert main(["make-cam", *common, "--split", "train", "--set", "cam.flip=true"]) == 2
    capsys.readouterr()
    assert (run_dir / "config.yaml").read_bytes() == recorded


# ------------------------------------------------------------------ 6. only regular files are replaced


@pytest.mark.parametrize("kind", ["symlink", "folder", "fifo"])
def test_report_output_replaces_only_regular_files(tmp_path, capsys, kind):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "summary.json").write_text('{"cam/train": {"miou": 50.0}}')
    precious = tmp_path / "precious.txt"
    precious.write_text("keep")
    target = tmp_path / "target"
    if kind == "symlink":
        target.symlink_to(precious)
    elif kind == "folder":
        target.mkdir()
        (target / "inside.txt").write_text("keep too")
    else:
        os.mkfifo(target)
    assert main(["report", str(run_dir), "--output", str(target)]) == 2
    assert "wsss replaces only regular files" in one_line_error(capsys)
    assert precious.read_text() == "keep"
    assert target.is_symlink() if kind == "symlink" else target.is_dir() if kind == "folder" else target.is_fifo()


# ------------------------------------------------------------------ 7. one command per run directory


def test_a_second_command_on_a_locked_run_directory_is_refused(dataset, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time\n"
                               f"fd = os.open({str(run_dir / '.wsss-lock')!r}, os.O_RDWR | os.O_CREAT)\n"
                               "fcntl.flock(fd, fcntl.LOCK_EX)\n"
                               "os.write(fd, f'{os.getpid()} wsss make-cam\\n'.encode())\n"
                               "print('locked', flush=True)\n"
                               "time.sleep(60)\n"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        config = config_file(tmp_path, dataset)
        assert main(["eval-cam", "--config", str(config), "--run-dir", str(run_dir), "--no-progress"]) == 2
        err = one_line_error(capsys)
        assert f"another wsss command is using this run directory: pid {holder.pid} (wsss make-cam)" in err
        # the saliency store's folders are locked alike, and the message names the store's way out
        from wsss.run.lock import run_lock
        with pytest.raises(WsssError, match=rf"this saliency model folder: pid {holder.pid} \(wsss make-cam\); wait "
                                            r"for it to finish or set another saliency.store$"):
            with run_lock(run_dir, "train-saliency", "saliency model folder", "set another saliency.store"):
                pass
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone (killed): its lock went with it, the next command takes it over
    fd = os.open(run_dir / ".wsss-lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)


# ------------------------------------------------------------------ 9. one line, never a traceback


def labels_json(root, table):
    (root / "image_labels.json").write_text(table if isinstance(table, str) else json.dumps(table))


@pytest.mark.parametrize("case", ["nested", "deep", "latin1_split", "latin1_labels", "npy_values", "many_classes",
                                  "mask_300"])
def test_bad_dataset_files_are_one_line_errors(dataset, case):
    ids = (dataset / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    table = json.loads((dataset / "image_labels.json").read_text())
    expected = {"nested": "must be a list of class names (strings)", "deep": "nested too deeply",
                "latin1_split": "val.txt: the split file is not UTF-8", "latin1_labels": "the label file is not UTF-8",
                "npy_values": "a multi-hot vector holds only 0 and 1", "many_classes": "at most 255",
                "mask_300": "mask value 300 is not a class index"}[case]
    labels = "auto"
    if case == "nested":
        labels_json(dataset, {**table, ids[0]: [["disc"]]})
    elif case == "deep":
        labels_json(dataset, "[" * 100000 + "]" * 100000)
    elif case == "latin1_split":
        (dataset / "ImageSets" / "Segmentation" / "val.txt").write_bytes("val_0000\ncaf\xe9\n".encode("latin-1"))
    elif case == "latin1_labels":
        (dataset / "image_labels.json").write_bytes('{"caf\xe9": []}'.encode("latin-1"))
    elif case == "npy_values":
        (dataset / "image_labels.json").unlink()
        names = (dataset / "class_names.txt").read_text().split()
        np.save(dataset / "cls_labels.npy", {i: np.full(len(names) - 1, 2.0, dtype=np.float32) for i in ids})
    elif case == "many_classes":
        (dataset / "class_names.txt").write_text("\n".join(f"c{n}" for n in range(300)) + "\n")
    elif case == "mask_300":
        Image.fromarray(np.full((80, 80), 300, dtype=np.uint16)).save(dataset / "SegmentationClass" / f"{ids[0]}.png")
    with pytest.raises(WsssError) as caught:
        voc = VocDataset(dataset, "val", labels=labels)
        voc.load_mask(0)
    assert expected in str(caught.value) and "\n" not in str(caught.value), str(caught.value)


def test_damaged_records_are_remade_not_tracebacks(dataset, classifier, tmp_path, capsys):
    config = config_file(tmp_path, dataset)
    run_dir = tmp_path / "run"
    common = ["--config", str(config), "--run-dir", str(run_dir), "--checkpoint", str(classifier), "--split", "val",
              "--no-progress"]
    assert main(["make-cam", *common]) == 0
    (run_dir / "cams" / "val" / "settings.json").write_text("{not json")
    (run_dir / "summary.json").write_text("\x00\x01")
    assert main(["make-cam", *common]) == 0  # the outputs are made again under a fresh record
    assert json.loads((run_dir / "cams" / "val" / "settings.json").read_text())["scales"] == [1.0]
    npz = run_dir / "cams" / "val" / "val_0000.npz"
    npz.write_bytes(npz.read_bytes()[:40])
    assert main(["eval-cam", "--config", str(config), "--run-dir", str(run_dir), "--split", "val", "--no-progress"]) == 2
    assert "val_0000.npz: damaged file" in one_line_error(capsys)


def test_predict_with_a_damaged_record_makes_its_masks_again(seg_model, tmp_path, capsys):
    inputs, output = photos(tmp_path / "photos"), tmp_path / "out"
    command = ["predict", "--checkpoint", str(seg_model), "--input", str(inputs), "--output", str(output),
               "--no-progress", "--device", "cpu"]
    assert main(command) == 0
    (output / ".wsss-predict.json").write_text("[[[")
    assert main(command) == 0
    assert "2 image(s) written" in capsys.readouterr().out


def test_a_full_disk_inside_torch_save_is_one_line(dataset, tmp_path, monkeypatch, capsys):
    def failing_save(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", failing_save)
    config = config_file(tmp_path, dataset, cam={"epochs": 1, "batch_size": 8, "resize_long": [56, 72]})
    assert main(["train-cam", "--config", str(config), "--run-dir", str(tmp_path / "run"), "--no-progress"]) == 2
    assert "cannot write ([enforce fail" in one_line_error(capsys)


@pytest.mark.parametrize("source", ["/dev/zero", "big"])
def test_a_config_that_is_not_a_config_file_is_one_line(tmp_path, capsys, source):
    if source == "big":
        source = tmp_path / "big.yaml"
        source.write_text("# padding\n" * 200000)
    assert main(["train-cam", "--config", str(source), "--run-dir", str(tmp_path / "run")]) == 2
    assert "--config takes a YAML file" in one_line_error(capsys)


def test_predict_scales_are_bounded(seg_model, tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["predict", "--checkpoint", str(seg_model), "--input", str(tmp_path), "--output", str(tmp_path / "o"),
              "--scales", "1000000"])
    assert caught.value.code == 2
    assert "'1000000': expected a scale in (0, 4]" in capsys.readouterr().err


def test_save_image_keeps_a_users_file_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "photo_overlay.jpg"
    target.write_bytes(b"earlier overlay")
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(WsssError, match="No space left on device"):
        save_image(target, np.zeros((4, 4, 3), dtype=np.uint8))
    assert target.read_bytes() == b"earlier overlay" and [p.name for p in tmp_path.iterdir()] == ["photo_overlay.jpg"]
