"""Tests of wsss.walk.affinity: pair geometry, affinities, labels, loss and the random walk."""

import logging
import math
import shutil

import pytest
import torch

from wsss import native
from wsss.io import IGNORE_INDEX
from wsss.walk.affinity import (
    affinity_from_features,
    affinity_loss,
    pair_labels,
    pair_offsets,
    random_walk,
    random_walk_dense,
    random_walk_dense_paper,
)


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Run this module on one thread: its grids are small, so a second thread only adds
    synchronisation, which stalls badly (milliseconds per sparse product) when another
    process keeps the other core busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _require_native_kernels():
    """The compiled kernels; a failure where a C++ compiler exists (the build must work there)."""
    if not native.enabled():
        pytest.skip(f"{native.ENV_SWITCH}=0 switches the C++ kernels off")
    kernels = native.kernels()
    if kernels is None and shutil.which("c++") is None:
        pytest.skip("no C++ compiler on this machine: the torch path is the only one")
    assert kernels is not None, f"the C++ kernels did not build: {native.build_error()}"
    return kernels


@pytest.fixture(params=["native", "torch"])
def distance_kernel(request, monkeypatch):
    """Run a test once with the C++ distance kernel and once with the pure-torch code."""
    if request.param == "native":
        _require_native_kernels()
    else:
        monkeypatch.setattr(native, "kernels", lambda: None)
    return request.param


