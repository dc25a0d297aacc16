"""Saliency scores as the field reports them (max F, MAE, S-measure, mean E-measure, by
pysodmetrics) and `wsss eval-saliency` on small generated folders."""

import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from wsss.cli import main
from wsss.config import load_config
from wsss.errors import WsssError
from wsss.metrics import SaliencyScores, saliency_levels


def f_beta(precision, recall, beta2=0.3):
    return (1 + beta2) * precision * recall / (beta2 * precision + recall)


def scores_of(*pairs):
    scores = SaliencyScores()
    for saliency, mask in pairs:
        scores.add(saliency, mask)
    return scores.result()


def square_mask(size=64):
    """(size, size) uint8 0/255 mask with a salient square of a quarter of the pixels."""
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[size // 8: size // 8 + size // 2, size // 4: size // 4 + size // 2] = 255
    return mask


def test_a_perfect_map_scores_max_f_1_mae_0_s_1():
    mask = square_mask(64)
    result = scores_of((mask / 255.0, mask))
    assert result["max_f"] == 1.0 and result["mae"] == 0.0 and result["num_images"] == 1
    assert result["s_measure"] == pytest.approx(1.0, abs=1e-4)
    # mean E averages the E-measure over the 256 thresholds "level >= t": at t = 1..255 the map
    # is the mask (E = N / (N - 1), Fan et al.'s normalisation); at t = 0 every pixel is called
    # salient and each pixel's alignment term is 0, so E = (0 + 1)^2 / 4 = 1/4 per pixel
    n = mask.size
    assert result["mean_e"] == pytest.approx(round((255 + 0.25) / 256 * n / (n - 1), 4), abs=1e-4)
    inverted = scores_of((1 - mask / 255.0, mask))
    assert inverted["mae"] == 1.0 and inverted["s_measure"] == pytest.approx(0.0, abs=1e-4)
    assert inverted["mean_e"] < 0.01


def test_max_f_and_mae_by_hand():
    mask = np.zeros((4, 4), dtype=np.uint8)
    mask[:2, :2] = 255  # 4 of 16 pixels salient
    saliency = mask / 255.0
    saliency[3, 2:] = 1.0  # two false positives
    result = scores_of((saliency, mask))
    # any threshold above 0: 6 pixels called salient, 4 of them right: P = 2/3, R = 1
    assert result["max_f"] == pytest.approx(f_beta(2 / 3, 1.0), abs=1e-4)
    assert result["max_f"] == pytest.approx(0.7222, abs=1e-4)
    assert result["mae"] == pytest.approx(2 / 16, abs=1e-4)

    # a flat map is not min-max normalised (max = min): level 128 everywhere, every pixel salient
    flat = scores_of((np.full((4, 4), 0.5), mask))
    level = 128 / 255
    assert flat["mae"] == pytest.approx((12 * level + 4 * (1 - level)) / 16, abs=1e-4)
    assert flat["max_f"] == pytest.approx(f_beta(0.25, 1.0), abs=1e-4)


def test_max_f_is_the_best_threshold_of_the_mean_per_image_f_curve():
    mask = np.zeros((4, 4), dtype=np.uint8)
    mask[:2, :2] = 255
    with_false_positives = mask / 255.0
    with_false_positives[3, 2:] = 1.0
    result = scores_of((with_false_positives, mask), (mask / 255.0, mask))
    # Fan et al.'s toolbox: F per image, averaged, then the best threshold: (0.7222 + 1) / 2,
    # not the F of the averaged precision and recall (P = 5/6, R = 1: 0.8667)
    assert result["max_f"] == pytest.approx((f_beta(2 / 3, 1.0) + 1) / 2, abs=1e-4)
    assert abs(result["max_f"] - f_beta(5 / 6, 1.0)) > 1e-3
    assert result["mae"] == pytest.approx((2 / 16 + 0) / 2, abs=1e-4)


def test_a_map_scores_as_its_saved_png_and_is_normalised_per_image():
    rng = np.random.default_rng(0)
    mask = square_mask(32)
    saliency = np.clip(mask / 255.0 * 0.7 + rng.random((32, 32)) * 0.3, 0, 1)
    as_float = scores_of((saliency, mask))
    assert as_float == scores_of((saliency_levels(saliency), mask))  # the uint8 map `wsss predict` writes
    assert saliency_levels(np.array([[0.0, 0.5, 1.0, 1.2]])).tolist() == [[0, 128, 255, 255]]
    # the protocol stretches each map to [0, 1] first: a map half as bright scores the same
    assert scores_of((saliency_levels(saliency) // 2 * 2, mask))["max_f"] == pytest.approx(as_float["max_f"], abs=0.01)
    with pytest.raises(ValueError, match="differ in shape"):
        SaliencyScores().add(saliency, mask[:16])


# --------------------------------------------------------------------------------------
# wsss eval-saliency
# --------------------------------------------------------------------------------------

CLASSES = ["background", "disc", "box"]
SIZES = [(48, 64), (64, 40), (56, 56)]  # (H, W): not square, not the network's size


def write_saliency_set(root, sizes=SIZES, seed=0):
    """images/<id>.jpg + masks/<id>.png (0/255): a bright rectangle on a dark noisy background."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for n, (h, w) in enumerate(sizes):
        mask = np.zeros((h, w), dtype=np.uint8)
        mask[h // 4: 3 * h // 4, w // 5: 3 * w // 5] = 255
        image = (rng.integers(0, 60, (h, w, 3)) + (mask[..., None] > 0) * 180).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"im{n}.jpg")
        Image.fromarray(mask).save(root / "masks" / f"im{n}.png")
    return root


@pytest.fixture(scope="module")
def ssnet_checkpoint(tmp_path_factory):
    """An untrained SSNet (random weights: its maps are arbitrary but fixed) as a run's final
    model, ``<run>/ssnet2/model.pt``, beside the run's config.yaml (network input <= 32 px)."""
    from wsss.models import build_model

    run_dir = tmp_path_factory.mktemp("sal_run") / "run"
    (run_dir / "ssnet2").mkdir(parents=True)
    torch.manual_seed(0)
    model = build_model("ssnet", "efficientnet_lite0", 16, len(CLASSES), "aspp", [2, 4], pretrained=False)
    path = run_dir / "ssnet2" / "model.pt"
    torch.save({"kind": "ssnet", "fingerprint": "test", "model": model.state_dict(),
                "meta": {"class_names": CLASSES, "backbone": "efficientnet_lite0", "output_stride": 16,
                         "head": "aspp", "rates": [2, 4], "stage": 2}}, path)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"device": "cpu", "pipeline": "ssnet",
                                                         "ssnet": {"eval_long_side": 32}}))
    return path


