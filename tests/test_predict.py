"""`wsss predict` over folders with unreadable files, and inference on images larger than max_side."""

import inspect
import json
import logging
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from wsss import Predictor
from wsss.cam.algorithm import normalize_cam, upsample_cams
from wsss.cli import main
from wsss.inference import upsample, upsampled_rows
from wsss.io import UnreadableImage, atomic_path, load_rgb
from wsss.models import build_model
from wsss.parallel import map_images

CLASSES = ["background", "disc", "box"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained segmentation network (random weights: predictions are arbitrary but fixed)."""
    torch.manual_seed(0)
    model = build_model("segmentation", "efficientnet_lite0", 16, len(CLASSES), "aspp", [2, 4], pretrained=False)
    path = tmp_path_factory.mktemp("model") / "seg.pt"
    torch.save({"kind": "segmentation", "fingerprint": "test", "model": model.state_dict(),
                "meta": {"class_names": CLASSES, "backbone": "efficientnet_lite0", "output_stride": 16,
                         "head": "aspp", "rates": [2, 4]}}, path)
    return path


def photo(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)


def mixed_folder(folder: Path) -> None:
    """Three good images, a corrupt JPEG, a zero-byte PNG, a text file and a subfolder."""
    folder.mkdir()
    for index, name in enumerate(["a.jpg", "b.png", "c.jpg"]):
        Image.fromarray(photo(36, 44, index)).save(folder / name)
    good = (folder / "a.jpg").read_bytes()
    (folder / "corrupt.jpg").write_bytes(good[:200] + bytes(range(256)) * 4)
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image\n")
    (folder / "sub").mkdir()
    Image.fromarray(photo(36, 44, 9)).save(folder / "sub" / "inner.jpg")


@pytest.mark.parametrize("workers", [1, 2])
def test_unreadable_images_are_skipped_and_reported(checkpoint, tmp_path, workers, capsys, caplog, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    inputs, out = tmp_path / "in", tmp_path / "out"
    mixed_folder(inputs)
    out.mkdir()
    (out / ".a_overlay.jpg.wsss-k2j4h.tmp").write_bytes(b"")  # left by a killed run
    command = ["predict", "--checkpoint", str(checkpoint), "--input", str(inputs), "--output", str(out),
               "--device", "cpu", "--no-progress", "--workers", str(workers)]
    with caplog.at_level(logging.INFO, logger="wsss"):
        assert main(command) == 1
    stdout = capsys.readouterr().out
    assert "predict: 3 image(s) written, 2 skipped (see above)" in stdout
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    for message, name in zip(warnings, ["corrupt.jpg", "empty.png"]):
        assert message.startswith(f"{inputs / name}: skipped, cannot decode image (") and "split" not in message
    ignored = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert len(ignored) == 1 and "2 entries" in ignored[0] and "notes.txt, sub/" in ignored[0]
    written = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert written == ["a.png", "a_overlay.jpg", "b.png", "b_overlay.jpg", "c.png", "c_overlay.jpg", "classes.json"]
    assert Image.open(out / "a.png").size == (44, 36)
    assert sorted(str(p) for p in tmp_path.rglob("*.tmp")) == []

    if workers == 2:
        return  # the re-runs start no pool for these few images: seen once, with one process
    # the same command again: the good images are kept, the bad ones reported again
    assert main(command) == 1
    assert "0 image(s) written, 3 kept from an earlier run, 2 skipped" in capsys.readouterr().out
    # the bad files replaced by good ones: everything is done, exit status 0
    Image.fromarray(photo(20, 30, 5)).save(inputs / "corrupt.jpg")
    Image.fromarray(photo(20, 30, 6)).save(inputs / "empty.png")
    assert main(command) == 0
    assert "2 image(s) written, 3 kept from an earlier run; masks in" in capsys.readouterr().out
    assert Image.open(out / "empty.png").size == (30, 20)
    assert sorted(str(p) for p in tmp_path.rglob("*.tmp")) == []


def test_an_unreadable_image_error_survives_the_way_back_from_a_worker_process(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(UnreadableImage) as raised:
        load_rgb(tmp_path / "bad.jpg")
    copy = pickle.loads(pickle.dumps(raised.value))
    assert str(copy) == str(raised.value) and copy.reason == raised.value.reason
    assert copy.reason.startswith("cannot decode image (") and "split" in str(copy) and "split" not in copy.reason


class _FailingJob:
    """Image 0 stops inside a write; image 1 fails while it does (one worker process each)."""

    def __init__(self, folder):
        self.folder = Path(folder)

    def __call__(self, index):
        if index == 0:
            with atomic_path(self.folder / "first.png") as tmp:
                tmp.write_bytes(b"")
                (self.folder / "writing").touch()
                time.sleep(60)
        deadline = time.monotonic() + 30
        while not (self.folder / "writing").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        raise RuntimeError("image 1 failed")


def test_a_failing_worker_leaves_no_temporary_file_of_another(tmp_path, monkeypatch):
    """The pool is terminated when a job fails: a write in progress in another worker removes its
    temporary file instead of leaving a zero-byte one behind."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="image 1 failed"):
        map_images(_FailingJob, (str(tmp_path),), [0, 1], workers=2, progress=False)
    assert (tmp_path / "writing").exists()  # the first job was writing when the pool went down
    assert sorted(p.name for p in tmp_path.iterdir()) == ["writing"]
    assert time.monotonic() - start < 45  # the writer was stopped, not waited for


# --------------------------------------------------------------------------- max_side


def network_inputs(predictor, monkeypatch):
    """The (h, w) of every batch ``predictor``'s network sees."""
    sizes = []
    forward = predictor.model.forward

    def recording(batch):
        sizes.append(tuple(batch.shape[-2:]))
        return forward(batch)

    monkeypatch.setattr(predictor.model, "forward", recording)
    return sizes


def test_max_side_bounds_what_the_network_sees_and_masks_keep_the_image_size(checkpoint, monkeypatch):
    predictor = Predictor(checkpoint, device="cpu", scales=[1.0, 1.5], max_side=48)
    sizes = network_inputs(predictor, monkeypatch)
    image = photo(150, 100)
    mask = predictor.predict(image)
    assert sizes == [(48, 32), (72, 48)] and mask.shape == (150, 100) and mask.dtype == np.uint8
    probs = predictor.probabilities(image)
    assert probs.shape == (3, 150, 100)
    np.testing.assert_allclose(probs.sum(axis=0), 1, atol=1e-5)
    np.testing.assert_array_equal(mask, probs.argmax(axis=0))  # band by band = the whole at once
    sizes.clear()
    small = photo(40, 30)
    predictor.predict(small)
    assert sizes == [(40, 30), (60, 45)]  # within max_side: as it is


def test_images_within_max_side_give_what_they_gave_without_it(checkpoint):
    assert inspect.signature(Predictor).parameters["max_side"].default == 1024
    image = photo(40, 56)
    predictor = Predictor(checkpoint, device="cpu", scales=[1.0, 1.25], flip=True, max_side=None)
    unlimited = predictor.probabilities(image), predictor.predict(image)
    predictor.max_side = 56
    limited = predictor.probabilities(image), predictor.predict(image)
    assert [a.tobytes() for a in unlimited] == [b.tobytes() for b in limited]


def test_predict_max_side_option_is_recorded_and_masks_are_full_size(checkpoint, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(photo(90, 120)).save(inputs / "wide.png")
    out = tmp_path / "out"
    command = ["predict", "--checkpoint", str(checkpoint), "--input", str(inputs), "--output", str(out),
               "--device", "cpu", "--no-progress"]
    assert main([*command, "--max-side", "32"]) == 0
    assert Image.open(out / "wide.png").size == (120, 90) and Image.open(out / "wide_overlay.jpg").size == (120, 90)
    assert json.loads((out / ".wsss-predict.json").read_text())["max_side"] == 32
    stamp = (out / "wide.png").stat().st_mtime_ns
    assert main([*command, "--max-side", "0"]) == 0  # another setting: the mask is made again
    assert json.loads((out / ".wsss-predict.json").read_text())["max_side"] is None
    assert (out / "wide.png").stat().st_mtime_ns != stamp
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main([*command, "--max-side", "8"])
    assert "--max-side" in capsys.readouterr().err


@pytest.mark.parametrize("low, high", [((7, 5), (50, 31)), ((3, 4), (3, 9)), ((16, 16), (61, 64))])
def test_banded_upsampling_is_bilinear_interpolation(low, high):
    torch.manual_seed(0)
    maps = torch.rand(3, *low)
    expected = F.interpolate(maps[None], size=high, mode="bilinear", align_corners=False)[0]
    bands = list(upsampled_rows(maps, high, budget=3 * high[1] * 4))  # four rows per band
    assert len(bands) == -(-high[0] // 4)
    torch.testing.assert_close(torch.cat([band for _, band in bands], dim=1), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(upsample(maps, high), expected.numpy(), atol=1e-6)
    # CAMs: normalised after upsampling, as normalize_cam does at full size (a class peaking below
    # its minimum peak is not blown up)
    maps[2] *= 1e-6
    cams = upsample_cams(maps, high)
    expected, _ = normalize_cam(F.interpolate(maps[None], size=high, mode="bilinear")[0], np.ones(3))
    assert cams.dtype == np.float16 and cams.shape == (3, *high)
    np.testing.assert_allclose(cams, expected.numpy(), rtol=1e-3, atol=1e-6)
    assert cams[:2].reshape(2, -1).max(axis=1).tolist() == [1, 1] and cams[2].max() < 1
    assert upsample_cams(maps[:0], high).shape == (0, *high)
