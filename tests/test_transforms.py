import numpy as np

from wsss.data.transforms import JointAugment, random_crop
from wsss.io import IGNORE_INDEX


def test_crop_pads_small_images_with_ignore():
    rng = np.random.default_rng(0)
    image = np.full((10, 20, 3), 7, np.uint8)
    mask = np.ones((10, 20), np.uint8)
    out, (m,), valid = random_crop(image, [mask], 32, rng)
    assert out.shape == (32, 32, 3) and m.shape == (32, 32)
    assert valid.sum() == 200 and (m[valid] == 1).all() and (m[~valid] == IGNORE_INDEX).all()
    assert (out[valid] == 7).all()


def test_joint_augment_keeps_image_and_mask_aligned():
    # the mask marks exactly the red pixels; after any augmentation it still must
    image = np.zeros((40, 60, 3), np.uint8)
    mask = np.zeros((40, 60), np.uint8)
    image[10:30, 5:25] = (255, 0, 0)
    mask[10:30, 5:25] = 1
    augment = JointAugment(resize_long=(30, 90), crop_size=48, color_jitter=0.0)
    for seed in range(10):
        out, (m,), valid = augment(image, [mask], np.random.default_rng(seed))
        red = (out[..., 0] > 128) & (out[..., 1] < 100) & valid
        agree = (red == (m == 1))[valid & (m != IGNORE_INDEX)]
        assert agree.mean() > 0.97


def test_same_seed_same_augmentation():
    image = np.random.default_rng(1).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    augment = JointAugment(resize_long=(40, 80), crop_size=32)
    a = augment(image, [], np.random.default_rng(5))[0]
    b = augment(image, [], np.random.default_rng(5))[0]
    np.testing.assert_array_equal(a, b)
