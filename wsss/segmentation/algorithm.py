"""The segmentation step's own arithmetic on pseudo labels."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..io import IGNORE_INDEX


def ignore_boundaries(label: np.ndarray, radius: int) -> np.ndarray:
    """The label map with every pixel within ``radius`` (a (2r+1)^2 square) of another label set to
    255: pseudo labels are least sure at their borders, and the network then places the borders
    itself from what the labels' interiors teach it.

    Args:
        label: (H, W) uint8 label map (255 = ignored already).
    Returns:
        (H, W) uint8, a new array; ``label`` itself when radius is 0.
    """
    if radius <= 0:
        return label
    size = 2 * radius + 1
    band = ndimage.maximum_filter(label, size=size, mode="nearest") != ndimage.minimum_filter(label, size=size, mode="nearest")
    return np.where(band, np.uint8(IGNORE_INDEX), label).astype(np.uint8)


class BoundaryIgnored:
    """index -> label map with its borders ignored (:func:`ignore_boundaries`); picklable for workers."""

    def __init__(self, labels, radius: int):
        self.labels, self.radius = labels, radius

    def __call__(self, index: int) -> np.ndarray:
        return ignore_boundaries(self.labels(index), self.radius)
