"""Tests of IRN's core (Ahn, Cho & Kwak, CVPR 2019): relation labels, the boundary path maximum,
the boundary loss, IRNet, and the random walk on given per-pair affinities (wsss.affinity)."""

import pytest
import torch

from wsss.affinity import (
    affinity_from_features,
    pair_offsets,
    random_walk,
    random_walk_dense,
)


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """One torch thread: the grids here are tiny (see tests/test_affinity.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _walk_inputs(channels, h, w, radius, seed=0):
    """Random (C, h, w) maps and (K, h, w) affinities in [0, 1] for the half offsets of ``radius``."""
    generator = torch.Generator().manual_seed(seed)
    cam = torch.rand(channels, h, w, generator=generator, dtype=torch.float64)
    affinity = torch.rand(len(pair_offsets(radius, half=True)), h, w, generator=generator, dtype=torch.float64)
    return cam, affinity


# --------------------------------------------------------------------------- walk on given affinities


@pytest.mark.parametrize("radius", [3, 5])
@pytest.mark.parametrize("h, w", [(7, 11), (13, 5), (1, 12), (12, 1), (16, 16)])
def test_walk_with_given_affinities_matches_the_dense_formula(h, w, radius):
    cam64, affinity64 = _walk_inputs(3, h, w, radius, seed=h * 100 + w + radius)
    for beta in (1.0, 10.0):
        for steps in (0, 1, 7, 256):
            expected = random_walk_dense(cam64, affinity=affinity64, radius=radius, beta=beta, steps=steps)
            fast64 = random_walk(cam64, affinity=affinity64, radius=radius, beta=beta, steps=steps)
            fast32 = random_walk(cam64.float(), affinity=affinity64.float(), radius=radius, beta=beta, steps=steps)
            assert fast64.dtype == torch.float64 and fast32.dtype == torch.float32
            torch.testing.assert_close(fast64, expected, rtol=1e-11, atol=1e-13)
            torch.testing.assert_close(fast32.double(), expected, rtol=1e-4, atol=1e-6)


def test_walk_given_feature_affinities_equals_the_walk_on_features():
    # The two sources of A build the same T: a_ij = exp(-mean L1) given as a tensor.
    generator = torch.Generator().manual_seed(1)
    cam = torch.rand(2, 9, 10, generator=generator, dtype=torch.float64)
    features = 0.3 * torch.randn(4, 9, 10, generator=generator, dtype=torch.float64)
    affinity, _ = affinity_from_features(features, pair_offsets(4, half=True))
    for steps in (5, 256):
        torch.testing.assert_close(
            random_walk(cam, affinity=affinity, radius=4, beta=8.0, steps=steps),
            random_walk(cam, features, radius=4, beta=8.0, steps=steps),
            rtol=1e-11, atol=1e-13,
        )
        torch.testing.assert_close(
            random_walk_dense(cam, affinity=affinity, radius=4, beta=8.0, steps=steps),
            random_walk_dense(cam, features, radius=4, beta=8.0, steps=steps),
            rtol=1e-11, atol=1e-13,
        )


def test_walk_ignores_affinities_of_pairs_leaving_the_image():
    cam, affinity = _walk_inputs(2, 6, 7, 3, seed=2)
    outside = ~affinity_from_features(torch.zeros(1, 6, 7), pair_offsets(3, half=True))[1]
    scrambled = affinity.clone()
    scrambled[outside] = float("nan")
    torch.testing.assert_close(
        random_walk(cam, affinity=scrambled, radius=3, beta=10.0, steps=64),
        random_walk(cam, affinity=affinity, radius=3, beta=10.0, steps=64),
    )


def test_walk_with_affinities_validates_inputs():
    cam, affinity = _walk_inputs(2, 5, 6, 3)
    features = torch.rand(4, 5, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match="exactly one"):
        random_walk(cam)
    with pytest.raises(ValueError, match="exactly one"):
        random_walk(cam, features, affinity=affinity, radius=3)
    with pytest.raises(ValueError, match="offsets"):
        random_walk(cam, affinity=affinity, radius=4)
    with pytest.raises(ValueError, match=r"\(K, h, w\)"):
        random_walk(cam, affinity=affinity[None], radius=3)
    with pytest.raises(ValueError, match="does not match"):
        random_walk(cam, affinity=affinity[..., :5], radius=3)
    for bad in (-0.1, 1.5, float("nan")):
        broken = affinity.clone()
        broken[0, 0, 0] = bad
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            random_walk(cam, affinity=broken, radius=3)