def test_eval_saliency_scores_each_folder_at_the_images_own_size(ssnet_checkpoint, tmp_path, capsys):
    from wsss import Predictor
    from wsss.data.saliency import SaliencyDataset

    first = write_saliency_set(tmp_path / "first")
    second = write_saliency_set(tmp_path / "second", sizes=SIZES[:2], seed=1)
    run_dir = ssnet_checkpoint.parents[1]
    # the run directory is the checkpoint's, found without --run-dir
    assert main(["eval-saliency", "--checkpoint", str(ssnet_checkpoint), "--data", str(first),
                 "--data", str(second), "--no-progress"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["first"], ["second"])]
    assert [(row[0], row[-1]) for row in rows] == [("first", "3"), ("second", "2")]  # one row each, image count

    saved = json.loads((run_dir / "eval" / "saliency_ssnet2.json").read_text())
    assert saved["settings"]["max_side"] == 32
    summary = json.loads((run_dir / "summary.json").read_text())
    # the same numbers by hand: maps made at <= 32 px, scored at the images' sizes
    predictor = Predictor(ssnet_checkpoint, device="cpu", max_side=32)
    for name, count in (("first", 3), ("second", 2)):
        dataset = SaliencyDataset(tmp_path / name, [f"im{n}" for n in range(count)])
        expected = SaliencyScores()
        for index in range(count):
            image = dataset.load_image(index)
            saliency = predictor.saliency(image)
            assert saliency.shape == image.shape[:2]
            expected.add(saliency, dataset.load_mask(index))
        expected = expected.result()
        assert {k: saved["datasets"][name][k] for k in expected} == expected
        assert summary[f"ssnet2/saliency/{name}"]["single-scale"] == expected
        for key in ("max_f", "mae", "s_measure", "mean_e"):
            assert 0 <= expected[key] <= 1 and f"{expected[key]:.4f}" in out

    # a later call for another folder keeps the earlier folders' scores (same model and settings)
    shutil.rmtree(second)
    write_saliency_set(tmp_path / "third" / "second", sizes=SIZES[2:], seed=2)
    assert main(["eval-saliency", "--run-dir", str(run_dir), "--data", str(tmp_path / "third" / "second"),
                 "--no-progress"]) == 0  # --checkpoint defaults to the run's ssnet2/model.pt
    saved = json.loads((run_dir / "eval" / "saliency_ssnet2.json").read_text())
    assert saved["datasets"]["first"]["num_images"] == 3 and saved["datasets"]["second"]["num_images"] == 1


def error_of(capsys, *argv):
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err  # one line, no traceback
    return err


