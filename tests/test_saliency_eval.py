"""Saliency scores as the field reports them (max F, MAE, S-measure, mean E-measure, by
pysodmetrics) on maps whose scores are known."""

import numpy as np
import pytest

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
