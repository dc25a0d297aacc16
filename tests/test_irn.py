"""Tests of IRN's core (Ahn, Cho & Kwak, CVPR 2019): relation labels, the boundary path maximum,
the boundary loss, IRNet, and the random walk on given per-pair affinities (wsss.walk.affinity)."""

import shutil

import numpy as np
import pytest
import torch
from quality import assert_beats, auc
from tiny_run import untrained_twin

from wsss.engine import load_model_weights, save_checkpoint
from wsss.io import IGNORE_INDEX
from wsss.irn import (
    boundary_loss,
    boundary_walk,
    confident_seeds,
    path_max_affinity,
    path_pixels,
    relation_labels,
    relation_offsets,
    walk_scores,
)
from wsss.models.backbone import build_backbone
from wsss.models.irn import IRNet
from wsss.walk.affinity import affinity_from_features, pair_offsets, random_walk, random_walk_dense
from wsss.walk.seeds import scores_to_labels


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


# --------------------------------------------------------------------------- relation labels


def test_relation_labels_on_a_tiny_seed_map():
    u = IGNORE_INDEX
    seeds = torch.tensor([[0, 0, u, 1],
                          [0, 0, 1, 1]])
    offsets = relation_offsets(2)
    assert offsets.tolist() == [[0, 1], [1, -1], [1, 0], [1, 1]]
    bg_pos, fg_pos, neg = relation_labels(seeds, radius=2)
    assert bg_pos.shape == fg_pos.shape == neg.shape == (4, 2, 4)
    # offset (0, 1): row 0: bg-bg, bg-unknown, unknown-fg; row 1: bg-bg, bg-fg, fg-fg; last column leaves.
    assert bg_pos[0].tolist() == [[True, False, False, False], [True, False, False, False]]
    assert neg[0].tolist() == [[False, False, False, False], [False, True, False, False]]
    assert fg_pos[0].tolist() == [[False, False, False, False], [False, False, True, False]]
    # offset (1, 1): (0,0)-(1,1) bg-bg, (0,1)-(1,2) bg-fg, (0,2)-(1,3) unknown.
    assert bg_pos[3, 0].tolist() == [True, False, False, False]
    assert neg[3, 0].tolist() == [False, True, False, False]
    assert (int(bg_pos.sum()), int(fg_pos.sum()), int(neg.sum())) == (6, 3, 2)
    assert not (bg_pos & fg_pos).any() and not (bg_pos & neg).any() and not (fg_pos & neg).any()
    # batched: the same per image
    batched = relation_labels(torch.stack([seeds, seeds.flip(-1)]), radius=2)
    assert all(torch.equal(b[0], m) for b, m in zip(batched, (bg_pos, fg_pos, neg)))


def test_relation_offsets_are_irns_search_directions():
    offsets = relation_offsets()  # IRN's radius 10
    assert offsets.shape == (152, 2)
    expected = {(0, x) for x in range(1, 10)} | {
        (y, x) for y in range(1, 10) for x in range(-9, 10) if x * x + y * y < 100
    }
    assert {tuple(o) for o in offsets.tolist()} == expected


def _cams_away_from(thresholds, shape, seed):
    """Random CAMs in [0, 1] with no value within 0.01 of a threshold (float rounding)."""
    generator = np.random.default_rng(seed)
    cams = generator.random(shape).astype(np.float32) ** 2
    for t in thresholds:
        near = np.abs(cams - t) < 0.01
        cams[near] = t + 0.02
    return cams


def test_confident_seeds_follow_irns_threshold_rule():
    cams = _cams_away_from((0.30, 0.05), (2, 12, 13), seed=0)
    keys = np.array([3, 7])
    seeds = confident_seeds(cams, keys)  # IRN's 0.30 / 0.05, no CRF
    peak, arg = cams.max(axis=0), cams.argmax(axis=0)
    expected = np.full(peak.shape, 255, dtype=np.uint8)
    expected[peak > 0.30] = keys[arg[peak > 0.30]] + 1
    expected[peak < 0.05] = 0
    assert seeds.dtype == np.uint8
    np.testing.assert_array_equal(seeds, expected)
    assert {0, 4, 8, 255} <= set(np.unique(seeds).tolist())
    # other thresholds, e.g. data-derived ones
    cams = _cams_away_from((0.5, 0.2), (2, 12, 13), seed=1)
    seeds = confident_seeds(cams, keys, fg_threshold=0.5, bg_threshold=0.2)
    peak = cams.max(axis=0)
    assert (seeds[peak > 0.5] != 255).all() and (seeds[peak > 0.5] != 0).all()
    assert (seeds[peak < 0.2] == 0).all() and (seeds[(peak > 0.2) & (peak < 0.5)] == 255).all()


