"""Hostile input and everyday failure: each ends in one line that names the file or setting at
fault and what to do, and leaves the run's files as they were."""

import argparse
import errno
import logging
import os
import re
import shutil
import stat
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import wsss
from wsss.cli import build_parser, main
from wsss.config import config_to_yaml, load_config
from wsss.data.voc import VocDataset
from wsss.engine import load_model_weights, resolve_device, save_checkpoint
from wsss.errors import WsssError
from wsss.io import file_mode, load_mask, load_rgb, load_saliency_mask, save_json, save_palette_png
from wsss.metrics import confusion_matrix, score_label_dir
from wsss.run.context import RunContext


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("wsss: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def small_config(tmp_path, root, **top):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"name": "h", "device": "cpu", "data": {"root": str(root)},
                                    "backbone": {"pretrained": False}, **top}))
    return path


@pytest.mark.parametrize("command", ["eval-cam", "train-cam", "make-cam"])
def test_failing_command_leaves_the_runs_config_alone(tmp_path, tiny_dataset, capsys, command):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    before = config_to_yaml(load_config(small_config(tmp_path, tiny_dataset))).encode()
    (run_dir / "config.yaml").write_bytes(before)
    assert main([command, "--run-dir", str(run_dir), "--set", "data.root=/typo", "--no-progress"]) == 2
    assert "/typo: dataset root not found" in one_line_error(capsys)
    assert (run_dir / "config.yaml").read_bytes() == before
    assert not (run_dir / "run_info.json").exists()


def test_config_is_recorded_once_the_command_has_done_work(tmp_path, tiny_dataset):
    config = load_config(small_config(tmp_path, tiny_dataset), ["seed=5"])
    ctx = RunContext(tmp_path / "run", config, progress=False)
    ctx.prepare()
    ctx.dataset("train")  # finding the inputs is not work done: a later failure must leave the record
    assert not (ctx.run_dir / "config.yaml").exists()
    ctx.train_options()["started"]()  # what the training loop calls after its first step
    assert yaml.safe_load((ctx.run_dir / "config.yaml").read_text())["seed"] == 5
    assert (ctx.run_dir / "run_info.json").exists()


# --------------------------------------------------------------------------- masks beyond the class list


@pytest.fixture()
def dataset_copy(tiny_dataset, tmp_path):
    root = tmp_path / "voc"
    shutil.copytree(tiny_dataset, root)
    return root


def paint_class(path, value):
    mask = load_mask(path)
    mask[3, 4] = value
    save_palette_png(path, mask)


def test_mask_class_beyond_the_class_list_fails_scoring(dataset_copy):
    voc = VocDataset(dataset_copy, "val", labels="json")
    folder = dataset_copy / "SegmentationClass"
    bad = folder / f"{voc.ids[2]}.png"
    paint_class(bad, voc.num_classes + 3)
    with pytest.raises(WsssError, match=rf"^{re.escape(str(bad))}: class index {voc.num_classes + 3} but the dataset "
                                        rf"has {voc.num_classes} classes \(0\.\.{voc.num_classes - 1}, 255 = void\); "
                                        "fix the mask or class_names.txt$"):
        score_label_dir(voc, folder, progress=False)
    paint_class(bad, 255)  # void is fine
    assert score_label_dir(voc, folder, progress=False).trace() > 0


def test_mask_class_beyond_the_class_list_fails_train_seg_gt(dataset_copy, tmp_path, capsys):
    num_classes = len((dataset_copy / "class_names.txt").read_text().split())
    for path in (dataset_copy / "SegmentationClass").glob("train_*.png"):
        paint_class(path, num_classes)
    config = small_config(tmp_path, dataset_copy, seg={"epochs": 1, "batch_size": 2, "crop_size": 32,
                                                       "resize_long": [32, 40]})
    assert main(["train-seg", "--config", str(config), "--run-dir", str(tmp_path / "run"), "--labels", "gt",
                 "--no-progress"]) == 2
    assert f".png: class index {num_classes} but the dataset has {num_classes} classes" in one_line_error(capsys)


def test_confusion_matrix_refuses_ground_truth_beyond_the_classes():
    with pytest.raises(ValueError, match="class index 9, outside 0..5"):
        confusion_matrix(np.zeros((2, 2), int), np.array([[0, 9], [255, 1]]), 6)


# --------------------------------------------------------------------------- one line instead of a traceback


