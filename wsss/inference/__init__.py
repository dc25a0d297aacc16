"""Dense prediction at inference: an image as a tensor, multi-scale + flip sums, shrinking large
images and upsampling score maps back to them band by band (bounded memory).

Shared by every model that predicts maps: CAMs, segmentation, SSNet's saliency, the report.
"""

from __future__ import annotations

from typing import Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F


def image_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 0..255 on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1).float()


@torch.no_grad()
def multiscale_sum(score_fn, image: torch.Tensor, scales: Sequence[float], flip: bool = True) -> torch.Tensor:
    """Sum of dense score maps over scales (and flips), at the input resolution.

    Used for CAMs (PSA sums ReLU'd CAMs over scales 0.5-2 with flips) and for segmentation
    (average of softmax maps).

    Args:
        score_fn: maps a (B, 3, h, w) image batch to (B, C, h', w') score maps.
        image: (3, H, W) float RGB 0..255.
        scales: resize factors, e.g. (0.5, 1.0, 1.5, 2.0).
        flip: also run the horizontally flipped image and flip its scores back.
    Returns:
        (C, H, W) float32 sum over len(scales) * (2 if flip else 1) maps.
    """
    _, height, width = image.shape
    total = None
    for scale in scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        scaled = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False) if scale != 1 else image[None]
        batch = torch.cat([scaled, scaled.flip(-1)]) if flip else scaled
        maps = F.interpolate(score_fn(batch), size=(height, width), mode="bilinear", align_corners=False)
        summed = maps[0] + maps[1].flip(-1) if flip else maps[0]
        total = summed if total is None else total + summed
    return total.float()


def shrink_to_max_side(image: torch.Tensor, max_side: Optional[int]) -> torch.Tensor:
    """(3, H, W) float image -> the image shrunk (bilinear, antialiased) so that its longer side is
    ``max_side``; the very same tensor when it is no longer than that or ``max_side`` is None."""
    _, height, width = image.shape
    if not max_side or max(height, width) <= max_side:
        return image
    factor = max_side / max(height, width)
    size = (max(1, round(height * factor)), max(1, round(width * factor)))
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]


def upsampled_rows(maps: torch.Tensor, size: tuple[int, int],
                   budget: int = 1 << 24) -> Iterator[tuple[slice, torch.Tensor]]:
    """Bilinear upsampling of (C, h, w) maps to (C, H, W) -- what ``F.interpolate(align_corners=False)``
    gives, up to float rounding -- as (row slice, (C, rows, W) band) pairs of about ``budget``
    values each, for outputs too large to hold at once (C x H x W floats of a large photo)."""
    channels, low_height, _ = maps.shape
    height, width = size
    rows = max(1, budget // max(1, channels * width))
    for start in range(0, height, rows):
        stop = min(start + rows, height)
        # source row of output row y (align_corners=False): (y + 0.5) * h / H - 0.5, clamped at 0
        source = ((torch.arange(start, stop, dtype=torch.float32, device=maps.device) + 0.5)
                  * (low_height / height) - 0.5).clamp(min=0)
        top = source.long().clamp(max=low_height - 1)
        weight = (source - top)[:, None]
        band = maps[:, top] * (1 - weight) + maps[:, (top + 1).clamp(max=low_height - 1)] * weight
        # rows are done: interpolating to the band's own height leaves them as they are
        yield slice(start, stop), F.interpolate(band[None], size=(stop - start, width), mode="bilinear",
                                                align_corners=False)[0]


def upsample(maps: torch.Tensor | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C, h, w) maps -> (C, H, W) float32 numpy array, bilinear (band by band); as they are when of that size."""
    maps = torch.as_tensor(maps)
    if tuple(maps.shape[1:]) == tuple(size):
        return maps.cpu().numpy()
    out = np.empty((maps.shape[0], *size), dtype=np.float32)
    for rows, band in upsampled_rows(maps.float(), size):
        out[:, rows] = band.cpu().numpy()
    return out
