"""SSNet: the saliency aggregation, the three losses, saliency metrics, and a tiny joint run."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from quality import assert_beats
from tiny_run import untrained_twin

from wsss.cli import main
from wsss.data.demo import generate_demo_saliency
from wsss.data.saliency import MixedCrops, SaliencyDataset, saliency_partner, split_holdout
from wsss.inference.saliency import saliency_map
from wsss.models.backbone import build_backbone
from wsss.models.ssnet import SSNet
from wsss.ssnet.losses import classification_loss, pseudo_label_loss, restricted_probabilities, saliency_loss
from wsss.ssnet.mine import saliency_guided_probabilities


def logits_of(probs):
    """Logits whose softmax over dim 1 is ``probs``."""
    return torch.log(torch.tensor(probs, dtype=torch.float64))


def logit(p):
    return math.log(p / (1 - p))


# Two pixels, background + 2 classes: H(pixel 0) = (0.2, 0.5, 0.3), H(pixel 1) = (0.7, 0.1, 0.2)
H = [[[[0.2, 0.7]], [[0.5, 0.1]], [[0.3, 0.2]]]]   # (1, 3, 1, 2)
V = [0.8, 0.1]
S = [0.5 * 0.8 + 0.3 * 0.1, 0.1 * 0.8 + 0.2 * 0.1]  # 0.43, 0.10


def test_aggregation_is_sum_of_v_times_class_maps():
    v_logits = torch.tensor([[logit(v) for v in V]], dtype=torch.float64)
    out = saliency_map(logits_of(H), v_logits)
    assert out.shape == (1, 1, 2)
    np.testing.assert_allclose(out[0, 0].numpy(), S, rtol=1e-12)


@pytest.mark.parametrize("negative", ["background", "complement"])
def test_saliency_loss_is_the_log_likelihood(negative):
    v_logits = torch.tensor([[logit(v) for v in V]], dtype=torch.float64)
    # pixel 0 salient, pixel 1 not salient; a third pixel is padding and must not count
    logits = torch.cat([logits_of(H), logits_of([[[[0.1]], [[0.1]], [[0.8]]]])], dim=3)
    target = torch.tensor([[[1, 0, 255]]])
    loss = saliency_loss(logits, v_logits, target, negative)
    not_salient = 0.7 if negative == "background" else 1 - S[1]
    assert loss.item() == pytest.approx(-(math.log(S[0]) + math.log(not_salient)) / 2, rel=1e-10)


def test_saliency_loss_stays_finite_when_saliency_underflows():
    logits = torch.tensor([[[[0.0]], [[-200.0]], [[-200.0]]]], requires_grad=True)  # S ~ e^-200, 0 in float32
    v_logits = torch.zeros(1, 2, requires_grad=True)
    loss = saliency_loss(logits, v_logits, torch.tensor([[[1]]]))
    assert torch.isfinite(loss) and loss.item() == pytest.approx(200.0, abs=1e-3)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(v_logits.grad).all()
    assert saliency_loss(logits, v_logits, torch.full((1, 1, 1), 255)).item() == 0.0


def test_classification_loss_pools_logits_then_sigmoid_cross_entropy():
    # class maps: background anything, class 1 mean 2.0, class 2 mean -1.0
    logits = torch.tensor([[[[5.0, -5.0]], [[1.0, 3.0]], [[-1.5, -0.5]]]])
    labels = torch.tensor([[1.0, 0.0]])
    expected = (-math.log(1 / (1 + math.exp(-2.0))) - math.log(1 - 1 / (1 + math.exp(1.0)))) / 2
    assert classification_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_pseudo_label_loss_is_cross_entropy_ignoring_void():
    logits = logits_of(H).float()
    target = torch.tensor([[[1, 255]]])
    assert pseudo_label_loss(logits, target).item() == pytest.approx(-math.log(0.5), rel=1e-6)


def test_restricted_probabilities_drop_absent_classes():
    logits = torch.tensor([[[[0.0]], [[2.0]], [[1.0]], [[3.0]]]])  # bg + 3 classes, one pixel
    probs = restricted_probabilities(logits, torch.tensor([[0.0, 1.0, 0.0]]))[0, :, 0, 0]
    kept = torch.softmax(torch.tensor([0.0, 1.0]), 0)
    torch.testing.assert_close(probs, torch.tensor([kept[0], 0.0, kept[1], 0.0]))
    none = restricted_probabilities(logits, torch.zeros(1, 3))[0, :, 0, 0]
    torch.testing.assert_close(none, torch.tensor([1.0, 0.0, 0.0, 0.0]))


def test_saliency_guided_mining_lets_saliency_split_object_from_background():
    # one pixel, background + 2 classes: the segmentation says background (0.6), saliency says object (0.9)
    probs = torch.tensor([0.6, 0.3, 0.1])[None, :, None, None]
    saliency = torch.tensor([[[0.9]]])
    full = saliency_guided_probabilities(probs, saliency, 1.0)[0, :, 0, 0]
    torch.testing.assert_close(full, torch.tensor([0.1, 0.9 * 0.75, 0.9 * 0.25]))  # classes keep their 3:1 split
    half = saliency_guided_probabilities(probs, saliency, 0.5)[0, :, 0, 0]
    torch.testing.assert_close(half, 0.5 * probs[0, :, 0, 0] + 0.5 * full)
    assert half.sum().item() == pytest.approx(1.0) and full.argmax() == 1 and probs.argmax() == 0
    assert saliency_guided_probabilities(probs, saliency, 0.0) is probs


def test_mixed_crops_carry_k_distinct_saliency_crops(tiny_dataset, tmp_path):
    from wsss.config import SsnetStageConfig
    from wsss.data.crops import AugmentedCrops
    from wsss.data.transforms import JointAugment
    from wsss.data.voc import VocDataset

    root = generate_demo_saliency(tmp_path / "sal", 6, 64, seed=2)
    saliency = SaliencyDataset(root, sorted(p.stem for p in (root / "masks").glob("*.png")))
    augment = JointAugment.from_config(SsnetStageConfig(resize_long=[64, 64], crop_size=48))
    seg = AugmentedCrops(VocDataset(tiny_dataset, "train"), augment, 0, image_labels=True)
    one, three = MixedCrops(seg, saliency, augment, 0), MixedCrops(seg, saliency, augment, 0, per_sample=3)
    sample = three[5]
    assert sample["sal_image"].shape == (3, 3, 48, 48) and sample["sal_target"].shape == (3, 48, 48)
    assert len({tuple(sample["sal_image"][j].flatten()[:200].tolist()) for j in range(3)}) == 3
    # k = 1 is the reference pairing, unchanged
    assert one[5]["sal_image"].shape == (1, 3, 48, 48)
    torch.testing.assert_close(one[5]["sal_image"][0], MixedCrops(seg, saliency, augment, 0)[5]["sal_image"][0])
    # the saliency-only network's samples: no segmentation set; an epoch is one pass over the
    # saliency set (6 images, 3 a sample), each image once, the first epoch's crops as above
    alone = MixedCrops(None, saliency, augment, 0, per_sample=3)
    assert len(alone) == 2 and set(alone[1]) == {"sal_image", "sal_target"}
    torch.testing.assert_close(alone[1]["sal_image"], three[1]["sal_image"], rtol=0, atol=0)
    torch.testing.assert_close(alone[1]["sal_target"], three[1]["sal_target"], rtol=0, atol=0)
    partners = [saliency_partner(slot, 1, 6, 6, 0) for slot in range(6)]
    assert sorted(partners) == list(range(6))
    alone.set_epoch(1)
    firsts = {tuple(alone[i]["sal_image"][j].flatten()[:200].tolist()) for i in range(2) for j in range(3)}
    assert len(firsts) == 6


def test_ssnet_gives_class_logits_and_one_score_per_foreground_class():
    net = SSNet(build_backbone("efficientnet_lite0", 16, pretrained=False), 6).eval()
    with torch.no_grad():
        logits, v = net(torch.rand(2, 3, 64, 96) * 255)
        _, v_big = net(torch.rand(1, 3, 128, 80) * 255)
    assert logits.shape == (2, 6, 4, 6) and v.shape == (2, 5) and v_big.shape == (1, 5)


def test_saliency_only_network_runs_the_saliency_crops_alone():
    from wsss.ssnet.train import SsnetLoss
    torch.manual_seed(0)
    net = SSNet(build_backbone("efficientnet_lite0", 16, pretrained=False), 4).eval()
    seen = []
    net.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    target = (torch.rand(3, 1, 64, 64) > 0.5).long()
    sal = {"sal_image": torch.rand(3, 1, 3, 64, 64) * 255, "sal_target": target}
    batch = {"image": torch.rand(2, 3, 64, 64) * 255, "label": torch.tensor([[1.0, 0, 0], [0, 1, 0]]), **sal}
    with torch.no_grad():
        joint, joint_stats = SsnetLoss(1.0, 1.0, 0.0, "background", with_pseudo=False)(net, batch)
        alone, stats = SsnetLoss(0.0, 1.0, 0.0, "background", with_pseudo=False)(net, sal)  # no dataset crop in it
        logits, v_logits = net(batch["sal_image"].flatten(0, 1))
    assert seen[:2] == [5, 3]  # the joint loss runs 2 + 3 crops, the saliency-only one the 3 saliency crops
    expected = saliency_loss(torch.nn.functional.interpolate(logits, size=(64, 64), mode="bilinear", align_corners=False),
                             v_logits, target.flatten(0, 1))
    torch.testing.assert_close(alone, expected)
    assert stats["loss_cls"] == 0.0 and joint_stats["loss_cls"] > 0
    assert joint.item() == pytest.approx(joint_stats["loss_cls"] + stats["loss_sal"], rel=1e-4)


def test_saliency_split_and_pairing_are_deterministic_and_even():
    ids = [f"img{i:03d}" for i in range(23)]
    train, held = split_holdout(list(reversed(ids)), 5)
    assert held == ["img004", "img009", "img014", "img019"] and not set(train) & set(held)
    assert len(train) + len(held) == 23
    assert split_holdout(ids, 0) == (ids, [])
    # over 3 epochs of 10 segmentation samples, each of 6 saliency images is used 5 times
    partners = [saliency_partner(i, e, 10, 6, seed=0) for e in range(3) for i in range(10)]
    assert np.bincount(partners, minlength=6).tolist() == [5] * 6
    assert partners == [saliency_partner(i, e, 10, 6, seed=0) for e in range(3) for i in range(10)]


def test_joint_run_trains_both_stages_and_scores_them(ssnet_run, tiny_dataset, tmp_path):
    run_dir, common = ssnet_run
    for stage, terms in ((1, {"loss_cls", "loss_sal"}), (2, {"loss_cls", "loss_sal", "loss_seg"})):
        log = [json.loads(line) for line in (run_dir / f"ssnet{stage}" / "train_log.jsonl").read_text().splitlines()]
        assert len(log) == 4 * (2 if stage == 1 else 1)  # 32 images / batch 8 per epoch
        assert terms <= set(log[0]) and all(math.isfinite(r["loss"]) for r in log)
    log1 = [json.loads(line) for line in (run_dir / "ssnet1" / "train_log.jsonl").read_text().splitlines()]
    first, last = log1[0]["loss_sal"], np.mean([r["loss_sal"] for r in log1[-3:]])
    assert_beats("SSNet stage 1: saliency loss of the last 3 steps below the first's (1 - last / first)",
                 1 - last / first, 0, 0.1)

    split = json.loads((run_dir / "ssnet" / "saliency_split.json").read_text())
    assert len(split["held_out"]) == 3 and len(split["train"]) == 12

    # pseudo labels only use background and the image's own classes
    from wsss.data.voc import VocDataset

    voc = VocDataset(tiny_dataset, "train")
    for index in range(len(voc)):
        for kind in ("seg", "crf"):
            label_map = np.asarray(Image.open(run_dir / "ssnet_pseudo" / "stage1" / "train" / kind / f"{voc.ids[index]}.png"))
            allowed = {0} | {k + 1 for k in np.flatnonzero(voc.labels[index])}
            assert set(np.unique(label_map)) <= allowed

    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("ssnet1/pseudo_seg/train", "ssnet1/pseudo_crf/train", "ssnet2/seg/val"):
        assert 0 <= summary[key]["miou"] <= 100, key
    result = json.loads((run_dir / "eval" / "ssnet2_val.json").read_text())
    assert set(result["miou"]) == {"single-scale", "multi-scale+flip"}
    # the held-out part of the training set and the benchmark, each single-scale and multi-scale + flip
    assert set(result["saliency"]) == {"held-out", "bench"}
    for name, count in (("held-out", 3), ("bench", 4)):
        for variant in result["saliency"][name].values():
            assert variant["num_images"] == count
            assert all(0 <= variant[k] <= 1 for k in ("max_f", "mae", "s_measure", "mean_e"))
    assert summary["ssnet2/saliency"] == result["saliency"]["held-out"]
    assert summary["ssnet2/saliency/bench"] == result["saliency"]["bench"]
    # the objects are salient and distinct: even this short run must beat calling everything salient
    # (F of "all salient" is at most 1.3 p / (0.3 p + 1) with p the salient share, < 0.3 here)
    untrained_run = tmp_path / "untrained_run"
    shutil.copytree(run_dir, untrained_run, ignore=shutil.ignore_patterns("eval", "ssnet_pseudo"))
    twin = untrained_twin(run_dir / "ssnet2" / "model.pt", tmp_path / "untrained.pt")
    assert main(["eval-ssnet", *common[:2], "--run-dir", str(untrained_run), "--no-progress", "--stage", "2",
                 "--checkpoint", str(twin)]) == 0
    untrained = json.loads((untrained_run / "eval" / "ssnet2_val.json").read_text())["saliency"]["held-out"]
    assert_beats("SSNet saliency max F on held-out (reference: everything salient, F < 0.3)",
                 result["saliency"]["held-out"]["multi-scale+flip"]["max_f"], 0.3, 0.1,
                 untrained=untrained["multi-scale+flip"]["max_f"])

    # finished work is skipped on a re-run
    model = run_dir / "ssnet2" / "model.pt"
    stamp = model.stat().st_mtime_ns
    assert main(["train-ssnet", *common, "--stage", "2"]) == 0
    assert model.stat().st_mtime_ns == stamp


def test_predict_writes_saliency_maps_for_an_ssnet(ssnet_run, tmp_path):
    run_dir, _ = ssnet_run
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (37, 53, 3), dtype=np.uint8)).save(inputs / "odd.jpg")
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(run_dir / "ssnet2" / "model.pt"), "--input", str(inputs),
                 "--output", str(out), "--no-progress"]) == 0
    saliency = Image.open(out / "odd_saliency.png")
    assert saliency.mode == "L" and saliency.size == (53, 37)
    assert Image.open(out / "odd.png").mode == "P"

    from wsss import Predictor

    # shrunk to 40 px for the network (tests/test_predict.py), the map at the image's size
    predictor = Predictor(run_dir / "ssnet2" / "model.pt", device="cpu", scales=[1.0, 1.5], max_side=40)
    small = predictor.saliency(np.zeros((80, 60, 3), dtype=np.uint8))
    assert small.shape == (80, 60) and 0 <= small.min() and small.max() <= 1


def test_stage_two_needs_mined_labels(tmp_path, tiny_dataset, capsys):
    config = {"device": "cpu", "data": {"root": str(tiny_dataset)},
              "ssnet": {"saliency": {"root": str(tmp_path / "sal"), "demo": {"num_images": 6, "image_size": 64}}}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train-ssnet", "--config", str(path), "--run-dir", str(tmp_path / "run"), "--stage", "2"]) == 2
    assert "make-ssnet-pseudo --stage 1" in capsys.readouterr().err


def test_missing_saliency_data_is_a_clear_error(tmp_path, tiny_dataset, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"device": "cpu", "data": {"root": str(tiny_dataset)},
                                    "ssnet": {"saliency": {"root": str(tmp_path / "nowhere")}}}))
    assert main(["train-ssnet", "--config", str(path), "--run-dir", str(tmp_path / "run"), "--stage", "1"]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "images/ and masks/" in err


@pytest.mark.parametrize("name", ["ssnet_msrc", "ssnet_voc12", "ssnet_demo"])
def test_shipped_ssnet_configs_validate(name):
    from wsss.config import load_config

    cfg = load_config(Path(__file__).parents[1] / "configs" / f"{name}.yaml")
    assert cfg.pipeline == "ssnet"


def test_step_schedule_is_the_reference_codes():
    from wsss.config import SsnetStageConfig
    from wsss.ssnet.train import lr_schedule

    assert lr_schedule(SsnetStageConfig(lr_decay="poly")) is None  # the engine's poly decay
    step = lr_schedule(SsnetStageConfig(lr_decay="step", step_every=2000, step_gamma=0.1))
    assert [step(s, 10_000) for s in (0, 1999, 2000, 4500)] == pytest.approx([1.0, 1.0, 0.1, 0.01])