def png_header_claiming(path, width, height):
    """A PNG whose header claims width x height pixels (its data is a few bytes)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("loader, what",
                         [(load_rgb, "image"), (load_mask, "mask"), (load_saliency_mask, "saliency mask")])
def test_decompression_bomb_is_refused_with_its_size(tmp_path, loader, what):
    path = png_header_claiming(tmp_path / "huge.png", 20000, 20000)
    with pytest.raises(WsssError, match=rf"^{re.escape(str(path))}: {what} is 20000x20000 \(400 Mpx\), larger than "
                                        r"wsss reads \(179 Mpx\); downscale it$"):
        loader(path)
    assert Image.MAX_IMAGE_PIXELS == 89478485  # PIL's own limit is left as it was


class NotAWeight:
    """An arbitrary object: weights_only loading refuses it."""


def fake_model_file(path, **payload):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def predict_error(capsys, checkpoint, tmp_path) -> str:
    image = tmp_path / "in.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    assert main(["predict", "--checkpoint", str(checkpoint), "--input", str(image), "--output", str(tmp_path / "out"),
                 "--no-progress"]) == 2
    return one_line_error(capsys)


def test_predict_on_a_training_checkpoint_names_the_model_file(tmp_path, capsys):
    path = fake_model_file(tmp_path / "seg" / "checkpoint.pt", kind="segmentation", fingerprint="f", step=3,
                           model={"w": torch.zeros(1)}, optimizer={"state": {}})
    err = predict_error(capsys, path, tmp_path)
    assert f"{path}: this is a training checkpoint" in err and f"use {tmp_path / 'seg' / 'model.pt'}" in err


def test_checkpoint_holding_objects_is_refused_without_the_weights_only_hint(tmp_path, capsys):
    path = fake_model_file(tmp_path / "evil.pt", kind="segmentation", model=NotAWeight())
    err = predict_error(capsys, path, tmp_path)
    assert f"{path}: not a wsss checkpoint (it holds objects wsss does not load)" in err
    assert "weights_only" not in err


def test_empty_checkpoint_says_so(tmp_path, capsys):
    path = tmp_path / "model.pt"
    path.write_bytes(b"")
    assert f"{path}: cannot load checkpoint (empty file)" in predict_error(capsys, path, tmp_path)


def test_make_cam_on_a_file_that_is_no_checkpoint(tmp_path, tiny_dataset, capsys):
    path = fake_model_file(tmp_path / "list.pt")
    torch.save([torch.zeros(2)], path)
    config = small_config(tmp_path, tiny_dataset)
    assert main(["make-cam", "--config", str(config), "--run-dir", str(tmp_path / "run"), "--checkpoint", str(path),
                 "--no-progress"]) == 2
    assert f"{path}: not a wsss checkpoint (holds a list without model weights)" in one_line_error(capsys)


def test_weights_that_do_not_fit_name_the_keys_and_another_stride_is_a_warning(tmp_path, caplog):
    model = torch.nn.Linear(3, 2)
    path = fake_model_file(tmp_path / "model.pt", kind="cam", meta={"output_stride": 16},
                           model={"weight": torch.zeros(5, 3), "extra": torch.zeros(1)})
    with pytest.raises(WsssError, match=r"model\.pt: does not fit this model \(1 missing: bias; 1 unexpected: extra; "
                                        r"1 of another shape: weight \(5, 3\) in the file, \(2, 3\) here\); was it"):
        load_model_weights(model, path, "cam")
    fake_model_file(path, kind="cam", model=model.state_dict(), meta={"output_stride": 16})
    with caplog.at_level(logging.WARNING, logger="wsss"):
        assert load_model_weights(model, path, "cam", output_stride=8)["output_stride"] == 16
    assert "trained with output_stride 16, the config asks for 8; using 8" in caplog.text


# --------------------------------------------------------------------------- writing


def test_full_disk_is_one_line_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", no_space)
    target = tmp_path / "out" / "summary.json"
    with pytest.raises(WsssError, match=rf"^{re.escape(str(target))}: cannot write \(No space left on device\); "
                                        "free space or choose another --run-dir"):
        save_json(target, {"a": 1})
    assert not target.exists() and list((tmp_path / "out").iterdir()) == []


def test_full_disk_while_saving_a_checkpoint(tmp_path, monkeypatch):
    import wsss.engine.checkpoint

    real_open = open
    monkeypatch.setattr(wsss.engine.checkpoint, "open", lambda path, mode: real_open("/dev/full", mode), raising=False)
    target = tmp_path / "cam" / "checkpoint.pt"
    with pytest.raises(WsssError, match=rf"^{re.escape(str(target))}: cannot write \(No space left on device\); free"):
        save_checkpoint(target, {"model": {"w": torch.zeros(100_000)}})
    assert list((tmp_path / "cam").iterdir()) == []


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_honour_the_umask(tmp_path, umask, mode):
    before = os.umask(umask)
    file_mode.cache_clear()
    try:
        save_json(tmp_path / "summary.json", {})
        save_palette_png(tmp_path / "mask.png", np.zeros((2, 2), np.uint8))
    finally:
        os.umask(before)
        file_mode.cache_clear()
    assert stat.S_IMODE((tmp_path / "summary.json").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "mask.png").stat().st_mode) == mode


# --------------------------------------------------------------------------- the command line


def usage_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("option, value, rule", [("--scales", "0", "a scale in (0, 4]"), ("--scales", "-1", "a scale in (0, 4]"),
                                                 ("--workers", "-1", "an integer >= 0"),
                                                 ("--device", "tpu", "auto, cpu, cuda or cuda:N")])
def test_predict_refuses_bad_options(capsys, option, value, rule):
    err = usage_error(capsys, ["predict", "--checkpoint", "m.pt", "--input", "in", "--output", "out", option, value])
    assert err == f"wsss predict: error: argument {option}: '{value}': expected {rule}"


def test_unknown_device_is_one_line_for_the_api_too():
    with pytest.raises(WsssError, match=r"^device 'tpu': not a device wsss uses; use auto, cpu, cuda or cuda:N$"):
        resolve_device("tpu")
    with pytest.raises(WsssError, match=r"device 'cuda:x'"):
        resolve_device("cuda:x")


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"wsss {wsss.__version__} (torch {torch.__version__})\n"


def all_actions(parser, name="wsss"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, sub in action.choices.items():
                yield from all_actions(sub, command)
        else:
            yield name, action


def test_every_option_has_help_and_ssnet_commands_share_a_stage_default():
    actions = list(all_actions(build_parser()))
    assert [(name, action.option_strings) for name, action in actions if not action.help] == []
    stages = {name: action.default for name, action in actions if "--stage" in action.option_strings}
    assert stages == {"train-ssnet": 2, "make-ssnet-pseudo": 2, "eval-ssnet-pseudo": 2, "eval-ssnet": 2}
    assert not [name for name, action in actions if "--resume" in action.option_strings]  # resuming is the default
