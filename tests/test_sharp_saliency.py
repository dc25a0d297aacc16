"""Sharp saliency: the order of upsampling and aggregation, the two-label
saliency CRF, SSNet's low-level skip head and the inference options of eval-saliency / predict."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from wsss.cli import main
from wsss.config import SsnetStageConfig
from wsss.engine.checkpoint import training_settings as stage_settings
from wsss.errors import WsssError
from wsss.inference import image_tensor, multiscale_sum, shrink_to_max_side, upsample
from wsss.inference.saliency import saliency_at, saliency_crf, saliency_map
from wsss.models import build_model, load_model
from wsss.models.build import deeplab_options as model_options
from wsss.ssnet.eval_saliency import variant_name

CLASSES = ["background", "disc", "box"]


def square(size=64, top=13, left=19, side=32):
    """(size, size) float mask with a ``side`` px square (not aligned to an 8 px grid)."""
    mask = np.zeros((size, size), dtype=np.float32)
    mask[top: top + side, left: left + side] = 1.0
    return mask


def mae(saliency, mask):
    return float(np.abs(np.asarray(saliency, dtype=np.float64) - mask).mean())


# ------------------------------------------------------------------ upsampling before / after


def step_logits(cells=4, margin=8.0):
    """(1, 2, cells, cells) logits: the left half of the cells confidently class 1, the rest background."""
    fg = torch.full((cells, cells), -margin)
    fg[:, : cells // 2] = margin
    return torch.stack([torch.zeros(cells, cells), fg])[None]


def test_logits_order_is_sharper_than_map_order():
    logits, v_logits = step_logits(), torch.tensor([[10.0]])  # v ~ 1: S = H_1
    size = (32, 32)  # stride 8
    truth = np.zeros(size, dtype=np.float32)
    truth[:, :16] = 1.0
    late = saliency_at(logits, v_logits, size, "map")[0].numpy()
    early = saliency_at(logits, v_logits, size, "logits")[0].numpy()
    assert late.shape == early.shape == size and 0 <= early.min() and early.max() <= 1
    assert not np.allclose(late, early)
    # the map's ramp spans a whole cell (8 px); through the softmax it is ~2 px wide
    uncertain = [int(((m > 0.1) & (m < 0.9)).sum(axis=1)[0]) for m in (late, early)]
    assert uncertain[0] >= 6 and uncertain[1] <= 2
    assert mae(early, truth) < 0.5 * mae(late, truth)


def test_both_orders_agree_at_full_size_and_map_order_is_the_old_map():
    torch.manual_seed(0)
    logits, v_logits = torch.randn(2, 4, 9, 7), torch.randn(2, 3)
    same = [saliency_at(logits, v_logits, (9, 7), order) for order in ("map", "logits")]
    assert torch.equal(same[0], same[1]) and torch.equal(same[0], saliency_map(logits, v_logits))
    old = F.interpolate(saliency_map(logits, v_logits)[:, None], size=(20, 15), mode="bilinear", align_corners=False)
    assert torch.equal(saliency_at(logits, v_logits, (20, 15), "map"), old[:, 0])
    with pytest.raises(ValueError, match="upsample must be one of"):
        saliency_at(logits, v_logits, (20, 15), "nearest")


# -------------------------------------------------------------------------------- saliency CRF


def test_saliency_crf_sharpens_a_blurred_map():
    mask = square()
    image = np.where(mask[..., None] > 0, 220, 30).astype(np.uint8).repeat(3, axis=2)
    image = np.clip(image + np.random.default_rng(0).integers(-10, 10, image.shape), 0, 255).astype(np.uint8)
    # a stride-8 map: the mask averaged over 8x8 cells, upsampled bilinearly
    coarse = F.avg_pool2d(torch.from_numpy(mask)[None, None], 8)
    blurred = F.interpolate(coarse, size=mask.shape, mode="bilinear", align_corners=False)[0, 0].numpy()
    refined = saliency_crf(image, blurred)
    assert refined.shape == mask.shape and refined.dtype == np.float32
    assert 0 <= refined.min() and refined.max() <= 1
    assert mae(refined, mask) < 0.5 * mae(blurred, mask)
    # the map is normalised first: a map that peaks below 1 (v_i < 1) is refined the same way
    np.testing.assert_allclose(saliency_crf(image, 0.1 + 0.6 * blurred), refined, atol=1e-4)
    # PSA's settings (10 iterations) work through the same function
    assert mae(saliency_crf(image, blurred, iterations=10, bilateral_srgb=13, bilateral_compat=10), mask) < mae(blurred, mask)


# ------------------------------------------------------------------------------- skip head


def random_ssnet(head_skip):
    """An SSNet at stride 16 with random head weights (ASPP starts at zero: a constant map)."""
    torch.manual_seed(0)
    model = build_model("ssnet", "efficientnet_lite0", 16, len(CLASSES), "aspp", [2, 4], pretrained=False,
                        options={"head_skip": head_skip} if head_skip else None)
    with torch.no_grad():
        for conv in model.head.branches:
            conv.weight.normal_(std=0.02)
        if head_skip:
            model.skip.fuse.weight.normal_(std=0.05)
    return model.eval()


def save_ssnet(model, path, options=None):
    meta = {"class_names": CLASSES, "backbone": "efficientnet_lite0", "output_stride": 16, "head": "aspp",
            "rates": [2, 4], "stage": 1}
    if options is not None:
        meta["options"] = options
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"kind": "ssnet", "fingerprint": "test", "model": model.state_dict(), "meta": meta}, path)
    return path


def test_skip_head_gives_stride_4_logits_and_starts_as_the_plain_head():
    torch.manual_seed(0)
    model = build_model("ssnet", "efficientnet_lite0", 16, len(CLASSES), "aspp", [2, 4], pretrained=False,
                        options={"head_skip": True}).eval()
    with torch.no_grad():
        for conv in model.head.branches:
            conv.weight.normal_(std=0.02)
        images = torch.rand(2, 3, 64, 96) * 255
        logits, v = model(images)
        levels = model.backbone(images)
        plain = F.interpolate(model.head(levels[-1]), size=levels[0].shape[-2:], mode="bilinear", align_corners=False)
    assert logits.shape == (2, 3, 16, 24) and v.shape == (2, 2)
    torch.testing.assert_close(logits, plain)  # the fuse conv is zero-initialised
    skip = {id(p) for p in model.skip.parameters()}
    groups = model.param_groups()
    assert skip <= {id(p) for p in groups["new"]} and not skip & {id(p) for p in groups["pretrained"]}


def test_skip_head_round_trips_through_load_model(tmp_path):
    model = random_ssnet(head_skip=True)
    path = save_ssnet(model, tmp_path / "skip" / "model.pt", {"head_skip": True})
    loaded = load_model(path, "cpu", "ssnet")
    assert loaded.model.skip is not None and loaded.meta["options"] == {"head_skip": True}
    images = torch.rand(1, 3, 48, 64) * 255
    with torch.no_grad():
        for a, b in zip(model(images), loaded.model(images)):
            torch.testing.assert_close(a, b)
    # files of before the option (no "options" in meta) are plain SSNets
    old = save_ssnet(random_ssnet(head_skip=False), tmp_path / "old" / "model.pt")
    assert load_model(old, "cpu", "ssnet").model.skip is None
    with pytest.raises(WsssError, match="no option.*sharpness.*update wsss"):
        load_model(save_ssnet(model, tmp_path / "new" / "model.pt", {"sharpness": 2}), "cpu", "ssnet")


def test_added_keys_enter_the_fingerprint_only_when_set():
    plain, skip = SsnetStageConfig(), SsnetStageConfig(head_skip=True, saliency_per_sample=2)
    # the defaults are left out: configs written before the keys keep their fingerprints
    added = {"head_skip", "saliency_per_sample"}
    assert not added & set(stage_settings(plain))
    assert stage_settings(plain) == {k: v for k, v in plain.model_dump(mode="json").items() if k not in added}
    assert stage_settings(skip)["head_skip"] is True and stage_settings(skip)["saliency_per_sample"] == 2
    assert model_options(plain) == {"head_skip": False} and model_options(skip) == {"head_skip": True}


def test_stage_two_from_stage_one_needs_the_same_head(tmp_path):
    from wsss.ssnet.train import check_same_head

    stage1 = save_ssnet(random_ssnet(head_skip=True), tmp_path / "ssnet1" / "model.pt", {"head_skip": True})
    check_same_head(stage1, SsnetStageConfig(head_skip=True))
    with pytest.raises(WsssError, match="trained with head_skip True, but ssnet.stage2.head_skip is False"):
        check_same_head(stage1, SsnetStageConfig())
    check_same_head(save_ssnet(random_ssnet(head_skip=False), tmp_path / "old" / "model.pt"), SsnetStageConfig())


# ------------------------------------------------------------------ Predictor / CLI options


@pytest.fixture(scope="module")
def skip_run(tmp_path_factory):
    """A run directory whose final SSNet (random weights, with the skip head) sees <= 48 px."""
    run_dir = tmp_path_factory.mktemp("sharp") / "run"
    path = save_ssnet(random_ssnet(head_skip=True), run_dir / "ssnet2" / "model.pt", {"head_skip": True})
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"device": "cpu", "pipeline": "ssnet",
                                                         "ssnet": {"eval_long_side": 48}}))
    return path


def test_predictor_default_saliency_is_the_old_map_and_options_keep_the_size(skip_run):
    from wsss import Predictor

    image = np.random.default_rng(1).integers(0, 255, (70, 90, 3), dtype=np.uint8)
    default = Predictor(skip_run, device="cpu", scales=[1.0, 0.75], flip=True, max_side=48)
    # the map the Predictor made before the options: aggregated at stride, averaged, upsampled
    tensor = shrink_to_max_side(image_tensor(image, torch.device("cpu")), 48)
    with torch.no_grad():
        summed = multiscale_sum(lambda b: saliency_map(*default.model(b))[:, None], tensor, [1.0, 0.75], True)
    old = upsample((summed / 4)[:1].clamp(0, 1), image.shape[:2])[0]
    np.testing.assert_array_equal(default.saliency(image), old)
    for order, crf in (("logits", False), ("map", True), ("logits", True)):
        saliency = Predictor(skip_run, device="cpu", scales=[1.0, 0.75], flip=True, max_side=48,
                             saliency_upsample=order, saliency_crf=crf).saliency(image)
        assert saliency.shape == (70, 90) and saliency.dtype == np.float32
        assert 0 <= saliency.min() and saliency.max() <= 1 and not np.array_equal(saliency, old)
    with pytest.raises(WsssError, match="saliency_upsample must be one of map, logits"):
        Predictor(skip_run, device="cpu", saliency_upsample="late")


def test_eval_saliency_scales_flip_crf_and_order_make_a_named_variant(skip_run, tmp_path, capsys):
    data = tmp_path / "bench"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    for n, (h, w) in enumerate([(40, 56), (52, 44)]):
        mask = np.zeros((h, w), dtype=np.uint8)
        mask[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 255
        Image.fromarray(np.where(mask[..., None] > 0, 200, 40).repeat(3, axis=2).astype(np.uint8)).save(
            data / "images" / f"im{n}.jpg")
        Image.fromarray(mask).save(data / "masks" / f"im{n}.png")
    assert variant_name([1.0], False) == "single-scale"
    assert variant_name([0.75, 1.0], True) == "multi-scale+flip"  # eval-ssnet's name
    run_dir = skip_run.parents[1]
    assert main(["eval-saliency", "--checkpoint", str(skip_run), "--data", str(data), "--scales", "1", "0.75",
                 "--flip", "--saliency-crf", "--set", "ssnet.saliency_upsample=logits", "--no-progress"]) == 0
    assert "multi-scale+flip+logits+crf" in capsys.readouterr().out
    saved = json.loads((run_dir / "eval" / "saliency_ssnet2_multi-scale+flip+logits+crf.json").read_text())
    assert saved["settings"] == {**saved["settings"], "scales": [1.0, 0.75], "flip": True,
                                 "saliency_upsample": "logits", "saliency_crf": True}
    scores = json.loads((run_dir / "summary.json").read_text())["ssnet2/saliency/bench"]
    assert set(scores) == {"multi-scale+flip+logits+crf"} and scores["multi-scale+flip+logits+crf"]["num_images"] == 2
    # the default variant is scored beside it, under its own name
    assert main(["eval-saliency", "--checkpoint", str(skip_run), "--data", str(data), "--no-progress"]) == 0
    scores = json.loads((run_dir / "summary.json").read_text())["ssnet2/saliency/bench"]
    assert set(scores) == {"multi-scale+flip+logits+crf", "single-scale"}
    assert (run_dir / "eval" / "saliency_ssnet2.json").exists()


def test_predict_saliency_options(skip_run, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)).save(inputs / "a.jpg")
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(skip_run), "--input", str(inputs), "--output", str(out),
                 "--saliency-crf", "--saliency-upsample", "logits", "--no-progress"]) == 0
    assert Image.open(out / "a_saliency.png").size == (53, 37)
    record = json.loads((out / ".wsss-predict.json").read_text())
    assert record["saliency_upsample"] == "logits" and record["saliency_crf"] is True
