"""IRN's boundary-aware random walk and the scores its semantic pseudo labels are read from.

Reference: Ahn, Cho & Kwak, CVPR 2019 (IRN), Sec. 5 (synthesizing pseudo labels), and
github.com/jiwoon-ahn/irn (misc/indexing.py propagate_to_edge, step/make_sem_seg_labels.py):

* [transition]  T = D^-1 A^(o beta), A = [a_ij] the path-maximum affinities of the class-boundary
                map within radius 5 (``path_max_affinity``), a_ii = 1, beta = 10.
* [walk]        vec(M*_c) = T^t vec(M_c o (1 - B)): each CAM is first multiplied by 1 - B, so
                boundary pixels start with no score. The code squares T eight times
                (exp_times 8, to_transition_matrix), i.e. t = 2^8 = 256 steps.
* [labels]      the walked maps of the image's classes (background is not walked) are
                upsampled x4 to the image, divided by their global maximum, and compete with a
                constant background score of 0.25 (sem_seg_bg_thres) in an arg-max.

Shapes: ``C`` the image's foreground classes, ``h, w`` the stride-4 grid, ``H, W`` the image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..walk.affinity import pair_offsets, random_walk
from .boundary import path_max_affinity

__all__ = ["IRN_WALK_RADIUS", "IRN_BETA", "IRN_STEPS", "IRN_SEM_BG_THRESHOLD", "boundary_walk", "walk_scores"]

IRN_WALK_RADIUS = 5
"""[transition] pair radius of the walk (propagate_to_edge's radius=5)."""

IRN_BETA = 10.0
"""[transition] exponent of the affinities (run_sample.py --beta 10)."""

IRN_STEPS = 256
"""[walk] t: IRN squares T exp_times = 8 times, T^(2^8)."""

IRN_SEM_BG_THRESHOLD = 0.25
"""[labels] constant background score against the max-normalised walked maps (sem_seg_bg_thres)."""


def boundary_walk(
    cam: Tensor,
    boundary: Tensor,
    *,
    radius: int = IRN_WALK_RADIUS,
    beta: float = IRN_BETA,
    steps: int = IRN_STEPS,
) -> Tensor:
    """[transition] + [walk]: T^t vec(M_c o (1 - B)) with T built from the boundary map.

    Args:
        cam: (C, h, w) floating CAMs on the boundary's grid (IRN: the stride-4 CAMs of the
            image's classes, each normalised to max 1; no background channel).
        boundary: (h, w) or (1, h, w) class-boundary map B in [0, 1] (IRN: the sigmoid of the
            mean of the logits of the image and of its flip, ``IRNet.boundary_with_flip``).
        radius, beta, steps: as in ``wsss.walk.affinity.random_walk``; IRN 5, 10, 256.

    Returns:
        (C, h, w) walked maps, ``cam``'s dtype and device, no gradient.
    """
    if not isinstance(boundary, Tensor) or boundary.dim() not in (2, 3) or boundary.shape[:-2] not in ((), (1,)):
        raise ValueError(f"boundary must be (h, w) or (1, h, w), got {_shape(boundary)}")
    if not isinstance(cam, Tensor) or cam.dim() != 3 or cam.shape[-2:] != boundary.shape[-2:]:
        grid = tuple(boundary.shape[-2:])
        raise ValueError(f"cam must be (C, h, w) on the boundary's grid {grid}, got {_shape(cam)}")
    with torch.no_grad():
        edge = boundary.detach().reshape(1, *boundary.shape[-2:]).to(cam.device)
        if not edge.is_floating_point() or not torch.isfinite(edge).all() or edge.min() < 0 or edge.max() > 1:
            raise ValueError("boundary must be a floating map with values in [0, 1]")
        affinity, _ = path_max_affinity(edge, pair_offsets(radius, half=True))  # (K, h, w)
        return random_walk(cam * (1 - edge).to(cam.dtype), affinity=affinity, radius=radius, beta=beta, steps=steps)


def walked_background_scores(
    scores: Tensor, boundary: Tensor, *, radius: int = IRN_WALK_RADIUS, beta: float = IRN_BETA, steps: int = IRN_STEPS
) -> Tensor:
    """PSA's walk input on IRN's affinities: (K+1, h, w) scores with the background score first
    (``wsss.walk.seeds.scores_with_background`` on the grid) -> the same, walked with T from the
    boundary map's path maxima. No channel is multiplied by 1 - B: background and classes spread
    alike, and the arg-max decides between them as in PSA."""
    with torch.no_grad():
        edge = boundary.detach().reshape(1, *boundary.shape[-2:]).to(scores.device)
        affinity, _ = path_max_affinity(edge, pair_offsets(radius, half=True))
        return random_walk(scores, affinity=affinity, radius=radius, beta=beta, steps=steps)


def walk_scores(
    walked: Tensor, bg_threshold: float = IRN_SEM_BG_THRESHOLD, size: tuple[int, int] | None = None,
    normalize: bool = True,
) -> Tensor:
    """[labels] (C, h, w) walked maps -> (C + 1, H, W) scores, background first.

    The maps are bilinearly resized to ``size`` (when given; IRN: x4, cropped to the image),
    divided by their maximum over all classes and pixels (IRN; with ``normalize`` False they
    stay on the scale of the CAMs they were walked from, each normalised to max 1 before the
    walk, whose column-stochastic T keeps their mass), and a constant ``bg_threshold``
    channel is put in front. ``wsss.walk.seeds.scores_to_labels(scores, keys)`` arg-maxes them into
    a label map, as for PSA's walked scores.

    Returns:
        (C + 1, H, W) tensor in ``walked``'s dtype; with no class (C = 0) or an all-zero
        ``walked``, every pixel is background.
    """
    if not isinstance(walked, Tensor) or walked.dim() != 3:
        raise ValueError(f"walked must be a (C, h, w) tensor, got {_shape(walked)}")
    if not 0 <= bg_threshold <= 1:
        raise ValueError(f"bg_threshold must be in [0, 1], got {bg_threshold}")
    if size is not None and walked.shape[0]:
        walked = F.interpolate(walked[None], size=tuple(size), mode="bilinear", align_corners=False)[0]
    elif size is not None:
        walked = walked.new_zeros(0, *size)
    peak = float(walked.max()) if walked.numel() else 0.0
    if not normalize:
        normalised = walked
    else:
        normalised = walked / peak if peak > 0 else torch.zeros_like(walked)
    background = normalised.new_full((1, *normalised.shape[-2:]), float(bg_threshold))
    return torch.cat([background, normalised])


def _shape(value: object) -> str:
    return f"shape {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