def _inputs(channels, depth, h, w, seed=0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    cam = torch.rand(channels, h, w, generator=generator, dtype=torch.float64)
    # A feature scale that gives affinities spread over (0, 1), as a trained AffinityNet does.
    features = 0.3 * torch.randn(depth, h, w, generator=generator, dtype=torch.float64)
    return cam.to(dtype), features.to(dtype)


# --------------------------------------------------------------------------- pair_offsets


def test_pair_offsets_counts_and_geometry():
    full, half = pair_offsets(5), pair_offsets(5, half=True)
    assert full.shape == (68, 2) and half.shape == (34, 2)
    assert full.dtype == torch.long
    as_set = {tuple(o) for o in full.tolist()}
    assert len(as_set) == 68 and (0, 0) not in as_set
    assert all(dy * dy + dx * dx < 25 for dy, dx in as_set)
    # Every offset within the radius is there.
    assert as_set == {(dy, dx) for dy in range(-5, 6) for dx in range(-5, 6) if 0 < dy * dy + dx * dx < 25}
    # half keeps exactly one of each (o, -o).
    half_set = {tuple(o) for o in half.tolist()}
    assert half_set | {(-dy, -dx) for dy, dx in half_set} == as_set
    assert not half_set & {(-dy, -dx) for dy, dx in half_set}
    assert full.tolist() == sorted(full.tolist())


def test_pair_offsets_half_matches_psa_order():
    radius = 5
    psa = [(0, x) for x in range(1, radius)] + [
        (y, x) for y in range(1, radius) for x in range(-radius + 1, radius) if x * x + y * y < radius * radius
    ]
    assert [tuple(o) for o in pair_offsets(radius, half=True).tolist()] == psa


def test_pair_offsets_small_and_invalid_radius():
    assert pair_offsets(1).shape == (0, 2)
    assert {tuple(o) for o in pair_offsets(2).tolist()} == {(0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1)}
    assert pair_offsets(3).shape[0] == 24  # 5x5 square minus 4 corners minus centre
    for bad in (0, -2, 2.0, True):
        with pytest.raises(ValueError, match="radius"):
            pair_offsets(bad)


# --------------------------------------------------------------------------- affinities


def test_affinity_from_features_matches_the_definition():
    features = torch.randn(2, 6, 4, 5, dtype=torch.float64)
    offsets = pair_offsets(3)
    affinity, valid = affinity_from_features(features, offsets)
    assert affinity.shape == (2, len(offsets), 4, 5) and valid.shape == (len(offsets), 4, 5)
    for k, (dy, dx) in enumerate(offsets.tolist()):
        for y in range(4):
            for x in range(5):
                inside = 0 <= y + dy < 4 and 0 <= x + dx < 5
                assert bool(valid[k, y, x]) == inside
                for b in range(2):
                    expected = 0.0
                    if inside:
                        diff = features[b, :, y, x] - features[b, :, y + dy, x + dx]
                        expected = math.exp(-float(diff.abs().mean()))
                    assert affinity[b, k, y, x].item() == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_affinity_from_features_unbatched_and_no_grad_paths_agree():
    features = torch.randn(3, 5, 7, requires_grad=True)
    offsets = pair_offsets(4, half=True)
    with_grad, valid = affinity_from_features(features, offsets)
    with torch.no_grad():
        without_grad, _ = affinity_from_features(features, offsets)
    batched, _ = affinity_from_features(features.detach().unsqueeze(0), offsets)
    assert with_grad.shape == (len(offsets), 5, 7)
    torch.testing.assert_close(with_grad.detach(), without_grad, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(batched[0], without_grad)
    assert torch.all(with_grad.detach()[~valid] == 0)


def test_affinity_gradients_flow_through_the_loss():
    features = torch.randn(2, 8, 6, 6, dtype=torch.float64, requires_grad=True)
    offsets = pair_offsets(3, half=True)
    labels = torch.randint(0, 3, (2, 6, 6))
    labels[0, :2, :2] = IGNORE_INDEX
    affinity, _ = affinity_from_features(features, offsets)
    loss, stats = affinity_loss(affinity, *pair_labels(labels, offsets))
    loss.backward()
    assert features.grad is not None
    assert torch.isfinite(features.grad).all() and features.grad.abs().sum() > 0
    assert stats["bg_pos_count"] > 0 and stats["fg_pos_count"] > 0 and stats["neg_count"] > 0

    small = torch.randn(1, 3, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f: affinity_from_features(f, offsets)[0], (small,))


# --------------------------------------------------------------------------- pair_labels

LABELS = torch.tensor(
    [
        [0, 0, 1],
        [0, IGNORE_INDEX, 1],
        [2, 2, 1],
    ]
)


def test_pair_labels_hand_made_map():
    offsets = torch.tensor([[0, 1], [1, 0]])  # right neighbour, lower neighbour
    bg_pos, fg_pos, neg = pair_labels(LABELS, offsets)
    assert bg_pos.shape == fg_pos.shape == neg.shape == (2, 3, 3)
    assert bg_pos.dtype == torch.bool
    t, f = True, False
    # Right neighbours: (0,0)-(0,1) 0|0, (0,1)-(0,2) 0|1, (1,0)-(1,1) 0|255, (1,1)-(1,2) 255|1,
    # (2,0)-(2,1) 2|2, (2,1)-(2,2) 2|1, last column leaves the image.
    assert bg_pos[0].tolist() == [[t, f, f], [f, f, f], [f, f, f]]
    assert fg_pos[0].tolist() == [[f, f, f], [f, f, f], [t, f, f]]
    assert neg[0].tolist() == [[f, t, f], [f, f, f], [f, t, f]]
    # Lower neighbours: (0,0)-(1,0) 0|0, (0,1)-(1,1) 0|255, (0,2)-(1,2) 1|1, (1,0)-(2,0) 0|2,
    # (1,1)-(2,1) 255|2, (1,2)-(2,2) 1|1, last row leaves the image.
    assert bg_pos[1].tolist() == [[t, f, f], [f, f, f], [f, f, f]]
    assert fg_pos[1].tolist() == [[f, f, t], [f, f, t], [f, f, f]]
    assert neg[1].tolist() == [[f, f, f], [t, f, f], [f, f, f]]


def test_pair_labels_batched_symmetric_and_disjoint():
    offsets = pair_offsets(3)
    maps = torch.stack([LABELS, LABELS.flip(1), torch.full((3, 3), IGNORE_INDEX)])
    batched = pair_labels(maps, offsets)
    for b in range(3):
        for single, many in zip(pair_labels(maps[b], offsets), batched):
            assert torch.equal(single, many[b])
    assert not any(mask[2].any() for mask in batched)  # all unknown: no pair at all
    bg_pos, fg_pos, neg = batched
    assert not (bg_pos & fg_pos).any() and not (bg_pos & neg).any() and not (fg_pos & neg).any()
    # The pair (p, o) and the pair (p + o, -o) get the same label.
    index = {tuple(o): k for k, o in enumerate(offsets.tolist())}
    for k, (dy, dx) in enumerate(offsets.tolist()):
        m = index[(-dy, -dx)]
        for y in range(3):
            for x in range(3):
                if 0 <= y + dy < 3 and 0 <= x + dx < 3:
                    for mask in batched:
                        assert mask[0, k, y, x] == mask[0, m, y + dy, x + dx]


# --------------------------------------------------------------------------- affinity_loss


def test_affinity_loss_hand_made_value():
    affinity = torch.tensor([0.5, 0.25, 0.9, 0.1, 0.7], dtype=torch.float64).view(1, 1, 1, 5)
    affinity.requires_grad_(True)
    bg_pos = torch.tensor([True, False, False, False, False]).view(1, 1, 1, 5)
    fg_pos = torch.tensor([False, True, False, False, False]).view(1, 1, 1, 5)
    neg = torch.tensor([False, False, True, True, False]).view(1, 1, 1, 5)  # 0.7 is ignored
    loss, stats = affinity_loss(affinity, bg_pos, fg_pos, neg)
    eps = 1e-5
    bg = -math.log(0.5 + eps)
    fg = -math.log(0.25 + eps)
    ng = (-math.log(1 + eps - 0.9) - math.log(1 + eps - 0.1)) / 2
    assert loss.item() == pytest.approx(bg / 4 + fg / 4 + ng / 2, rel=1e-12)
    assert loss.item() == pytest.approx(1.121804, abs=1e-6)  # the same, as a number
    assert stats == pytest.approx(
        {"loss": loss.item(), "bg_pos_loss": bg, "fg_pos_loss": fg, "neg_loss": ng,
         "bg_pos_count": 1, "fg_pos_count": 1, "neg_count": 2}
    )
    loss.backward()
    assert affinity.grad[0, 0, 0, 4] == 0  # an ignored pair gets no gradient


def test_affinity_loss_empty_terms_are_zero_not_nan():
    affinity = torch.rand(2, 3, 4, 4, requires_grad=True)
    empty = torch.zeros(2, 3, 4, 4, dtype=torch.bool)
    loss, stats = affinity_loss(affinity, empty, empty, empty)
    assert loss.item() == 0 and stats["neg_count"] == 0
    neg = empty.clone()
    neg[0, 0, 0, 0] = True
    loss, stats = affinity_loss(affinity, empty, empty, neg)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(affinity.grad).all()
    assert stats["bg_pos_loss"] == 0 and stats["fg_pos_loss"] == 0
    with pytest.raises(ValueError, match="shape"):
        affinity_loss(affinity, empty[0], empty, empty)


# --------------------------------------------------------------------------- random walk

GRIDS = [(7, 11), (13, 5), (1, 12), (12, 1), (16, 16)]


@pytest.mark.parametrize("radius", [3, 5])
@pytest.mark.parametrize("h, w", GRIDS)
def test_random_walk_matches_dense_reference(h, w, radius, distance_kernel):
    for beta in (1.0, 8.0):
        cam32, features32 = _inputs(3, 5, h, w, seed=h * 100 + w + radius)
        cam64, features64 = cam32.double(), features32.double()
        for steps in (0, 1, 2, 256):
            expected = random_walk_dense(cam64, features64, radius=radius, beta=beta, steps=steps)
            fast64 = random_walk(cam64, features64, radius=radius, beta=beta, steps=steps)
            fast32 = random_walk(cam32, features32, radius=radius, beta=beta, steps=steps)
            assert fast64.dtype == torch.float64 and fast32.dtype == torch.float32
            assert fast32.shape == (3, h, w)
            torch.testing.assert_close(fast64, expected, rtol=1e-11, atol=1e-13)
            torch.testing.assert_close(fast32.double(), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_native_distances_equal_the_torch_code(dtype, monkeypatch):
    from wsss.walk.affinity import _mean_abs_diffs

    kernels = _require_native_kernels()
    generator = torch.Generator().manual_seed(3)
    # 37 channels (not a multiple of any vector width), 9 x 13 pixels; shifts forward,
    # backward, zero, and past either end of the grid (those rows must stay exactly 0).
    flat = torch.randn(37, 9 * 13, generator=generator, dtype=torch.float64).to(dtype)
    shifts = [1, 13, 27, -14, 0, 200, -200]
    fused = kernels.mean_abs_diffs(flat, torch.tensor(shifts))
    monkeypatch.setattr(native, "kernels", lambda: None)
    reference = _mean_abs_diffs(flat, shifts)
    assert fused.dtype == dtype and fused.shape == (len(shifts), 9 * 13)
    tolerance = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-13, "atol": 1e-14}
    torch.testing.assert_close(fused, reference, **tolerance)
    assert torch.all(fused[4] == 0) and torch.all(fused[5] == 0) and torch.all(fused[6] == 0)
    assert fused[0, 0] > 0 and fused[0, -1] == 0  # the last pixel has no p + 1


def test_a_lock_left_by_a_killed_process_does_not_stop_the_kernel_loading(monkeypatch):
    import threading

    from torch.utils import cpp_extension

    kernels = _require_native_kernels()
    lock = native.build_directory() / "lock"  # torch's build lock, as a SIGKILLed loader leaves it
    lock.write_text("")
    try:
        loaded = []
        loader = threading.Thread(target=lambda: loaded.append(native._build()), daemon=True)
        loader.start()
        loader.join(timeout=60)
        assert loaded and loaded[0].mean_abs_diffs is not None, "a built kernel must load without torch's lock"

        # A rebuild (the stamp no longer matches) holds wsss's own flock, so it removes torch's
        # lock file instead of waiting on it forever.
        def fake_load(**kwargs):
            assert not lock.exists(), "the leftover torch lock must be gone before torch builds"
            return kernels

        monkeypatch.setattr(native, "_read_stamp", lambda *args: None)
        monkeypatch.setattr(native, "_load_library", lambda path: pytest.fail("must rebuild"))
        monkeypatch.setattr(cpp_extension, "load", fake_load)
        monkeypatch.setattr(native, "atomic_path", lambda path: pytest.fail("must not touch the real stamp"))
        with pytest.raises(pytest.fail.Exception, match="must not touch the real stamp"):
            native._build()
    finally:
        lock.unlink(missing_ok=True)


def test_each_python_environment_builds_the_kernel_in_its_own_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr("sys.prefix", "/checkouts/a/.venv")
    first, again = native.build_directory(), native.build_directory()
    monkeypatch.setattr("sys.prefix", "/checkouts/b/.venv")
    second = native.build_directory()
    assert first == again and first != second  # stable per venv, never shared by two venvs
    assert first.parent == tmp_path and first.is_dir() and second.is_dir()


def test_random_walk_falls_back_to_torch_when_the_build_fails(monkeypatch, caplog):
    def failing_build():
        raise RuntimeError("Error building extension 'wsss_native': c++ not found")

    monkeypatch.setitem(native._state, "tried", False)
    monkeypatch.setitem(native._state, "module", None)
    monkeypatch.setitem(native._state, "error", None)
    monkeypatch.setattr(native, "_build", failing_build)
    monkeypatch.setenv(native.ENV_SWITCH, "1")
    cam, features = _inputs(3, 5, 9, 10, seed=4, dtype=torch.float64)
    with caplog.at_level(logging.WARNING, logger="wsss"):
        walked = random_walk(cam, features, radius=3, beta=4.0, steps=16)
        random_walk(cam, features, radius=3, beta=4.0, steps=16)
    warnings = [r for r in caplog.records if "could not be built" in r.getMessage()]
    assert len(warnings) == 1 and "c++ not found" in warnings[0].getMessage()  # once, with the cause
    assert "c++ not found" in native.build_error()
    expected = random_walk_dense(cam, features, radius=3, beta=4.0, steps=16)
    torch.testing.assert_close(walked, expected, rtol=1e-11, atol=1e-13)
    monkeypatch.setenv(native.ENV_SWITCH, "0")
    monkeypatch.setattr(native, "_build", lambda: pytest.fail("WSSS_NATIVE=0 must not build"))
    monkeypatch.setitem(native._state, "tried", False)
    assert native.kernels() is None


def test_random_walk_intermediate_steps_and_radius_one():
    cam, features = _inputs(2, 4, 9, 10, seed=3, dtype=torch.float64)
    for steps in (3, 17, 40, 100):  # direct products, and Chebyshev degrees below steps
        torch.testing.assert_close(
            random_walk(cam, features, radius=4, beta=4.0, steps=steps),
            random_walk_dense(cam, features, radius=4, beta=4.0, steps=steps),
            rtol=1e-11,
            atol=1e-13,
        )
    # radius 1: no pairs, T is the identity.
    torch.testing.assert_close(random_walk(cam, features, radius=1, steps=8), cam)


def test_random_walk_is_not_mass_preserving_but_matches_the_formula():
    # T's columns sum to one, not its rows: a class map's total changes, constants do not.
    cam, features = _inputs(2, 4, 6, 6, seed=4, dtype=torch.float64)
    result = random_walk(cam, features, radius=3, beta=8.0, steps=4)
    assert not torch.allclose(result.sum(dim=(1, 2)), cam.sum(dim=(1, 2)), rtol=1e-3)
    constant = torch.full_like(cam, 2.5)
    torch.testing.assert_close(random_walk(constant, features, radius=3, steps=4), constant)


def test_random_walk_skips_all_zero_maps_exactly():
    cam, features = _inputs(4, 5, 7, 8, seed=8, dtype=torch.float64)
    cam[1] = 0
    cam[3] = 0
    result = random_walk(cam, features, radius=3, steps=64)
    assert torch.all(result[1] == 0) and torch.all(result[3] == 0)
    torch.testing.assert_close(result, random_walk_dense(cam, features, radius=3, steps=64), rtol=1e-11, atol=1e-13)
    assert torch.all(random_walk(torch.zeros_like(cam), features) == 0)


def test_random_walk_dense_paper_matches_reference():
    cam, features = _inputs(3, 5, 8, 9, seed=5, dtype=torch.float64)
    for steps in (1, 2, 256):
        torch.testing.assert_close(
            random_walk_dense_paper(cam, features, radius=5, beta=8.0, steps=steps),
            random_walk_dense(cam, features, radius=5, beta=8.0, steps=steps),
            rtol=1e-10,
            atol=1e-12,
        )
    with pytest.raises(ValueError, match="power of two"):
        random_walk_dense_paper(cam, features, steps=100)


def test_chebyshev_expansion_of_powers_meets_its_tolerance():
    from wsss.walk.affinity import _power_chebyshev_coefficients

    x = torch.linspace(-1, 1, 4001, dtype=torch.float64)
    for n, tolerance in [(6, 0.0), (7, 0.0), (255, 1e-9), (256, 1e-9), (1000, 1e-13)]:
        coefficients = _power_chebyshev_coefficients(n, tolerance)
        series = sum(c * torch.cos(k * torch.arccos(x)) for k, c in enumerate(coefficients))
        assert (series - x**n).abs().max() <= tolerance + 1e-14
        assert len(coefficients) - 1 == n if tolerance == 0 else len(coefficients) - 1 < n / 2


def test_random_walk_large_grid_never_builds_dense_matrix():
    # N = 36864: a dense N x N float32 matrix would need 5.4 GB, and its squaring hours.
    h = w = 192
    generator = torch.Generator().manual_seed(6)
    features = 0.3 * torch.randn(4, h, w, generator=generator)
    cam = torch.rand(2, h, w, generator=generator)
    result = random_walk(cam, features, radius=5, beta=8.0, steps=256)
    assert result.shape == (2, h, w) and torch.isfinite(result).all()
    # Each output is a convex combination of the inputs (T's columns are distributions).
    for c in range(2):
        assert cam[c].min() - 1e-5 <= result[c].min() and result[c].max() <= cam[c].max() + 1e-5
    constant = torch.ones(1, h, w)
    torch.testing.assert_close(random_walk(constant, features), constant, rtol=1e-5, atol=1e-5)


def test_random_walk_validates_inputs():
    cam, features = _inputs(2, 4, 5, 6)
    with pytest.raises(ValueError, match="does not match"):
        random_walk(cam, features[:, :4])
    with pytest.raises(ValueError, match=r"\(C, h, w\)"):
        random_walk(cam[0], features)
    with pytest.raises(ValueError, match=r"\(D, h, w\)"):
        random_walk(cam, features[None])
    with pytest.raises(ValueError, match="radius"):
        random_walk(cam, features, radius=0)
    with pytest.raises(ValueError, match="steps"):
        random_walk(cam, features, steps=-1)
    with pytest.raises(ValueError, match="beta"):
        random_walk(cam, features, beta=float("nan"))
    with pytest.raises(ValueError, match="floating"):
        random_walk(cam.long(), features)


def test_random_walk_keeps_dtype_and_ignores_autograd():
    cam, features = _inputs(2, 4, 5, 6)
    features.requires_grad_(True)
    result = random_walk(cam.half(), features, radius=3, steps=8)
    assert result.dtype == torch.float16 and not result.requires_grad
    torch.testing.assert_close(
        result.float(), random_walk(cam.half().float(), features, radius=3, steps=8), rtol=1e-3, atol=1e-3
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_random_walk_on_cuda_matches_cpu():
    cam, features = _inputs(21, 32, 24, 20, seed=7)
    expected = random_walk(cam, features)
    result = random_walk(cam.cuda(), features.cuda())
    assert result.device.type == "cuda"
    torch.testing.assert_close(result.cpu(), expected, rtol=1e-4, atol=1e-6)
