import json

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from tiny_run import untrained_classifier

from wsss.cam.algorithm import cam_from_features, multiscale_cam, normalize_cam
from wsss.cli import main
from wsss.cues.cam import background_score, cam_to_label
from wsss.data.demo import generate_demo_dataset
from wsss.data.voc import VocDataset
from wsss.inference import image_tensor, shrink_to_max_side
from wsss.models.backbone import build_backbone
from wsss.models.classifier import CamNet


def cam_fn(net: CamNet):
    """(B, 3, H, W) -> (B, C, h, w) CAMs of ``net``, as make-cam computes them."""
    return lambda batch: cam_from_features(net.features(batch), net.classifier.weight)

def test_cam_equals_classifier_on_pooled_features():
    # GAP then 1x1 conv == mean over positions of the (pre-ReLU) CAM: the CAM identity
    torch.manual_seed(0)
    feats = torch.randn(2, 8, 5, 6)
    weight = torch.randn(3, 8)
    logits = feats.mean((2, 3)) @ weight.T
    linear_cam = torch.einsum("bdhw,cd->bchw", feats, weight)
    torch.testing.assert_close(linear_cam.mean((2, 3)), logits)
    torch.testing.assert_close(cam_from_features(feats, weight), linear_cam.clamp_min(0))


def test_multiscale_flip_shapes_and_flip_consistency():
    torch.manual_seed(0)
    net = CamNet(build_backbone("efficientnet_lite0", 16, pretrained=False), 4).eval()
    image = torch.rand(3, 50, 70) * 255
    cam = multiscale_cam(cam_fn(net), image, [0.5, 1.0, 1.5], flip=True)
    assert cam.shape == (4, 50, 70) and (cam >= 0).all()
    # flipping the input flips the flip-averaged CAM (up to resampling round-off)
    flipped = multiscale_cam(cam_fn(net), image.flip(-1), [0.5, 1.0, 1.5], flip=True)
    torch.testing.assert_close(flipped, cam.flip(-1), rtol=1e-3, atol=1e-3)


def test_scale_sum_is_sum_of_single_scales():
    torch.manual_seed(0)
    net = CamNet(build_backbone("efficientnet_lite0", 16, pretrained=False), 2).eval()
    image = torch.rand(3, 48, 48) * 255
    both = multiscale_cam(cam_fn(net), image, [1.0, 2.0], flip=False)
    parts = multiscale_cam(cam_fn(net), image, [1.0], flip=False) + multiscale_cam(cam_fn(net), image, [2.0], flip=False)
    torch.testing.assert_close(both, parts)


