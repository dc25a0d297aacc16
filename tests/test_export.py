"""Deploying a model: ONNX and TorchScript export at any input size, the onnxruntime engine of
predict against the torch one, and outputs that say what they mean (classes.json, legends)."""

import json
import logging
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from wsss import Predictor
from wsss.cli import main
from wsss.io import VOC_PALETTE, overlay, with_legend
from wsss.models.backbone import build_backbone
from wsss.models.segmentation import SegNet
from wsss.models.ssnet import SSNet

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

CLASSES = ["background", "disc", "box", "ring"]


def _save(net, path, kind, **meta):
    torch.save({"kind": kind, "fingerprint": f"test-{kind}", "model": net.state_dict(),
                "meta": {"class_names": CLASSES, "backbone": "efficientnet_lite0", "output_stride": 16, **meta}}, path)
    return path


def _noisy(net):
    """A network whose outputs are not all zero (a fresh head is): every weight moved a little."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return net.eval()


@pytest.fixture(scope="module")
def seg_model(tmp_path_factory):
    torch.manual_seed(0)
    net = _noisy(SegNet(build_backbone("efficientnet_lite0", 16, pretrained=False), len(CLASSES), "aspp"))
    return _save(net, tmp_path_factory.mktemp("export") / "seg.pt", "segmentation", head="aspp"), net


@pytest.fixture(scope="module")
def ssnet_model(tmp_path_factory):
    torch.manual_seed(0)
    net = _noisy(SSNet(build_backbone("efficientnet_lite0", 16, pretrained=False), len(CLASSES), "aspp"))
    return _save(net, tmp_path_factory.mktemp("export") / "ssnet.pt", "ssnet", head="aspp"), net


def photo(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("size", [(97, 130), (64, 48)])
def test_onnx_export_runs_at_any_size_with_its_metadata(seg_model, tmp_path, size):
    import onnxruntime as ort

    path, net = seg_model
    out = tmp_path / "seg.onnx"
    assert main(["export", "--checkpoint", str(path), "--format", "onnx", "--out", str(out)]) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["class_names"]) == CLASSES and json.loads(meta["pixel_mean"]) == [127.0, 127.0, 127.0]
    assert meta["kind"] == "segmentation" and meta["max_side"] == "1024"
    image = torch.from_numpy(photo(*size)).permute(2, 0, 1).float()[None]
    with torch.no_grad():
        expected = net(image).numpy()
    got = session.run(None, {"image": image.numpy()})[0]
    assert got.shape == expected.shape == (1, 4, -(-size[0] // 16), -(-size[1] // 16))
    assert np.abs(got - expected).max() < 1e-4 * np.abs(expected).max()


def test_onnx_export_writes_same_padding_inside_its_convolutions(seg_model):
    """No Pad or Slice between the convolutions: onnxruntime would copy every padded input and
    reorder it out of and back into its blocked layout (the network ran 2.2x slower so)."""
    import onnx

    from wsss.export import onnx_bytes
    from wsss.models import load_model

    graph = onnx.load_from_string(onnx_bytes(load_model(seg_model[0], "cpu"))).graph
    ops = [node.op_type for node in graph.node]
    assert "Pad" not in ops and "Slice" not in ops
    same_upper = [n for n in graph.node if n.op_type == "Conv"
                  and any(a.name == "auto_pad" and a.s == b"SAME_UPPER" for a in n.attribute)]
    assert len(same_upper) == 4  # the stem and three stride-2 depthwise convolutions (the fourth dilated: stride 16)


def test_torchscript_export_keeps_any_size_and_metadata(seg_model, tmp_path):
    path, net = seg_model
    out = tmp_path / "seg.ts"
    assert main(["export", "--checkpoint", str(path), "--format", "torchscript", "--out", str(out)]) == 0
    extra = {"wsss.json": ""}
    loaded = torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(json.loads(extra["wsss.json"])["class_names"]) == CLASSES
    for size in ((80, 80), (75, 101)):  # neither is the traced size: the SAME padding follows the input
        image = torch.from_numpy(photo(*size, seed=3)).permute(2, 0, 1).float()[None]
        with torch.no_grad():
            np.testing.assert_allclose(loaded(image)[0].numpy(), net(image).numpy(), rtol=1e-5, atol=1e-5)


def test_the_onnxruntime_engine_agrees_with_torch(seg_model, ssnet_model):
    for path, _ in (seg_model, ssnet_model):
        options = dict(scales=[1.0, 1.5], flip=True, device="cpu")
        torch_engine, ort_engine = Predictor(path, **options), Predictor(path, engine="onnxruntime", **options)
        assert ort_engine.engine == "onnxruntime" and ort_engine.class_names == CLASSES
        image = photo(71, 94, seed=5)
        a, b = torch_engine.probabilities(image), ort_engine.probabilities(image)
        assert np.abs(a - b).max() < 1e-4
        assert (torch_engine.predict(image) == ort_engine.predict(image)).mean() >= 0.999
    np.testing.assert_allclose(torch_engine.saliency(image), ort_engine.saliency(image), atol=1e-4)


def test_predict_from_an_exported_file_writes_classes_and_legends(seg_model, tmp_path, caplog):
    path, _ = seg_model
    onnx_file = tmp_path / "seg.onnx"
    assert main(["export", "--checkpoint", str(path), "--out", str(onnx_file)]) == 0
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(photo(200, 240)).save(inputs / "a.png")
    (inputs / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="wsss"):
        assert main(["predict", "--checkpoint", str(onnx_file), "--input", str(inputs), "--output", str(out),
                     "--no-progress"]) == 1  # one image skipped
    table = json.loads((out / "classes.json").read_text())
    assert [row["name"] for row in table] == CLASSES + ["void"]
    assert table[2] == {"index": 2, "name": "box", "colour": VOC_PALETTE[2].tolist()} and table[-1]["index"] == 255
    speed = [r.getMessage() for r in caplog.records if "segmented in" in r.getMessage()]
    assert len(speed) == 1 and speed[0].startswith("predict: 1 images segmented in") and "onnxruntime" in speed[0]
    torch_out = tmp_path / "torch_out"
    assert main(["predict", "--checkpoint", str(path), "--input", str(inputs), "--output", str(torch_out),
                 "--no-progress", "--device", "cpu"]) == 1
    same = (np.asarray(Image.open(out / "a.png")) == np.asarray(Image.open(torch_out / "a.png"))).mean()
    assert same >= 0.999


def test_the_legend_names_the_classes_present():
    image = np.full((240, 320, 3), 90, dtype=np.uint8)
    mask = np.zeros((240, 320), dtype=np.uint8)
    mask[100:200, 150:300] = 2
    mask[10:20, 300:310] = 255
    plain = overlay(image, mask)
    legend = with_legend(plain, mask, CLASSES)
    assert legend.shape == plain.shape
    corner = legend[:40, :120].reshape(-1, 3)
    assert (corner == VOC_PALETTE[2]).all(axis=1).sum() >= 25  # the swatch of "box"
    assert not (corner == VOC_PALETTE[1]).all(axis=1).any()  # "disc" is absent: no swatch
    assert (legend[60:, 140:] == plain[60:, 140:]).all()  # the rest of the overlay is untouched
    assert (with_legend(plain, np.zeros_like(mask), CLASSES) == plain).all()  # background only: no legend


def test_a_missing_onnxruntime_is_one_line(seg_model, tmp_path, capsys, monkeypatch):
    path, _ = seg_model
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(photo(20, 20)).save(inputs / "a.png")
    assert main(["predict", "--checkpoint", str(path), "--input", str(inputs), "--output", str(tmp_path / "out"),
                 "--engine", "onnxruntime", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("wsss: error: onnxruntime is not installed; install it with `pip install 'wsss[onnx]'` "
                   "(or `pip install onnxruntime`), or use --engine torch")
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert main(["export", "--checkpoint", str(path), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "onnx is not installed; install it with `pip install 'wsss[onnx]'`" in capsys.readouterr().err


def test_the_standalone_onnx_script_gives_wsss_masks(seg_model, tmp_path):
    """examples/onnx_predict.py (onnxruntime, numpy and Pillow only, as the README shows it)."""
    import subprocess
    from pathlib import Path

    path, _ = seg_model
    onnx_file = tmp_path / "seg.onnx"
    assert main(["export", "--checkpoint", str(path), "--out", str(onnx_file)]) == 0
    Image.fromarray(photo(150, 203, seed=7)).save(tmp_path / "photo.png")
    script = Path(__file__).resolve().parents[1] / "examples" / "onnx_predict.py"
    subprocess.run([sys.executable, str(script), str(onnx_file), str(tmp_path / "photo.png"), str(tmp_path / "mask.png")],
                   check=True, capture_output=True)
    mask = np.asarray(Image.open(tmp_path / "mask.png"))
    expected = Predictor(path, device="cpu").predict(photo(150, 203, seed=7))
    assert mask.shape == expected.shape and (mask == expected).mean() >= 0.999


def test_eval_seg_takes_single_scale_from_the_multiscale_pass(seg_model):
    """eval-seg's single-scale probabilities, taken from the ms + flip pass at scale 1, equal the
    plain single-scale pass to float noise, and the multi-scale ones are the plain ones."""
    from wsss.inference.scoring import single_and_multiscale

    path, _ = seg_model
    image = photo(61, 90, seed=5)
    predictor = Predictor(path, device="cpu", max_side=None)
    single, multi = single_and_multiscale(predictor, image, [0.75, 1.0, 1.25])
    plain_single = Predictor(path, device="cpu", max_side=None).probabilities(image)
    plain_multi = Predictor(path, device="cpu", scales=[0.75, 1.0, 1.25], flip=True, max_side=None).probabilities(image)
    assert single.shape == multi.shape == (len(CLASSES), 61, 90)
    np.testing.assert_allclose(single, plain_single, atol=1e-5)
    np.testing.assert_allclose(multi, plain_multi, atol=1e-6)
    # scales without 1: the single-scale pass runs on its own
    single, _ = single_and_multiscale(predictor, image, [0.75, 1.25])
    np.testing.assert_allclose(single, plain_single, atol=1e-6)
