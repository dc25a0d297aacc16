import numpy as np
import torch

from wsss.cam import background_score, cam_from_features, cam_to_label, multiscale_cam, normalize_cam
from wsss.models.backbone import build_backbone
from wsss.models.classifier import CamNet


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
    cam = multiscale_cam(net.cam, image, [0.5, 1.0, 1.5], flip=True)
    assert cam.shape == (4, 50, 70) and (cam >= 0).all()
    # flipping the input flips the flip-averaged CAM (up to resampling round-off)
    flipped = multiscale_cam(net.cam, image.flip(-1), [0.5, 1.0, 1.5], flip=True)
    torch.testing.assert_close(flipped, cam.flip(-1), rtol=1e-3, atol=1e-3)


def test_scale_sum_is_sum_of_single_scales():
    torch.manual_seed(0)
    net = CamNet(build_backbone("efficientnet_lite0", 16, pretrained=False), 2).eval()
    image = torch.rand(3, 48, 48) * 255
    both = multiscale_cam(net.cam, image, [1.0, 2.0], flip=False)
    parts = multiscale_cam(net.cam, image, [1.0], flip=False) + multiscale_cam(net.cam, image, [2.0], flip=False)
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
