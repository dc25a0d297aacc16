"""Class-boundary affinities and IRN's boundary loss.

Reference: Ahn, Cho & Kwak, CVPR 2019 (IRN), Sec. 4 (IRNet, class boundary detection), and
github.com/jiwoon-ahn/irn (misc/indexing.py, step/train_irn.py). Tags used below:

* [path]      Pi_ij: the pixels on the segment from i to j. IRN takes the grid points of the
              segment's bounding box whose distance to the line through i and j is below one
              pixel (so both ends, and on a diagonal step both side pixels, are included: no
              segment crosses a one-pixel-wide boundary line without touching it).
* [affinity]  a_ij = 1 - max_{k in Pi_ij} B(x_k), B the class-boundary map in [0, 1].
* [loss]      L = - sum_{P+_fg} log a_ij / (2 |P+_fg|) - sum_{P+_bg} log a_ij / (2 |P+_bg|)
                  - sum_{P-} log(1 - a_ij) / |P-|.
              The code trains on (pos + neg) / 2 with pos = L+_bg / 2 + L+_fg / 2 (its class-
              boundary part of the total loss), i.e. L+_bg / 4 + L+_fg / 4 + L- / 2, logs with
              eps 1e-5, means over the pairs of the whole batch: exactly AffinityNet's loss
              (``wsss.walk.affinity.affinity_loss``), which is reused here.

Shapes: ``B`` a batch, ``h, w`` the boundary map's grid (stride 4), ``K`` pair offsets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..walk.affinity import _offset_list, _pair_valid, affinity_loss

__all__ = ["path_pixels", "path_max_affinity", "boundary_loss"]


def path_pixels(offset: tuple[int, int]) -> list[tuple[int, int]]:
    """[path] The pixels Pi_ij of the segment from i to j = i + offset, relative to i.

    A pixel (y, x) of the bounding box of (0, 0) and (dy, dx) is on the path when its distance
    |dy x - dx y| / |offset| to the line through both ends is below 1. Both ends are included.

    Returns:
        The (y, x) pairs in row-major order; [(0, 0)] for the zero offset.
    """
    dy, dx = int(offset[0]), int(offset[1])
    length_sq = dy * dy + dx * dx
    return [
        (y, x)
        for y in range(min(0, dy), max(0, dy) + 1)
        for x in range(min(0, dx), max(0, dx) + 1)
        if length_sq == 0 or (dy * x - dx * y) ** 2 < length_sq
    ]


def path_max_affinity(boundary: Tensor, offsets: Tensor) -> tuple[Tensor, Tensor]:
    """[affinity] a_ij = 1 - max of the boundary map over the path from i to j, for every pair.

    The maximum is located without autograd and its value then gathered from ``boundary``, so
    the gradient flows to the arg-max pixel of each path (as through IRN's max-pooling) while
    no (paths x pixels) stack is kept for the backward pass.

    Args:
        boundary: (B, 1, h, w) or (1, h, w) class-boundary map B, values in [0, 1].
        offsets: (K, 2) long (dy, dx) pairs, e.g. ``relation_offsets(10)`` (training) or
            ``pair_offsets(5, half=True)`` (the walk).

    Returns:
        ``(affinity, valid)``, the layout of ``wsss.walk.affinity.affinity_from_features``:
        affinity: (B, K, h, w) or (K, h, w), ``boundary``'s dtype, differentiable; entry
            [k, y, x] is a_ij for i = (y, x), j = (y + dy_k, x + dx_k), and 0 where j leaves
            the image.
        valid: bool (K, h, w), True where j is inside the image.
    """
    if not isinstance(boundary, Tensor) or boundary.dim() not in (3, 4) or boundary.shape[-3] != 1:
        shape = tuple(boundary.shape) if isinstance(boundary, Tensor) else type(boundary).__name__
        raise ValueError(f"boundary must be (B, 1, h, w) or (1, h, w), got {shape}")
    if not boundary.is_floating_point():
        raise ValueError(f"boundary must be a floating tensor, got dtype {boundary.dtype}")
    offsets_ = _offset_list(offsets)
    h, w = boundary.shape[-2:]
    device = boundary.device
    r = max((max(abs(dy), abs(dx)) for dy, dx in offsets_), default=0)
    # Padding with 1 ("boundary everywhere outside") keeps every slice in range; pairs leaving
    # the image are masked below anyway (a path of an in-image pair stays in its bounding box).
    padded = F.pad(boundary, (r, r, r, r), value=1.0)
    width = w + 2 * r
    flat = padded.flatten(-3)  # (B, P) or (P,): P = (h + 2r) (w + 2r)
    rows = (torch.arange(h, device=device) + r) * width
    origin = rows[:, None] + torch.arange(w, device=device)[None, :] + r  # (h, w) flat index of i
    picks = []
    with torch.no_grad():
        for dy, dx in offsets_:
            pixels = path_pixels((dy, dx))
            views = torch.stack([padded[..., 0, r + y : r + y + h, r + x : r + x + w] for y, x in pixels])
            shifts = torch.tensor([y * width + x for y, x in pixels], device=device)
            picks.append(origin + shifts[views.argmax(dim=0)])  # flat index of the path's maximum
    lead = boundary.shape[:-3]
    index = torch.stack(picks, dim=-3) if picks else torch.empty(*lead, 0, h, w, dtype=torch.long, device=device)
    maximum = flat.gather(-1, index.flatten(-3)).reshape(index.shape)
    valid = _pair_valid(offsets_, h, w, device)
    return (1.0 - maximum).masked_fill(~valid, 0.0), valid


def boundary_loss(
    boundary: Tensor, offsets: Tensor, bg_pos: Tensor, fg_pos: Tensor, neg: Tensor
) -> tuple[Tensor, dict[str, float]]:
    """[loss] IRN's class-boundary loss on the path-maximum affinities of ``boundary``.

    Args:
        boundary: (B, 1, h, w) class-boundary map in [0, 1] (``IRNet``'s output).
        offsets: (K, 2) the offsets the masks were made for (``relation_offsets``).
        bg_pos, fg_pos, neg: bool (B, K, h, w) pair labels (``relation_labels``).

    Returns:
        ``(loss, stats)`` of ``wsss.walk.affinity.affinity_loss``: L+_bg / 4 + L+_fg / 4 + L- / 2, a
        differentiable 0-dim tensor, and the terms and pair counts as Python numbers.
    """
    affinity, _ = path_max_affinity(boundary, offsets)
    return affinity_loss(affinity, bg_pos, fg_pos, neg)
