import pytest
import torch
import torch.nn.functional as F

from wsss.errors import WsssError
from wsss.models.backbone import EfficientNetLite, build_backbone


def test_pretrained_lite0_recognises_a_cat():
    skimage_data = pytest.importorskip("skimage.data")
    net = EfficientNetLite("efficientnet_lite0", 32, with_classifier=True)
    net.load_imagenet_weights()
    net.eval()
    image = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1)[None].float()
    image = F.interpolate(image, size=(224, 224), mode="bilinear", align_corners=False)
    with torch.no_grad():
        top5 = net.imagenet_logits(image).topk(5).indices[0].tolist()
    assert any(281 <= c <= 285 for c in top5), top5  # ImageNet's domestic cats


def test_untrained_network_does_not_recognise_the_cat():
    # the check above must depend on the weights, not on luck
    skimage_data = pytest.importorskip("skimage.data")
    torch.manual_seed(0)
    net = EfficientNetLite("efficientnet_lite0", 32, with_classifier=True).eval()
    image = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        top1 = net.imagenet_logits(F.interpolate(image, size=(224, 224))).argmax().item()
    assert not 281 <= top1 <= 285


@pytest.mark.parametrize("stride", [32, 16, 8])
def test_output_stride_and_levels(stride):
    net = build_backbone("efficientnet_lite0", stride, pretrained=False).eval()
    with torch.no_grad():
        levels = net(torch.zeros(1, 3, 96, 128))
    assert [f.shape[1] for f in levels] == net.channels == [24, 40, 112, 1280]
    assert levels[-1].shape[-2:] == (96 // stride, 128 // stride)
    assert net.strides[-1] == stride
    for f, s in zip(levels, net.strides):
        assert f.shape[-2:] == (96 // s, 128 // s)


def test_dilated_backbone_keeps_pretrained_behaviour():
    # stride-16 features are the stride-32 ones computed densely: pooled, they agree closely
    torch.manual_seed(0)
    a = build_backbone("efficientnet_lite0", 32).eval()
    b = build_backbone("efficientnet_lite0", 16).eval()
    x = torch.rand(1, 3, 128, 128) * 255
    with torch.no_grad():
        fa, fb = a(x)[-1].mean((2, 3)), b(x)[-1].mean((2, 3))
    assert F.cosine_similarity(fa, fb).item() > 0.8


@pytest.mark.parametrize("variant,channels", [("efficientnet_lite1", 112), ("efficientnet_lite2", 120)])
def test_other_variants_load_strictly(variant, channels):
    net = build_backbone(variant, 16, pretrained=True)
    assert net.channels[2] == channels


def test_user_checkpoint_loading(tmp_path):
    net = build_backbone("efficientnet_lite0", 32, pretrained=False)
    path = tmp_path / "mine.pt"
    torch.save({"state_dict": net.state_dict()}, path)
    loaded = build_backbone("efficientnet_lite0", 16, pretrained=True, checkpoint=path)
    torch.testing.assert_close(loaded._conv_stem.weight, net._conv_stem.weight)
    wrong = tmp_path / "wrong.pt"
    torch.save(build_backbone("efficientnet_lite2", 32, pretrained=False).state_dict(), wrong)
    with pytest.raises(WsssError, match="does not fit|cannot load"):
        build_backbone("efficientnet_lite0", 32, checkpoint=wrong)
    with pytest.raises(WsssError, match="unknown backbone"):
        build_backbone("resnet1000")