def test_confident_seeds_refine_both_maps_and_check_thresholds():
    calls = []

    def refine(probs):
        calls.append(probs.shape)
        return probs

    cams = _cams_away_from((0.30, 0.05), (1, 6, 7), seed=2)
    plain = confident_seeds(cams, np.array([0]))
    np.testing.assert_array_equal(confident_seeds(cams, np.array([0]), refine=refine), plain)
    assert calls == [(2, 6, 7), (2, 6, 7)]  # the foreground map and the background map
    for fg, bg in ((0.3, 0.4), (0.3, 0.0), (1.0, 0.05)):
        with pytest.raises(ValueError, match="thresholds"):
            confident_seeds(cams, np.array([0]), fg_threshold=fg, bg_threshold=bg)


# --------------------------------------------------------------------------- path maximum


def test_path_pixels_hand_made():
    assert path_pixels((0, 3)) == [(0, 0), (0, 1), (0, 2), (0, 3)]
    assert path_pixels((1, 1)) == [(0, 0), (0, 1), (1, 0), (1, 1)]  # a diagonal step: both side pixels
    assert path_pixels((2, 4)) == [
        (0, 0), (0, 1), (0, 2),
        (1, 0), (1, 1), (1, 2), (1, 3), (1, 4),
        (2, 2), (2, 3), (2, 4),
    ]
    assert path_pixels((0, 0)) == [(0, 0)]
    # The path from j back to i is the same pixels.
    for dy, dx in pair_offsets(6).tolist():
        there = {(y - dy, x - dx) for y, x in path_pixels((dy, dx))}
        assert there == set(path_pixels((-dy, -dx)))


def test_path_max_a_vertical_wall_cuts_every_pair_across_it():
    h, w, wall = 6, 9, 4
    boundary = torch.zeros(1, 1, h, w)
    boundary[..., wall] = 1.0
    offsets = pair_offsets(4)  # both halves: leftward and rightward pairs
    affinity, valid = path_max_affinity(boundary, offsets)
    assert affinity.shape == (1, len(offsets), h, w) and valid.shape == (len(offsets), h, w)
    for k, (dy, dx) in enumerate(offsets.tolist()):
        for y in range(h):
            for x in range(w):
                if not valid[k, y, x]:
                    assert affinity[0, k, y, x] == 0
                    continue
                touches = min(x, x + dx) <= wall <= max(x, x + dx)
                assert affinity[0, k, y, x] == (0.0 if touches else 1.0), (dy, dx, y, x)


def test_path_max_equals_a_pixel_by_pixel_maximum():
    generator = torch.Generator().manual_seed(3)
    boundary = torch.rand(2, 1, 7, 9, generator=generator, dtype=torch.float64)
    offsets = pair_offsets(4)
    affinity, valid = path_max_affinity(boundary, offsets)
    for k, (dy, dx) in enumerate(offsets.tolist()):
        for y in range(7):
            for x in range(9):
                if valid[k, y, x]:
                    for b in range(2):
                        peak = max(float(boundary[b, 0, y + py, x + px]) for py, px in path_pixels((dy, dx)))
                        assert float(affinity[b, k, y, x]) == 1 - peak
    single, single_valid = path_max_affinity(boundary[1], offsets)  # (1, h, w) -> (K, h, w)
    assert torch.equal(single, affinity[1]) and torch.equal(single_valid, valid)


def test_path_max_gradient_reaches_the_maximum_of_each_path():
    boundary = torch.tensor([[[0.1, 0.5, 0.2, 0.3]]], requires_grad=True)
    affinity, valid = path_max_affinity(boundary, torch.tensor([[0, 1]]))
    torch.testing.assert_close(affinity, torch.tensor([[[0.5, 0.5, 0.7, 0.0]]]))
    assert valid.tolist() == [[[True, True, True, False]]]
    affinity.sum().backward()
    # pairs (0,1) and (1,2) peak at pixel 1, pair (2,3) at pixel 3; the pair leaving the image none
    assert boundary.grad.tolist() == [[[0.0, -2.0, 0.0, -1.0]]]