def test_label_restriction_and_normalisation():
    cam = torch.rand(5, 8, 9) * 3
    label = np.array([0, 1, 0, 1, 0], dtype=np.float32)
    maps, keys = normalize_cam(cam, label)
    assert keys.tolist() == [1, 3] and maps.shape == (2, 8, 9)
    torch.testing.assert_close(maps.flatten(1).max(1).values, torch.ones(2), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(maps[0], cam[1] / cam[1].max(), rtol=1e-4, atol=1e-4)
    empty, no_keys = normalize_cam(cam, np.zeros(5))
    assert empty.shape == (0, 8, 9) and len(no_keys) == 0


def test_cam_to_label_and_background_score():
    cams = np.zeros((2, 2, 3), np.float32)
    cams[0, 0, 0] = 0.9
    cams[1, 0, 1] = 0.6
    cams[1, 1, 2] = 0.2
    keys = np.array([2, 4])
    np.testing.assert_array_equal(cam_to_label(cams, keys, 0.5), [[3, 5, 0], [0, 0, 0]])
    np.testing.assert_array_equal(cam_to_label(cams, keys, 0.1), [[3, 5, 0], [0, 0, 5]])
    assert cam_to_label(cams[:0], keys[:0], 0.5).shape == (2, 3)
    np.testing.assert_allclose(background_score(cams, 2.0)[0], [(1 - 0.9) ** 2, (1 - 0.6) ** 2, 1.0], rtol=1e-5)


def test_make_cam_shrinks_images_over_max_side_and_writes_cams_at_their_size(tmp_path, monkeypatch):
    root = generate_demo_dataset(tmp_path / "data", num_train=4, num_val=2, image_size=64, seed=2)
    classifier = tmp_path / "cam.pt"
    net = untrained_classifier(classifier, root)
    config = tmp_path / "cam.yaml"
    config.write_text(yaml.safe_dump({"device": "cpu", "data": {"root": str(root)}, "backbone": {"pretrained": False},
                                      "cam": {"scales": [1.0, 1.5], "flip": True}}))
    seen = []  # (h, w) of every batch the classifier gets
    features = CamNet.features
    monkeypatch.setattr(CamNet, "features", lambda self, batch: seen.append(tuple(batch.shape[-2:])) or features(self, batch))

    def make_cam(run, max_side):
        seen.clear()
        assert main(["make-cam", "--config", str(config), "--run-dir", str(tmp_path / run), "--checkpoint",
                     str(classifier), "--split", "train", "--no-progress", "--set", f"cam.max_side={max_side}"]) == 0
        folder = tmp_path / run / "cams" / "train"
        arrays = {}
        for path in sorted(folder.glob("*.npz")):
            with np.load(path) as data:
                arrays[path.stem] = (data["cams"], data["keys"])
        return arrays, json.loads((folder / "settings.json").read_text())

    unlimited, settings = make_cam("a", "null")
    assert "max_side" not in settings and len(unlimited) == 4 and set(seen) == {(64, 64), (96, 96)}
    # what make-cam wrote before max_side existed: the CAMs of the full-size image (make-cam's
    # network runs on NHWC memory, this reference on NCHW: equal to float16's step)
    voc = VocDataset(root, "train")
    with torch.inference_mode():
        full = multiscale_cam(cam_fn(net), image_tensor(voc.load_image(0), torch.device("cpu")), [1.0, 1.5], True)
        expected = normalize_cam(full, voc.labels[0])[0].numpy().astype(np.float16)
    np.testing.assert_allclose(unlimited[voc.ids[0]][0].astype(np.float32), expected.astype(np.float32), atol=1e-3)

    # images within max_side: the very same CAMs
    within, settings = make_cam("b", 64)
    assert settings["max_side"] == 64 and set(seen) == {(64, 64), (96, 96)}
    assert all(within[k][0].tobytes() == a.tobytes() and np.array_equal(within[k][1], b)
               for k, (a, b) in unlimited.items())

    # larger images: the network sees them shrunk, the CAMs are upsampled to the image's size and
    # normalised there; the changed setting restarts the folder
    shrunk, settings = make_cam("a", 32)
    assert settings["max_side"] == 32 and set(seen) == {(32, 32), (48, 48)}
    for index, image_id in enumerate(voc.ids):
        cams, keys = shrunk[image_id]
        assert cams.dtype == np.float16 and cams.shape == (len(keys), 64, 64)
        with torch.inference_mode():
            image = shrink_to_max_side(image_tensor(voc.load_image(index), torch.device("cpu")), 32)
            low = multiscale_cam(cam_fn(net), image, [1.0, 1.5], True)
            expected, expected_keys = normalize_cam(F.interpolate(low[None], size=(64, 64), mode="bilinear")[0],
                                                    voc.labels[index])
        assert np.array_equal(keys, expected_keys) and np.array_equal(keys, unlimited[image_id][1])
        np.testing.assert_allclose(cams, expected.numpy(), atol=1e-3)
    assert any(cams.tobytes() != unlimited[key][0].tobytes() for key, (cams, _) in shrunk.items() if len(cams))


def test_make_cams_faster_nhwc_network_agrees_with_the_plain_one(tmp_path):
    """make-cam runs its network on channels_last (NHWC) memory, 1.24x faster on CPU: its CAMs are
    those of the plain NCHW network to float32 rounding, on a classifier whose CAMs are of order 1."""
    from wsss.cam.make import CamMaker
    from wsss.config import load_config
    from wsss.run.context import RunContext

    root = generate_demo_dataset(tmp_path / "data", num_train=2, num_val=1, image_size=64, seed=3)
    classifier = tmp_path / "cam.pt"
    names = (root / "class_names.txt").read_text().split()
    torch.manual_seed(0)  # ImageNet features: a random backbone's are ~0, and so would its CAMs be
    net = CamNet(build_backbone("efficientnet_lite0", 16, pretrained=True), len(names) - 1).eval()
    with torch.no_grad():
        net.classifier.weight.normal_(0, 0.1)
    torch.save({"kind": "cam", "fingerprint": "test", "model": net.state_dict(), "meta": {"class_names": names}},
               classifier)
    config = load_config(None, ["device=cpu", f"data.root={root}", "backbone.pretrained=false"])
    maker = CamMaker(RunContext(tmp_path / "run", config, progress=False), "train", None, classifier, tmp_path / "out")
    voc = VocDataset(root, "train")
    with torch.inference_mode():
        batch = image_tensor(voc.load_image(0), torch.device("cpu"))[None]
        plain = cam_fn(net)(torch.cat([batch, batch.flip(-1)]))
        fast = maker.cam(torch.cat([batch, batch.flip(-1)]))
    assert next(maker.model.parameters()).is_contiguous(memory_format=torch.channels_last)
    assert plain.max() > 1
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-4 * float(plain.max()))