def test_eval_saliency_bad_input_is_a_clear_error(ssnet_checkpoint, tmp_path, capsys):
    ckpt = ["--checkpoint", str(ssnet_checkpoint), "--no-progress"]
    good = write_saliency_set(tmp_path / "good")

    no_masks = tmp_path / "no_masks"
    shutil.copytree(good / "images", no_masks / "images")
    err = error_of(capsys, "eval-saliency", *ckpt, "--data", str(good), "--data", str(no_masks))
    assert f"{no_masks}: no masks/ folder" in err and "--data" in err

    err = error_of(capsys, "eval-saliency", *ckpt, "--data", str(tmp_path / "nowhere"))
    assert f"{tmp_path / 'nowhere'}: saliency folder not found" in err

    unmasked = tmp_path / "unmasked"
    shutil.copytree(good, unmasked)
    (unmasked / "masks" / "im1.png").unlink()
    err = error_of(capsys, "eval-saliency", *ckpt, "--data", str(unmasked))
    assert err.startswith(f"wsss: error: {unmasked / 'images' / 'im1.jpg'}: no mask {unmasked / 'masks' / 'im1.png'}")
    assert "add it or remove the image" in err

    resized = tmp_path / "resized"
    shutil.copytree(good, resized)
    Image.fromarray(np.zeros((10, 12), dtype=np.uint8)).save(resized / "masks" / "im2.png")
    err = error_of(capsys, "eval-saliency", *ckpt, "--data", str(resized))
    assert f"{resized / 'masks' / 'im2.png'}: mask is 12x10 but its image is 56x56" in err

    lone = tmp_path / "lone.pt"  # a model outside a run directory: where would the scores go?
    shutil.copy(ssnet_checkpoint, lone)
    err = error_of(capsys, "eval-saliency", "--checkpoint", str(lone), "--data", str(good))
    assert f"{lone}: not inside a run directory" in err and "pass --run-dir" in err

    # every folder is checked before any is scored: the good folder of the first call was not
    saved = ssnet_checkpoint.parents[1] / "eval" / "saliency_ssnet2.json"
    assert not saved.exists() or "good" not in json.loads(saved.read_text())["datasets"]


def test_eval_saliency_needs_an_ssnet(tmp_path, capsys):
    from wsss.models import build_model

    model = build_model("segmentation", "efficientnet_lite0", 16, len(CLASSES), "aspp", [2, 4], pretrained=False)
    path = tmp_path / "seg" / "model.pt"
    path.parent.mkdir()
    torch.save({"kind": "segmentation", "fingerprint": "test", "model": model.state_dict(),
                "meta": {"class_names": CLASSES, "backbone": "efficientnet_lite0", "output_stride": 16,
                         "head": "aspp", "rates": [2, 4]}}, path)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"device": "cpu"}))
    data = write_saliency_set(tmp_path / "data")
    err = error_of(capsys, "eval-saliency", "--checkpoint", str(path), "--data", str(data), "--config", str(config),
                   "--run-dir", str(tmp_path / "run"), "--no-progress")
    assert f"{path}: a segmentation model gives no saliency maps" in err and "train-ssnet" in err


def test_config_whose_saliency_benchmark_is_missing_fails_before_training(tmp_path, tiny_dataset, capsys):
    bench = tmp_path / "bench"
    config = {"device": "cpu", "pipeline": "ssnet", "data": {"root": str(tiny_dataset)},
              "ssnet": {"saliency": {"root": str(tmp_path / "sal"), "demo": {"num_images": 6, "image_size": 64},
                                     "eval_roots": [str(bench)]}}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    err = error_of(capsys, "run", "--config", str(path), "--run-dir", str(run_dir), "--no-progress")
    assert f"{bench}: saliency folder not found; point ssnet.saliency.eval_roots at a folder with images/ and masks/" in err
    assert not (run_dir / "ssnet1").exists()
    # two benchmarks of one name would overwrite each other's scores
    with pytest.raises(WsssError, match=r"ssnet\.saliency\.eval_roots: .*two folders are named 'ecssd'"):
        load_config(path, ["ssnet.saliency.eval_roots=[a/ecssd, b/ecssd]"])


@pytest.mark.parametrize("name", ["ssnet_msrc", "ssnet_voc12"])
def test_shipped_ssnet_configs_train_on_duts_and_score_benchmarks(name):
    from pathlib import Path

    cfg = load_config(Path(__file__).parents[1] / "configs" / f"{name}.yaml").ssnet.saliency
    assert cfg.holdout_every == 0 and "DUTS-TR" in str(cfg.root).upper()
    assert [p.name.upper() for p in cfg.eval_roots][:1] == ["ECSSD"]
