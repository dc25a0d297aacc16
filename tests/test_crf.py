"""Tests of wsss.crf: the dense CRF wrapper and its size-relative widths."""

import numpy as np
import pytest

from wsss.crf import REFERENCE_SIZE, dense_crf, scaled_crf_widths


def _softmax(logits):
    e = np.exp(logits - logits.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def _two_region_problem(seed=0, h=40, w=60):
    """A flat red disc on a flat blue background, and noisy unaries (~25% argmax errors)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[:h, :w]
    truth = ((ys - h / 2) ** 2 + (xs - w / 2) ** 2 < (h / 3) ** 2).astype(np.int64)
    colours = np.array([[30, 60, 190], [200, 40, 40]])
    image = np.clip(colours[truth] + rng.integers(-4, 5, (h, w, 3)), 0, 255).astype(np.uint8)
    logits = np.stack([truth == 0, truth == 1]).astype(np.float64) + rng.normal(0.0, 1.0, (2, h, w))
    return image, _softmax(logits).astype(np.float32), truth


def test_dense_crf_lowers_the_error_of_noisy_unaries():
    image, probs, truth = _two_region_problem()
    unary_error = np.mean(probs.argmax(0) != truth)
    refined = dense_crf(image, probs)
    crf_error = np.mean(refined.argmax(0) != truth)
    assert 0.15 < unary_error < 0.35  # the problem is as noisy as intended
    assert crf_error < unary_error / 4


def test_dense_crf_returns_a_distribution_of_the_same_shape():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)
    probs = _softmax(rng.normal(size=(4, 17, 23))).astype(np.float64)
    refined = dense_crf(image, probs, iterations=5)
    assert refined.shape == (4, 17, 23) and refined.dtype == np.float32
    assert np.all(refined >= 0)
    np.testing.assert_allclose(refined.sum(axis=0), 1.0, atol=1e-5)


def test_dense_crf_zero_iterations_returns_the_unaries():
    image, probs, _ = _two_region_problem(seed=2, h=12, w=9)
    np.testing.assert_allclose(dense_crf(image, probs, iterations=0), probs, rtol=1e-4, atol=1e-5)


def test_dense_crf_accepts_non_contiguous_inputs():
    image, probs, _ = _two_region_problem(seed=3, h=20, w=30)
    flipped_image, flipped_probs = image[:, ::-1], probs[:, :, ::-1]
    assert not flipped_image.flags.c_contiguous and not flipped_probs.flags.c_contiguous
    np.testing.assert_array_equal(
        dense_crf(flipped_image, flipped_probs),
        dense_crf(np.ascontiguousarray(flipped_image), np.ascontiguousarray(flipped_probs)),
    )


def test_dense_crf_single_label_is_certain():
    image = np.zeros((5, 7, 3), np.uint8)
    result = dense_crf(image, np.ones((1, 5, 7)))
    assert result.shape == (1, 5, 7) and result.dtype == np.float32 and np.all(result == 1)


def test_dense_crf_validates_inputs():
    image, probs, _ = _two_region_problem(h=8, w=10)
    with pytest.raises(ValueError, match="does not match"):
        dense_crf(image, probs[:, :, :9])
    with pytest.raises(ValueError, match="uint8"):
        dense_crf(image.astype(np.float32), probs)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        dense_crf(image[..., 0], probs)
    with pytest.raises(ValueError, match=r"\(L, H, W\)"):
        dense_crf(image, probs[0])
    with pytest.raises(ValueError, match=r"L >= 1"):
        dense_crf(image, probs[:0])
    with pytest.raises(ValueError, match="non-negative"):
        dense_crf(image, -probs)
    with pytest.raises(ValueError, match="iterations"):
        dense_crf(image, probs, iterations=-1)
    with pytest.raises(ValueError, match="scale"):
        dense_crf(image, probs, scale=0)


def test_scaled_crf_widths_are_proportional_to_image_size():
    assert scaled_crf_widths((320, 240)) == pytest.approx((3 * 0.64, 80 * 0.64))
    assert scaled_crf_widths((REFERENCE_SIZE, 300)) == pytest.approx((3.0, 80.0))
    assert scaled_crf_widths((100, 1000), reference_size=250, gaussian_sxy=1, bilateral_sxy=10) == pytest.approx((4, 40))
    with pytest.raises(ValueError):
        scaled_crf_widths((0, 10))


def test_dense_crf_size_relative_uses_the_scaled_widths():
    image, probs, _ = _two_region_problem(seed=4, h=30, w=40)
    gaussian, bilateral = scaled_crf_widths((30, 40))
    relative = dense_crf(image, probs, size_relative=True)
    np.testing.assert_array_equal(relative, dense_crf(image, probs, gaussian_sxy=gaussian, bilateral_sxy=bilateral))
    assert not np.allclose(relative, dense_crf(image, probs))
