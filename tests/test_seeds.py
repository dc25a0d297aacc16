import numpy as np
import pytest

from wsss.walk.seeds import alpha_for_threshold, scores_to_labels, scores_with_background, seed_labels, threshold_for_alpha


@pytest.mark.parametrize("alpha,threshold", [(4, 0.2755), (16, 0.1228), (32, 0.0770), (1, 0.5)])
def test_paper_alphas_as_thresholds(alpha, threshold):
    assert threshold_for_alpha(alpha) == pytest.approx(threshold, abs=1e-3)
    assert alpha_for_threshold(threshold_for_alpha(alpha)) == pytest.approx(alpha, rel=1e-6)


def test_background_wins_exactly_below_the_threshold():
    c = 0.4
    alpha = alpha_for_threshold(c)
    cams = np.array([[[0.39, 0.41, 0.9]]], dtype=np.float32)
    labels = scores_to_labels(scores_with_background(cams, alpha), np.array([6]))
    np.testing.assert_array_equal(labels, [[0, 7, 7]])


def test_seed_labels_confident_fg_bg_and_unknown():
    # one class: strong in the left column, medium in the middle, none on the right
    cams = np.array([[[1.0, 0.5, 0.0]] * 2], dtype=np.float32)
    seeds = seed_labels(cams, np.array([2]), alpha_fg=alpha_for_threshold(0.7), alpha_bg=alpha_for_threshold(0.2))
    np.testing.assert_array_equal(seeds, [[3, 255, 0], [3, 255, 0]])


def test_seed_labels_with_refiner_sees_probabilities():
    seen = []

    def refine(probs):
        seen.append(probs)
        return probs

    cams = np.random.default_rng(0).random((2, 4, 5)).astype(np.float32)
    seed_labels(cams, np.array([0, 3]), 0.5, 8.0, refine=refine)
    assert len(seen) == 2
    for probs in seen:
        assert probs.shape == (3, 4, 5)
        np.testing.assert_allclose(probs.sum(0), 1.0, rtol=1e-5)


def test_image_without_labels_is_all_background_seed():
    seeds = seed_labels(np.zeros((0, 3, 3), np.float32), np.array([], dtype=np.int64), 0.5, 8.0)
    assert (seeds == 0).all()
