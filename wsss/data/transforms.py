"""Joint train-time augmentation of an image and its label maps.

Everything works on numpy arrays: the image is (H, W, 3) uint8 RGB, each label map (H, W)
uint8 (255 = ignore). Geometric steps move image and maps together; photometric steps touch
the image only. Randomness comes from a ``numpy.random.Generator`` passed in, so a run with
the same seed sees the same augmentations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..io import IGNORE_INDEX

# Padding colour for crops: the backbones' mean pixel, so padded areas look like "nothing".
PAD_COLOUR = (124, 116, 104)


def resize_image(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an (H, W, 3) uint8 image to ``size_hw``."""
    h, w = size_hw
    if image.shape[:2] == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))


def resize_labels(labels: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W) uint8 label map to ``size_hw``."""
    h, w = size_hw
    if labels.shape[:2] == (h, w):
        return labels
    return np.asarray(Image.fromarray(labels).resize((w, h), Image.NEAREST))


def rescale_long_side(image: np.ndarray, maps: list[np.ndarray], long_side: int):
    """Resize so that max(H, W) == long_side, keeping the aspect ratio."""
    h, w = image.shape[:2]
    scale = long_side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return resize_image(image, size), [resize_labels(m, size) for m in maps]


def color_jitter(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, contrast and saturation, each by a factor in [1 - s, 1 + s]."""
    if strength <= 0:
        return image
    out = image.astype(np.float32)
    for op in rng.permutation(3):
        factor = rng.uniform(1 - strength, 1 + strength)
        if op == 0:  # brightness
            out = out * factor
        elif op == 1:  # contrast: blend with the mean grey level
            grey = (out @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).mean()
            out = (out - grey) * factor + grey
        else:  # saturation: blend with the per-pixel grey
            grey = out @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            out = (out - grey[..., None]) * factor + grey[..., None]
        out = out.clip(0, 255)
    return out.astype(np.uint8)


def random_crop(image: np.ndarray, maps: list[np.ndarray], size: int, rng: np.random.Generator):
    """Crop a ``size`` x ``size`` window; smaller inputs are padded (image with the mean colour,
    maps with ignore) at a random position, as PSA does.

    Returns the cropped image, maps, and a (size, size) bool mask of the pixels that came from
    the image (False on padding).
    """
    h, w = image.shape[:2]
    canvas_h, canvas_w = max(h, size), max(w, size)
    top = rng.integers(0, canvas_h - h + 1)
    left = rng.integers(0, canvas_w - w + 1)
    canvas = np.empty((canvas_h, canvas_w, 3), dtype=np.uint8)
    canvas[:] = PAD_COLOUR
    canvas[top:top + h, left:left + w] = image
    valid = np.zeros((canvas_h, canvas_w), dtype=bool)
    valid[top:top + h, left:left + w] = True
    padded_maps = []
    for m in maps:
        pm = np.full((canvas_h, canvas_w), IGNORE_INDEX, dtype=np.uint8)
        pm[top:top + h, left:left + w] = m
        padded_maps.append(pm)
    y = rng.integers(0, canvas_h - size + 1)
    x = rng.integers(0, canvas_w - size + 1)
    window = (slice(y, y + size), slice(x, x + size))
    return canvas[window], [pm[window] for pm in padded_maps], valid[window]


@dataclass
class JointAugment:
    """Random rescale (long side in ``resize_long``), horizontal flip, colour jitter, crop."""

    resize_long: tuple[int, int]
    crop_size: int
    color_jitter: float = 0.3
    flip: bool = True

    @classmethod
    def from_config(cls, config) -> JointAugment:
        """From a config section with ``resize_long``, ``crop_size`` and ``color_jitter`` (AugmentConfig)."""
        return cls(tuple(config.resize_long), config.crop_size, config.color_jitter)

    def __call__(self, image: np.ndarray, maps: list[np.ndarray], rng: np.random.Generator):
        long_side = int(rng.integers(self.resize_long[0], self.resize_long[1] + 1))
        image, maps = rescale_long_side(image, maps, long_side)
        if self.flip and rng.random() < 0.5:
            image = image[:, ::-1]
            maps = [m[:, ::-1] for m in maps]
        image = color_jitter(image, self.color_jitter, rng)
        image, maps, valid = random_crop(image, maps, self.crop_size, rng)
        return np.ascontiguousarray(image), [np.ascontiguousarray(m) for m in maps], valid