def test_path_max_validates_inputs():
    with pytest.raises(ValueError, match=r"\(B, 1, h, w\)"):
        path_max_affinity(torch.zeros(2, 3, 4), pair_offsets(2))
    with pytest.raises(ValueError, match="floating"):
        path_max_affinity(torch.zeros(1, 3, 4, dtype=torch.long), pair_offsets(2))
    empty, valid = path_max_affinity(torch.zeros(1, 3, 4), pair_offsets(1))
    assert empty.shape == (0, 3, 4) and valid.shape == (0, 3, 4)


# --------------------------------------------------------------------------- boundary loss


def _two_regions(h=64, w=64):
    """A (1, 3, h, w) image, red left half and blue right half (noisy), and its (1, h/4, w/4)
    seeds: background left, class 1 right, the two grid columns at the border unknown."""
    image = torch.empty(1, 3, h, w)
    image[..., : w // 2] = torch.tensor([200.0, 60.0, 40.0]).view(3, 1, 1)
    image[..., w // 2 :] = torch.tensor([40.0, 90.0, 210.0]).view(3, 1, 1)
    image += 10 * torch.randn(image.shape, generator=torch.Generator().manual_seed(0))
    seeds = torch.full((1, h // 4, w // 4), IGNORE_INDEX, dtype=torch.long)
    seeds[..., : w // 8 - 1] = 0
    seeds[..., w // 8 + 1 :] = 1
    return image, seeds


def test_boundary_loss_hand_made_values():
    _, seeds = _two_regions()
    offsets = relation_offsets()
    bg_pos, fg_pos, neg = relation_labels(seeds)
    assert bg_pos.any() and fg_pos.any() and neg.any()
    # B = 1/2 everywhere: every a_ij = 1/2, each term is log 2, and the weights 1/4 + 1/4 + 1/2 sum to 1.
    loss, stats = boundary_loss(torch.full((1, 1, 16, 16), 0.5), offsets, bg_pos, fg_pos, neg)
    torch.testing.assert_close(loss, torch.tensor(0.6931), atol=1e-4, rtol=0)
    assert stats["neg_count"] == int(neg.sum())
    # A boundary exactly on the unknown border columns: every labelled pair is right.
    perfect = torch.zeros(1, 1, 16, 16)
    perfect[..., 7:9] = 1.0
    loss, _ = boundary_loss(perfect, offsets, bg_pos, fg_pos, neg)
    assert float(loss) < 1e-4


# --------------------------------------------------------------------------- IRNet


@pytest.fixture
def irnet():
    torch.manual_seed(0)
    return IRNet(build_backbone("efficientnet_lite0", 16, pretrained=False))


def test_irnet_shapes_and_frozen_backbone(irnet):
    assert irnet.stride == 4
    assert not any(p.requires_grad for p in irnet.backbone.parameters())
    groups = irnet.param_groups()
    assert groups["pretrained"] == [] and groups["new"] and all(p.requires_grad for p in groups["new"])
    assert {id(p) for p in groups["new"]} == {id(p) for p in irnet.parameters() if p.requires_grad}
    irnet.train()
    assert irnet.training and not irnet.backbone.training
    assert not any(m.training for m in irnet.backbone.modules())
    images = 255 * torch.rand(2, 3, 64, 80)
    boundary = irnet(images)
    assert boundary.shape == (2, 1, 16, 20)
    assert boundary.min() >= 0 and boundary.max() <= 1
    boundary.mean().backward()
    assert all(p.grad is None for p in irnet.backbone.parameters())
    assert all(p.grad is not None for p in groups["new"])
    running = [b.clone() for b in irnet.backbone.buffers()]
    irnet(images)  # training mode: the backbone's BatchNorm statistics must not move
    assert all(torch.equal(a, b) for a, b in zip(running, irnet.backbone.buffers()))
    irnet.eval()
    with torch.no_grad():
        flipped = irnet.boundary_with_flip(images)
        assert flipped.shape == (2, 1, 16, 20)
        # symmetric by construction: the flip of a flipped image gives the flipped map
        torch.testing.assert_close(irnet.boundary_with_flip(images.flip(-1)), flipped.flip(-1))


def test_irnet_with_a_trained_backbone_gives_it_gradients_but_keeps_its_statistics():
    torch.manual_seed(0)
    irnet = IRNet(build_backbone("efficientnet_lite0", 16, pretrained=False), train_backbone=True)
    groups = irnet.param_groups()
    assert {id(p) for p in groups["pretrained"]} == {id(p) for p in irnet.backbone.parameters()}
    assert {id(p) for p in groups["pretrained"] + groups["new"]} == {id(p) for p in irnet.parameters()}
    irnet.train()
    assert not irnet.backbone.training  # BatchNorm statistics stay the pretrained ones
    running = [b.clone() for b in irnet.backbone.buffers()]
    irnet(255 * torch.rand(2, 3, 64, 80)).mean().backward()
    assert all(p.grad is not None for p in groups["pretrained"] + groups["new"])
    assert all(torch.equal(a, b) for a, b in zip(running, irnet.backbone.buffers()))


def test_irnet_saves_and_loads_through_the_engine(irnet, tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(path, {"kind": "irn", "model": irnet.state_dict(), "meta": {"output_stride": 16}})
    torch.manual_seed(1)
    other = IRNet(build_backbone("efficientnet_lite0", 16, pretrained=False))
    meta = load_model_weights(other, path, "irn", 16)
    assert meta == {"output_stride": 16}
    images = 255 * torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(other.eval()(images), irnet.eval()(images))


def test_irnet_boundary_loss_decreases_on_a_two_region_image(irnet):
    image, seeds = _two_regions()
    offsets = relation_offsets()  # IRN's radius 10
    bg_pos, fg_pos, neg = relation_labels(seeds)
    optimizer = torch.optim.Adam(irnet.param_groups()["new"], lr=1e-2)
    irnet.train()
    losses = []
    for _ in range(20):
        loss, _ = boundary_loss(irnet(image), offsets, bg_pos, fg_pos, neg)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.75 * losses[0], losses
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    with torch.no_grad():
        columns = irnet.eval()(image)[0, 0].mean(dim=0)  # (16,) mean boundary per grid column
    # the boundary is learnt at the border, not inside the regions
    assert columns[6:10].max() > columns[:4].mean() + 0.1 and columns[6:10].max() > columns[12:].mean() + 0.1


# --------------------------------------------------------------------------- IRN's walk


def test_boundary_walk_is_the_dense_formula_on_cam_times_one_minus_b():
    generator = torch.Generator().manual_seed(4)
    cam = torch.rand(2, 8, 9, generator=generator, dtype=torch.float64)
    boundary = torch.rand(8, 9, generator=generator, dtype=torch.float64) ** 3
    affinity, _ = path_max_affinity(boundary[None], pair_offsets(5, half=True))
    expected = random_walk_dense(cam * (1 - boundary), affinity=affinity, radius=5, beta=10.0, steps=256)
    torch.testing.assert_close(boundary_walk(cam, boundary), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(boundary_walk(cam, boundary[None], steps=3),
                               random_walk_dense(cam * (1 - boundary), affinity=affinity, radius=5, beta=10.0, steps=3),
                               rtol=1e-10, atol=1e-12)


def test_boundary_walk_does_not_cross_a_wall():
    cam = torch.zeros(1, 10, 12)
    cam[0, 3:6, 1:3] = 1.0  # a seed left of the wall
    boundary = torch.zeros(10, 12)
    boundary[:, 6] = 1.0
    walked = boundary_walk(cam, boundary)
    assert torch.all(walked[..., 6:] == 0)  # nothing reaches the wall or beyond
    assert torch.all(walked[..., :6] > 0)  # the whole left side gets some score
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        boundary_walk(cam, boundary * 2)
    with pytest.raises(ValueError, match="grid"):
        boundary_walk(cam, boundary[:, :5])


def test_walk_scores_normalise_and_put_a_constant_background_first():
    walked = torch.zeros(2, 2, 3)
    walked[0, 0] = torch.tensor([4.0, 2.0, 0.5])
    walked[1, 1] = torch.tensor([0.0, 1.0, 3.0])
    scores = walk_scores(walked)  # IRN's 0.25
    assert scores.shape == (3, 2, 3)
    assert torch.all(scores[0] == 0.25)
    torch.testing.assert_close(scores[1:], walked / 4.0)
    labels = scores_to_labels(scores.numpy(), np.array([3, 7]))  # the existing arg-max with keys
    assert labels.tolist() == [[4, 4, 0], [0, 0, 8]]
    assert walk_scores(walked, size=(4, 6)).shape == (3, 4, 6)
    assert torch.all(walk_scores(torch.zeros(1, 2, 3))[1:] == 0)
    assert walk_scores(torch.zeros(0, 2, 3), size=(4, 5)).shape == (1, 4, 5)
    # irn.walk_normalize: none keeps the walked maps on the CAMs' scale: 0.1 loses to a 0.15
    # background there, but wins once divided by the maximum (0.25)
    small = walked / 10
    kept = walk_scores(small, 0.15, normalize=False)
    torch.testing.assert_close(kept[1:], small)
    assert scores_to_labels(kept.numpy(), np.array([3, 7])).tolist() == [[4, 4, 0], [0, 0, 8]]
    assert scores_to_labels(walk_scores(small, 0.15).numpy(), np.array([3, 7])).tolist() == [[4, 4, 0], [0, 8, 8]]


# ------------------------------------------------------------------ the pipeline, end to end


EPOCHS = 4


@pytest.fixture(scope="module")
def irn_run(cam_run, tmp_path_factory):
    """A copy of the shared tiny CAM run gone on through IRN's steps, via the CLI."""
    import yaml

    from wsss.cli import main

    _, config, cam_run_dir = cam_run
    tmp = tmp_path_factory.mktemp("irn_run")
    settings = yaml.safe_load(config.read_text())
    settings["pipeline"] = "irn"
    # thresholds from these CAMs (their best background threshold is far from IRN's VOC values)
    settings["irn"] = {"epochs": EPOCHS, "batch_size": 8, "lr": 0.1, "resize_long": [56, 72], "crop_size": 64,
                       "radius": 5, "steps": 64, "eval_splits": ["train"], "seeds": "auto",
                       "walk_bg_threshold": None}
    irn_config = tmp / "irn.yaml"
    irn_config.write_text(yaml.safe_dump(settings))
    run_dir = tmp / "run"
    shutil.copytree(cam_run_dir, run_dir)
    common = ["--config", str(irn_config), "--run-dir", str(run_dir), "--no-progress"]
    assert main(["make-irn-labels", *common]) == 0
    assert main(["train-irn", *common]) == 0
    assert main(["make-irn-pseudo", *common, "--split", "train"]) == 0
    assert main(["eval-pseudo", *common, "--split", "train"]) == 0
    return irn_config, run_dir, common


def _edge_auc(net, voc, count=8) -> float:
    """How often a cell on the masks' outlines has a higher boundary value than a cell inside a
    region (the area under the ROC curve, over the first ``count`` images' stride-4 cells): 0.5 for
    a map that knows nothing of the outlines, 1.0 when every outline cell ranks above every other."""
    on_edge, inside = [], []
    for index in range(count):
        image = voc.load_image(index)
        with torch.inference_mode():
            boundary = net.boundary_with_flip(torch.from_numpy(image).permute(2, 0, 1).float()[None])[0, 0]
        mask = torch.from_numpy(voc.load_mask(index, image.shape[:2]).astype(np.int64))
        grid = mask[2::4, 2::4][: boundary.shape[0], : boundary.shape[1]]  # the stride-4 cells' centres
        edge = torch.zeros_like(grid, dtype=torch.bool)
        edge[:, 1:] |= grid[:, 1:] != grid[:, :-1]
        edge[1:, :] |= grid[1:, :] != grid[:-1, :]
        on_edge.append(boundary[edge])
        inside.append(boundary[~edge])
    return auc(torch.cat(on_edge), torch.cat(inside))


def test_irn_pipeline_on_generated_data(irn_run, tiny_dataset, tmp_path):
    """Seeds -> boundary network -> walk on the tiny generated set: the trained boundary map ranks
    the shapes' outlines above their insides (the untrained one does not), and the walk writes labels."""
    import json

    from PIL import Image

    from wsss.data.voc import VocDataset
    from wsss.io import load_mask
    from wsss.models import load_model

    _, run_dir, _ = irn_run
    seeds = sorted((run_dir / "irn_labels" / "train").glob("*.png"))
    assert len(seeds) == 32 and set(np.unique(np.asarray(Image.open(seeds[0])))) <= {0, 1, 2, 3, 4, 5, 255}
    log = [json.loads(line) for line in (run_dir / "irn" / "train_log.jsonl").read_text().splitlines()]
    # (no bound on the loss curve: its first and last epochs differ by 0.04-0.5 with the CPU's
    # kernels; what the branch learnt is checked on the boundary map below)
    assert len(log) == EPOCHS * 4 and all(np.isfinite(r["loss"]) for r in log)

    # the trained boundary map separates the ground truth's outlines from the regions' insides
    voc = VocDataset(tiny_dataset, "train")
    twin = untrained_twin(run_dir / "irn" / "model.pt", tmp_path / "untrained_irn.pt")
    trained_auc = _edge_auc(load_model(run_dir / "irn" / "model.pt", kind="irn").model, voc)
    untrained_auc = _edge_auc(load_model(twin, kind="irn").model, voc)
    assert_beats("IRN boundary: outline cells ranked above inside cells (AUC; reference: chance)", trained_auc, 0.5, 0.1,
                 untrained=untrained_auc)

    for kind in ("rw", "rw_crf"):
        pngs = sorted((run_dir / "irn_pseudo" / "train" / kind).glob("*.png"))
        assert len(pngs) == 32 and load_mask(pngs[0]).shape == (80, 80)
    result = json.loads((run_dir / "eval" / "pseudo_train.json").read_text())["results"]
    # The walk's labels are not held to a bound: on this tiny set the walk on the untrained
    # network's near-constant boundaries (a plain diffusion) scores higher than the trained one.
    assert 0 < result["rw"]["miou"] <= 100
    settings = json.loads((run_dir / "irn_pseudo" / "train" / "settings.json").read_text())
    # t* from the train CAMs alone (cam.bg_threshold: auto): no mask chose it
    record = json.loads((run_dir / "eval" / "cam_threshold_train.json").read_text())
    assert record["method"] == "evidence" and record["masks"] == "none read"
    assert settings["method"] == "irn" and settings["bg_threshold"] == pytest.approx(record["threshold"])


def test_irn_tune_and_segmentation_on_its_labels(irn_run, capsys):
    """`wsss tune` sweeps IRN's walk under pipeline: irn, and train-seg trains on IRN's labels."""
    from wsss.cli import main

    _, run_dir, common = irn_run
    assert main(["tune", *common, "--split", "train", "--limit", "6", "--beta", "10", "--steps", "16",
                 "--bg-threshold", "0.25", "0.4"]) == 0
    out = capsys.readouterr().out
    assert "--set irn.beta=10 --set irn.steps=16 --set irn.walk_bg_threshold=" in out
    assert main(["train-seg", *common, "--set", "seg.epochs=1", "--set", "seg.crop_size=64",
                 "--set", "seg.resize_long=[56,72]", "--max-steps", "2"]) == 0
    assert (run_dir / "seg" / "model.pt").exists()


def test_irn_model_kind_is_checked(irn_run, capsys):
    """make-psa-pseudo (PSA) refuses IRN's network with a line naming both kinds."""
    from wsss.cli import main

    _, run_dir, common = irn_run
    assert main(["make-psa-pseudo", *common, "--split", "train", "--checkpoint", str(run_dir / "irn" / "model.pt")]) == 2
    assert "not an AffinityNet model (its kind: 'irn'); pass the model.pt of `wsss train-psa`" in capsys.readouterr().err


def test_walked_background_equals_the_dense_walk_of_psas_input():
    """irn.walk_background: walked: PSA's (K+1)-channel input walked on IRN's affinities is the
    dense formula's walk of it with a_ij = 1 - max of B on the segment, and stays in one region."""
    from wsss.irn.walk import walked_background_scores
    from wsss.walk.affinity import random_walk_dense

    torch.manual_seed(0)
    boundary = torch.zeros(1, 6, 8)
    boundary[0, :, 4] = 1.0  # a wall between the left and the right half
    scores = torch.zeros(2, 6, 8, dtype=torch.float64)
    scores[0, :, 5:] = 1.0  # background seeded right of the wall
    scores[1, 2, 1] = 1.0  # the class seeded at one pixel on the left
    walked = walked_background_scores(scores, boundary.double(), radius=2, beta=3.0, steps=16)
    affinity, _ = path_max_affinity(boundary[None].double(), pair_offsets(2, half=True))
    dense = random_walk_dense(scores, affinity=affinity[0], radius=2, beta=3.0, steps=16)
    torch.testing.assert_close(walked, dense)
    assert walked[1, :, :4].sum() > 0.99 * walked[1].sum()  # the class did not cross the wall
