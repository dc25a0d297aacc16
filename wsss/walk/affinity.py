"""Pixel-pair affinities, the AffinityNet loss and PSA's random walk.

Reference: J. Ahn and S. Kwak, "Learning Pixel-level Semantic Affinity with Image-level
Supervision for Weakly Supervised Semantic Segmentation", CVPR 2018 (PSA), and its code,
github.com/jiwoon-ahn/psa. The paper's formulas, cited below by these tags:

* [affinity]    (Sec. 3.2) a_ij = exp(-||f_i - f_j||_1) for AffinityNet features f; the code
                (and this module) uses the mean over the D channels instead of the sum.
* [pairs]       (Sec. 3.2) P = {(i, j) | d(i, j) < gamma, i != j}, gamma = ``radius``.
* [labels]      (Sec. 3.2) P+_bg: both ends background; P+_fg: both ends the same foreground
                class; P-: different classes; pairs touching an unknown pixel are not used.
* [loss]        (Sec. 3.2) L = L+_fg + L+_bg + 2 L-, each term a mean over its own pairs of
                -log a_ij (positives) or -log(1 - a_ij) (negatives); the code trains on
                L / 4 = L+_bg / 4 + L+_fg / 4 + L- / 2, as done here.
* [transition]  (Sec. 3.3) T = D^-1 W^(o beta): W = [a_ij] on P, a_ii = 1, raised element-wise
                to beta, and D the diagonal of its row sums.
* [walk]        (Sec. 3.3) vec(M*_c) = T^t vec(M_c) for every class map M_c, t steps.

The walk also takes the affinities a_ij themselves, one value per pixel and half offset, in
place of features: IRN (``wsss.irn``) builds the same T from its class-boundary affinities.

Shapes: ``h, w`` a feature-map grid, ``N = h * w`` pixels, ``D`` feature channels, ``C`` class
channels, ``K`` pair offsets, ``B`` a batch. A pixel is indexed in row-major order p = y * w + x;
the pair (p, o) joins pixel p to its neighbour p + o for an offset o = (dy, dx).
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from wsss import native
from wsss.io import IGNORE_INDEX

__all__ = [
    "pair_offsets",
    "affinity_from_features",
    "pair_labels",
    "affinity_loss",
    "random_walk",
    "random_walk_dense",
    "random_walk_dense_paper",
]


_NATIVE_DTYPES = (torch.float32, torch.float64)
"""The dtypes ``wsss.native``'s distance kernel computes in (others take the torch code)."""

LOG_EPS = 1e-5
"""The epsilon inside the logs of the affinity loss (PSA's train_aff.py)."""


# --------------------------------------------------------------------------- pair geometry


def pair_offsets(radius: int, *, half: bool = False) -> Tensor:
    """Neighbour offsets within ``radius`` (the pair set P of [pairs]), in lexicographic (dy, dx) order.

    Args:
        radius: gamma of [pairs]; an offset (dy, dx) != (0, 0) is kept when
            dy*dy + dx*dx < radius*radius. ``radius=5`` gives 68 offsets.
        half: keep one offset of each pair (o, -o): those with dy > 0, or dy == 0 and dx > 0
            (34 for radius 5). Each unordered pixel pair is then counted once, the form
            used by the training loss (and PSA's ``get_indices_of_pairs``, same order).

    Returns:
        LongTensor (K, 2) of (dy, dx) rows; (0, 2) when ``radius == 1``.
    """
    _check_radius(radius)
    radius = int(radius)
    span = range(-radius + 1, radius)
    offsets = [
        (dy, dx)
        for dy in span
        for dx in span
        if (dy, dx) != (0, 0)
        and dy * dy + dx * dx < radius * radius
        and (not half or dy > 0 or (dy == 0 and dx > 0))
    ]
    return torch.tensor(offsets, dtype=torch.long).reshape(-1, 2)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_radius(radius: object) -> None:
    if not _is_int(radius):
        raise ValueError(f"radius must be an int, got {radius!r}")
    if radius < 1:
        raise ValueError(f"radius must be >= 1, got {radius}")


def _offset_list(offsets: Tensor | list) -> list[tuple[int, int]]:
    """Offsets (K, 2) as a list of K (dy, dx) int tuples, validating the shape."""
    table = torch.as_tensor(offsets)
    if table.dtype.is_floating_point or table.dtype.is_complex or table.dtype == torch.bool:
        raise ValueError(f"offsets must be integers, got dtype {table.dtype}")
    if table.dim() != 2 or table.shape[1] != 2:
        raise ValueError(f"offsets must have shape (K, 2), got {tuple(table.shape)}")
    return [(int(dy), int(dx)) for dy, dx in table.tolist()]


def _pair_valid(offsets: list[tuple[int, int]], h: int, w: int, device) -> Tensor:
    """Bool (K, h, w): True where the neighbour (y + dy, x + dx) lies inside the h x w grid."""
    table = torch.tensor(offsets, dtype=torch.long, device=device).reshape(-1, 2)
    ys = torch.arange(h, device=device).view(1, h, 1) + table[:, 0].view(-1, 1, 1)
    xs = torch.arange(w, device=device).view(1, 1, w) + table[:, 1].view(-1, 1, 1)
    return (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)


def _mean_abs_diffs(flat: Tensor, shifts: list[int]) -> Tensor:
    """Mean absolute channel difference between pixels p and p + s, for each flat shift s.

    Args:
        flat: (..., D, N) features, pixels flattened row-major.
        shifts: K flat shifts; the offset (dy, dx) on a grid of width w is s = dy * w + dx.

    Returns:
        (..., K, N): out[..., k, p] = mean_d |flat[..., d, p] - flat[..., d, p + s_k]|, and 0
        where p + s_k falls outside [0, N). Pairs that wrap around a row end are computed
        too (a flat shift does not know about rows): callers mask them with ``_pair_valid``.

    Working on the flattened grid makes every neighbour a contiguous 1-D slice, which is
    about 10x faster on CPU than slicing the (h, w) grid. Without autograd, a CPU (D, N)
    input goes to the fused C++ kernel of ``wsss.native`` when it is available (one pass
    per pair instead of three: about 3x faster); otherwise the differences go through one
    preallocated scratch buffer (no allocation per offset).
    """
    *lead, depth, n = flat.shape
    in_place = not (torch.is_grad_enabled() and flat.requires_grad)
    if in_place and not lead and shifts and flat.device.type == "cpu" and flat.dtype in _NATIVE_DTYPES:
        kernels = native.kernels()
        if kernels is not None:
            return kernels.mean_abs_diffs(flat, torch.tensor(shifts, dtype=torch.long))
    out = flat.new_zeros(*lead, len(shifts), n)
    scratch = torch.empty_like(flat) if in_place and shifts else None
    pieces = []
    for k, s in enumerate(shifts):
        lo, hi = max(0, -s), min(n, n - s)  # pixels p whose p + s is a valid flat index
        if lo >= hi:
            pieces.append(flat.new_zeros(*lead, n))
            continue
        here, there = flat[..., lo:hi], flat[..., lo + s : hi + s]
        if scratch is not None:
            diff = scratch[..., : hi - lo]
            torch.sub(here, there, out=diff)
            diff.abs_()
            torch.sum(diff, dim=-2, out=out[..., k, lo:hi])
        else:
            pieces.append(F.pad((here - there).abs().sum(dim=-2), (lo, n - hi)))
    if scratch is None and shifts:
        out = torch.stack(pieces, dim=-2)
    return out / depth


# --------------------------------------------------------------------------- affinities


def affinity_from_features(features: Tensor, offsets: Tensor) -> tuple[Tensor, Tensor]:
    """AffinityNet's affinities a_ij = exp(-mean_d |f_i,d - f_j,d|) ([affinity]) for j = i + offset.

    Differentiable with respect to ``features`` (used to train AffinityNet).

    Args:
        features: (D, h, w) or (B, D, h, w) affinity embedding f_aff.
        offsets: (K, 2) long (dy, dx) pairs, e.g. ``pair_offsets(5, half=True)``.

    Returns:
        ``(affinity, valid)``:
        affinity: (K, h, w) or (B, K, h, w), same dtype as ``features``; entry [k, y, x] is
            the affinity between pixel (y, x) and (y + dy_k, x + dx_k). Pairs whose
            neighbour falls outside the image have affinity 0 ("no edge").
        valid: bool (K, h, w), True where the neighbour is inside the image.
    """
    if features.dim() not in (3, 4):
        raise ValueError(f"features must be (D, h, w) or (B, D, h, w), got {tuple(features.shape)}")
    if not features.is_floating_point():
        raise ValueError(f"features must be a floating tensor, got dtype {features.dtype}")
    offsets_ = _offset_list(offsets)
    h, w = features.shape[-2:]
    flat = features.reshape(*features.shape[:-2], h * w)
    distance = _mean_abs_diffs(flat, [dy * w + dx for dy, dx in offsets_])
    valid = _pair_valid(offsets_, h, w, features.device)
    affinity = torch.exp(-distance).reshape(*distance.shape[:-1], h, w).masked_fill(~valid, 0.0)
    return affinity, valid


def pair_labels(label_map: Tensor, offsets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Affinity labels of pixel pairs ([labels]) from a label map.

    Args:
        label_map: (h, w) or (B, h, w) integer map: 0 background, 1..254 foreground classes,
            ``IGNORE_INDEX`` (255) unknown: pairs touching such a pixel are neither positive nor negative.
        offsets: (K, 2) long (dy, dx) pairs, usually ``pair_offsets(radius, half=True)``.

    Returns:
        ``(bg_pos, fg_pos, neg)``, bool masks of shape (K, h, w) or (B, K, h, w) for the pair
        (pixel (y, x), pixel (y + dy_k, x + dx_k)):
        bg_pos: both ends background (P+_bg);
        fg_pos: both ends the same foreground class (P+_fg);
        neg: the ends have different known labels (P-).
        A pair with an unknown end, or whose neighbour falls outside the image, is in none.
    """
    if label_map.dim() not in (2, 3):
        raise ValueError(f"label_map must be (h, w) or (B, h, w), got {tuple(label_map.shape)}")
    if label_map.is_floating_point() or label_map.dtype == torch.bool:
        raise ValueError(f"label_map must be an integer tensor, got dtype {label_map.dtype}")
    offsets_ = _offset_list(offsets)
    labels = label_map.long()
    h, w = labels.shape[-2:]
    r = max((max(abs(dy), abs(dx)) for dy, dx in offsets_), default=0)
    # Padding with IGNORE_INDEX makes pairs leaving the image "unknown", hence ignored.
    padded = F.pad(labels, (r, r, r, r), value=IGNORE_INDEX)
    neighbours = [padded[..., r + dy : r + dy + h, r + dx : r + dx + w] for dy, dx in offsets_]
    there = torch.stack(neighbours, dim=-3) if neighbours else labels.new_empty(*labels.shape[:-2], 0, h, w)
    here = labels.unsqueeze(-3)
    known = (here != IGNORE_INDEX) & (there != IGNORE_INDEX)
    same = here == there
    bg_pos = known & same & (here == 0)
    fg_pos = known & same & (here != 0)
    neg = known & ~same
    return bg_pos, fg_pos, neg


def walk_on_grid(scores: Tensor, grid: tuple[int, int], walk: Callable[[Tensor], Tensor]) -> Tensor:
    """(K, H, W) image-size scores -> area-averaged down to the network's (h, w) ``grid`` (PSA:
    avg-pool by the stride), ``walk``ed there ((K, h, w) -> (K, h, w)), bilinearly upsampled back
    to (K, H, W). No channel (an image labelled with no class, IRN): (0, H, W) as it is."""
    size = tuple(scores.shape[-2:])
    if not len(scores):
        return scores
    low = F.adaptive_avg_pool2d(scores[None], tuple(grid))[0]
    return F.interpolate(walk(low)[None], size=size, mode="bilinear", align_corners=False)[0]


def downsample_labels(labels: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, H, W) label maps (seeds) -> (B, h, w) on a feature grid by nearest-neighbour sampling,
    which never mixes labels (PSA and IRN both bring their seeds to the grid this way)."""
    return F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()


def affinity_loss(
    affinity: Tensor, bg_pos: Tensor, fg_pos: Tensor, neg: Tensor
) -> tuple[Tensor, dict[str, float]]:
    """AffinityNet's training loss ([loss], scaled by 1/4 as in PSA's train_aff.py).

    loss = L+_bg / 4 + L+_fg / 4 + L- / 2, with
    L+_bg = mean over bg_pos pairs of -log(a + eps), L+_fg likewise over fg_pos, and
    L- = mean over neg pairs of -log(1 + eps - a); eps = ``LOG_EPS`` (1e-5). A term whose
    mask is empty contributes 0 (no NaN).

    Args:
        affinity: (B, K, h, w) affinities in [0, 1] (``affinity_from_features``); any shape works
            as long as the three masks have the same one.
        bg_pos, fg_pos, neg: bool masks of the same shape (``pair_labels``).

    Returns:
        ``(loss, stats)``: loss a differentiable 0-dim tensor; stats a dict of Python numbers:
        "loss", "bg_pos_loss", "fg_pos_loss", "neg_loss" (floats) and "bg_pos_count",
        "fg_pos_count", "neg_count" (ints).
    """
    for name, mask in (("bg_pos", bg_pos), ("fg_pos", fg_pos), ("neg", neg)):
        if mask.shape != affinity.shape:
            raise ValueError(
                f"{name} has shape {tuple(mask.shape)} but affinity has {tuple(affinity.shape)}"
            )
    log_pos = -torch.log(affinity + LOG_EPS)
    log_neg = -torch.log(1.0 + LOG_EPS - affinity)

    def masked_mean(values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        mask = mask.bool()
        count = mask.sum()
        return torch.where(mask, values, 0.0).sum() / count.clamp(min=1), count

    bg_term, bg_count = masked_mean(log_pos, bg_pos)
    fg_term, fg_count = masked_mean(log_pos, fg_pos)
    neg_term, neg_count = masked_mean(log_neg, neg)
    loss = bg_term / 4 + fg_term / 4 + neg_term / 2
    stats = {
        "loss": float(loss.detach()),
        "bg_pos_loss": float(bg_term.detach()),
        "fg_pos_loss": float(fg_term.detach()),
        "neg_loss": float(neg_term.detach()),
        "bg_pos_count": int(bg_count),
        "fg_pos_count": int(fg_count),
        "neg_count": int(neg_count),
    }
    return loss, stats


# --------------------------------------------------------------------------- random walk


def random_walk(
    cam: Tensor,
    features: Tensor | None = None,
    *,
    affinity: Tensor | None = None,
    radius: int = 5,
    beta: float = 8.0,
    steps: int = 256,
) -> Tensor:
    """PSA's random walk ([transition], [walk]): propagate class maps along pixel affinities.

    The affinities come from exactly one of ``features`` (AffinityNet's a_ij = exp(-mean L1),
    [affinity]) or ``affinity`` (given per pair, e.g. IRN's class-boundary affinities).
    Computes, without ever forming an N x N matrix, exactly the dense formula of PSA's
    infer_aff.py: with A[i, j] = a_ij^beta for pixel pairs closer than ``radius`` ([pairs]),
    A[i, i] = 1 and 0 elsewhere (A is symmetric),

        T = A / A.sum(dim=0)                 (each column sums to one)
        result = cam.reshape(C, N) @ T^steps, reshaped to (C, h, w).

    Equivalently result^T = P^steps cam^T with P = T^T = D^-1 A, the paper's row-stochastic
    T of [transition]. P is stored as a sparse CSR matrix with at most
    (number of offsets + 1) * N nonzeros; its eigenvalues are real and in [-1, 1] (P is
    similar to the symmetric D^-1/2 A D^-1/2), which lets long walks use a Chebyshev
    expansion of x^steps (see ``_apply_power``) instead of ``steps`` products: at most 90
    sparse products instead of 256 in float32, with a truncation error below the dtype's
    rounding.

    Pure torch on the input's device (CPU or CUDA); time O(N * K * C * min(steps, ~6 sqrt(steps)))
    and memory O(N * (D + K + C)). Class maps that are zero everywhere (absent classes in
    PSA's CAMs) are not propagated: they stay zero. The result carries no gradient.

    Args:
        cam: (C, h, w) floating class scores, background channel included.
        features: (D, h, w) AffinityNet embedding on the same grid and device as ``cam``.
        affinity: instead of ``features``: (K, h, w) affinities in [0, 1] on the grid of
            ``cam``, K = len(pair_offsets(radius, half=True)) in that order; entry [k, y, x]
            is a_ij for i = (y, x), j = (y + dy_k, x + dx_k) (the layout of
            ``affinity_from_features``). Entries whose neighbour leaves the image are ignored.
        radius: pair radius gamma ([pairs]), >= 1; radius 1 means no pairs (result == cam).
        beta: exponent applied to the affinities ([transition]), finite and > 0.
        steps: number of walk steps t ([walk]), >= 0.

    Returns:
        (C, h, w) tensor, same dtype and device as ``cam`` (float16/bfloat16 are computed in
        float32).
    """
    _check_walk_inputs(cam, features, affinity, radius, beta, steps)
    radius, beta, steps = int(radius), float(beta), int(steps)
    channels, h, w = cam.shape
    dtype = cam.dtype if cam.dtype in (torch.float32, torch.float64) else torch.float32
    with torch.no_grad():
        maps = cam.to(dtype).reshape(channels, h * w)
        # A map that is zero everywhere stays zero; PSA's CAMs are, for every absent class.
        active = maps.ne(0).any(dim=1)
        result = torch.zeros_like(maps)
        if active.any():
            if features is not None:
                half_weights = _feature_half_weights(features.to(dtype), radius, beta)
            else:
                half_weights = _given_half_weights(affinity.to(dtype), radius, beta)
            transition, conditioning = _transition_matrix(half_weights, radius)
            vectors = maps[active].t().contiguous()  # (N, C_active)
            result[active] = _apply_power(transition, vectors, steps, conditioning).t()
        return result.reshape(channels, h, w).to(cam.dtype)


def _check_walk_inputs(
    cam: Tensor, features: Tensor | None, affinity: Tensor | None, radius: int, beta: float, steps: int
) -> None:
    if (features is None) == (affinity is None):
        raise ValueError("give the walk exactly one of features and affinity")
    if affinity is None:
        name, source, form = "features", features, "(D, h, w)"
    else:
        name, source, form = "affinity", affinity, "(K, h, w)"
    if not isinstance(cam, Tensor) or cam.dim() != 3:
        raise ValueError(f"cam must be a (C, h, w) tensor, got {_describe(cam)}")
    if not isinstance(source, Tensor) or source.dim() != 3:
        raise ValueError(f"{name} must be a {form} tensor, got {_describe(source)}")
    if not cam.is_floating_point() or not source.is_floating_point():
        raise ValueError(f"cam and {name} must be floating tensors, got {cam.dtype} and {source.dtype}")
    if cam.shape[-2:] != source.shape[-2:]:
        raise ValueError(
            f"cam grid {tuple(cam.shape[-2:])} does not match {name} grid "
            f"{tuple(source.shape[-2:])}: resize the CAM to the {name} grid first"
        )
    if cam.device != source.device:
        raise ValueError(f"cam is on {cam.device} but {name} on {source.device}")
    if min(cam.shape) == 0 or (features is not None and features.shape[0] == 0):
        raise ValueError(f"empty input: cam {tuple(cam.shape)}, {name} {tuple(source.shape)}")
    _check_radius(radius)
    if affinity is not None:
        half = _offset_list(pair_offsets(int(radius), half=True))
        if affinity.shape[0] != len(half):
            raise ValueError(
                f"affinity has {affinity.shape[0]} offsets, but radius {radius} has {len(half)} "
                "(pair_offsets(radius, half=True))"
            )
        inside = _pair_valid(half, *cam.shape[-2:], affinity.device)
        values = affinity.detach()[inside]
        if not torch.isfinite(values).all() or (values < 0).any() or (values > 1).any():
            raise ValueError("affinity must lie in [0, 1] at every pair inside the image")
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not math.isfinite(beta) or beta <= 0:
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}")
    if not _is_int(steps):
        raise ValueError(f"steps must be an int, got {steps!r}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")


def _describe(value: object) -> str:
    return f"shape {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__


def _feature_half_weights(features: Tensor, radius: int, beta: float) -> Tensor:
    """(D, h, w) features -> (K, h, w) weights a_ij^beta = exp(-beta * mean_d |f_i - f_j|) ([affinity])
    for the half offsets of ``radius``; entries whose neighbour leaves the image are arbitrary."""
    depth, h, w = features.shape
    shifts = [dy * w + dx for dy, dx in _offset_list(pair_offsets(radius, half=True))]
    distance = _mean_abs_diffs(features.reshape(depth, h * w), shifts)
    return torch.exp(distance.mul_(-beta)).reshape(len(shifts), h, w)


def _given_half_weights(affinity: Tensor, radius: int, beta: float) -> Tensor:
    """(K, h, w) given affinities -> weights a_ij^beta ([transition]), 0 where the pair leaves the image."""
    half = _offset_list(pair_offsets(radius, half=True))
    inside = _pair_valid(half, *affinity.shape[-2:], affinity.device)
    return torch.where(inside, affinity, 0.0).pow_(beta)


def _transition_matrix(half_weights: Tensor, radius: int) -> tuple[Tensor, float]:
    """P = D^-1 A ([transition]) as a sparse CSR (N, N) matrix, and a bound on its conditioning.

    Args:
        half_weights: (K, h, w) float32/float64 A[p, p + o] = a^beta for the K half offsets o
            of ``radius`` (``pair_offsets(radius, half=True)`` order); finite, >= 0; entries
            whose neighbour leaves the image are ignored.

    Returns:
        ``(P, kappa)``: P[j, i] = A[i, j] / sum_i A[i, j] for the in-image pixels i within the
        radius of j and i == j; kappa = sqrt(max_j d_j / min_j d_j) with d_j that column sum,
        so that ||q(P)||_2 <= kappa * max_{x in [-1, 1]} |q(x)| for any polynomial q.
    """
    _, h, w = half_weights.shape
    n, device = h * w, half_weights.device
    half = _offset_list(pair_offsets(radius, half=True))
    # The full stencil in lexicographic (dy, dx) order: the mirrored half offsets, the pixel
    # itself, the half offsets. ``own`` selects the half offsets' rows.
    stencil = [(-dy, -dx) for dy, dx in reversed(half)] + [(0, 0)] + half
    own = slice(len(half) + 1, None)
    shifts = torch.tensor([dy * w + dx for dy, dx in stencil], device=device)
    valid = _pair_valid(stencil, h, w, device).reshape(len(stencil), n)  # (K+1, N)

    half_weights = half_weights.reshape(len(half), n)
    # A is symmetric: A[p, p - o] = A[p - o, p], the half weight of offset o read at pixel
    # p - o (one gather from a zero-padded copy). Pairs leaving the image are zeroed below.
    span = int(shifts.abs().max())
    padded = F.pad(half_weights, (span, span))
    mirrored = padded.gather(1, torch.arange(n, device=device) + (span - shifts[own]).unsqueeze(1))
    ones = half_weights.new_ones(1, n)  # a_ii = 1
    weights = torch.cat([mirrored.flip(0), ones, half_weights]).mul_(valid)  # (K+1, N)

    degree = weights.sum(dim=0)  # d_j = sum_i A[i, j]: column sums, >= 1
    weights /= degree
    conditioning = math.sqrt(float(degree.max() / degree.min()))

    # CSR rows are output pixels j; row j's columns j + s_o come in stencil order, which is
    # increasing column order (neighbours in row y + dy all precede those in row y + dy + 1).
    index_dtype = torch.int32 if n * len(stencil) < 2**31 else torch.int64  # int32 is faster
    entries = torch.nonzero(valid.t().reshape(-1)).squeeze(1)  # the valid (j, o), row-major
    columns = torch.arange(n, dtype=index_dtype, device=device).unsqueeze(1) + shifts.to(index_dtype)
    columns = columns.reshape(-1).index_select(0, entries)
    values = weights.t().reshape(-1).index_select(0, entries)
    row_starts = F.pad(valid.sum(dim=0).cumsum(0), (1, 0)).to(index_dtype)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        transition = torch.sparse_csr_tensor(row_starts, columns, values, (n, n), check_invariants=False)
    return transition, conditioning


def _power_chebyshev_coefficients(steps: int, tolerance: float) -> list[float]:
    """Coefficients c_0..c_m of x^steps ~= sum_k c_k T_k(x), truncated where the tail is small.

    x^n = 2^(1-n) sum_{j=0}^{floor(n/2)} binom(n, j) T_{n-2j}(x), the k = 0 term halved: the
    c_k are >= 0, nonzero only for k of the parity of n, and sum to 1 (take x = 1). Since
    |T_k(x)| <= 1 on [-1, 1], dropping the terms of degree > m changes the polynomial there by
    at most their sum; m is the smallest degree for which that sum is <= ``tolerance``.

    The binomials are generated from the centre outwards by the ratio
    binom(n, j - 1) = binom(n, j) * j / (n - j + 1) and normalised to sum to 1, which is
    accurate to a few ulps for any n (no overflow, no log-gamma cancellation).
    """
    weights = {}  # degree k -> weight proportional to c_k
    k, weight = steps % 2, 1.0
    while k <= steps and weight > 1e-40:
        weights[k] = weight / 2.0 if k == 0 else weight
        j = (steps - k) // 2  # the binomial index of degree k
        weight *= j / (steps - j + 1)
        k += 2
    total = math.fsum(weights.values())
    coefficients = [weights.get(k, 0.0) / total for k in range(max(weights) + 1)]
    degree, tail = len(coefficients) - 1, 0.0
    while degree > 0 and tail + coefficients[degree] <= tolerance:
        tail += coefficients[degree]
        degree -= 1
    return coefficients[: degree + 1]


def _apply_power(transition: Tensor, vectors: Tensor, steps: int, conditioning: float) -> Tensor:
    """P^steps @ vectors for a CSR P whose eigenvalues are real and in [-1, 1].

    Args:
        transition: (N, N) sparse CSR matrix P, similar to a symmetric matrix with spectrum in
            [-1, 1], with ||q(P)||_2 <= conditioning * max_[-1, 1] |q| for polynomials q.
        vectors: (N, C) dense.

    Short walks take ``steps`` sparse products. Longer ones evaluate the Chebyshev expansion
    of x^steps truncated where its tail is below the dtype's epsilon (``conditioning`` included):
    by the bound above the truncation error is then < eps * ||vectors||, below what rounding
    already costs, while the degree is only ~6 sqrt(steps) (for 256 steps: at most 90
    products in float32, 132 in float64). The three-term recurrence T_k(P) v = 2 P T_k-1(P) v - T_k-2(P) v
    is stable here because every T_k(P) has norm <= conditioning.
    """
    tolerance = torch.finfo(vectors.dtype).eps / conditioning
    coefficients = _power_chebyshev_coefficients(steps, tolerance)
    if len(coefficients) - 1 >= steps:  # no saving: walk the steps directly
        for _ in range(steps):
            vectors = transition @ vectors
        return vectors
    previous, current = vectors, transition @ vectors  # T_0(P) v, T_1(P) v
    result = vectors * coefficients[0] + current * coefficients[1]
    for c in coefficients[2:]:
        previous, current = current, torch.addmm(previous, transition, current, beta=-1, alpha=2)
        if c:
            result.add_(current, alpha=c)
    return result


# --------------------------------------------------------------------------- dense references


def random_walk_dense(
    cam: Tensor,
    features: Tensor | None = None,
    *,
    affinity: Tensor | None = None,
    radius: int = 5,
    beta: float = 8.0,
    steps: int = 256,
) -> Tensor:
    """Reference for ``random_walk``, straight from the formula, dense and in float64.

    Builds the N x N matrices (O(N^2) memory, O(N^3 log steps) time): for tests and
    benchmarks on small grids only. Shares no code with ``random_walk`` beyond validation.

    Args:
        cam: (C, h, w); features: (D, h, w), or affinity: (K, h, w); radius, beta, steps as in
        ``random_walk``.

    Returns:
        (C, h, w) float64 tensor on the input's device.
    """
    _check_walk_inputs(cam, features, affinity, radius, beta, steps)
    radius, beta, steps = int(radius), float(beta), int(steps)
    channels, h, w = cam.shape
    n = h * w
    ys, xs = torch.meshgrid(
        torch.arange(h, device=cam.device), torch.arange(w, device=cam.device), indexing="ij"
    )
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    if features is not None:
        depth = features.shape[0]
        flat = features.double().reshape(depth, n).t()  # (N, D)
        distance = torch.cdist(flat, flat, p=1) / depth  # mean_d |f_i,d - f_j,d|
        near = (ys[:, None] - ys[None, :]) ** 2 + (xs[:, None] - xs[None, :]) ** 2 < radius**2
        affinity = torch.where(near, torch.exp(-distance), 0.0)  # includes a_ii = exp(0) = 1
    else:
        # A[i, j] = A[j, i] = a[k, i] for each j = i + offset k inside the image, A[i, i] = 1.
        given, affinity = affinity.double().reshape(-1, n), torch.eye(n, dtype=torch.float64, device=cam.device)
        for k, (dy, dx) in enumerate(pair_offsets(radius, half=True).tolist()):
            inside = (ys + dy >= 0) & (ys + dy < h) & (xs + dx >= 0) & (xs + dx < w)
            sources = inside.nonzero().squeeze(1)
            targets = (ys[sources] + dy) * w + xs[sources] + dx
            affinity[sources, targets] = given[k, sources]
            affinity[targets, sources] = given[k, sources]
    affinity = affinity**beta
    transition = affinity / affinity.sum(dim=0, keepdim=True)
    result = cam.double().reshape(channels, n) @ torch.linalg.matrix_power(transition, steps)
    return result.reshape(channels, h, w)


def random_walk_dense_paper(
    cam: Tensor, features: Tensor, *, radius: int = 5, beta: float = 8.0, steps: int = 256
) -> Tensor:
    """What PSA's infer_aff.py does: a dense T, squared log2(steps) times, then cam @ T.

    Computed in ``cam``'s dtype on its device, with the affinities of ``random_walk`` (PSA's
    network additionally drops the pairs that start within radius - 1 of the left, right and
    bottom borders). O(N^2) memory and O(N^3 log steps) time: the baseline of the benchmark.

    Args:
        cam: (C, h, w); features: (D, h, w); radius, beta as in ``random_walk``;
        steps: a power of two (PSA's 2^logt).

    Returns:
        (C, h, w) tensor in ``cam``'s dtype.
    """
    _check_walk_inputs(cam, features, None, radius, beta, steps)
    radius, beta, steps = int(radius), float(beta), int(steps)
    if steps < 1 or steps & (steps - 1):
        raise ValueError(f"steps must be a power of two for the paper's repeated squaring, got {steps}")
    channels, h, w = cam.shape
    n = h * w
    with torch.no_grad():
        half_offsets = pair_offsets(radius, half=True)
        half = _offset_list(half_offsets)
        affinity, valid = affinity_from_features(features.to(cam.dtype), half_offsets)
        # Scatter the half pairs, their transposes and the identity into a dense matrix.
        pixels = torch.arange(n, device=cam.device)
        shifts = torch.tensor([dy * w + dx for dy, dx in half], device=cam.device)
        valid = valid.reshape(len(half), n)
        sources = pixels.expand(len(half), n)[valid]
        targets = (pixels + shifts[:, None])[valid]
        values = affinity.reshape(len(half), n)[valid]
        dense = torch.zeros(n, n, dtype=cam.dtype, device=cam.device)
        dense[sources, targets] = values
        dense[targets, sources] = values
        dense[pixels, pixels] = 1.0
        dense = dense.pow_(beta)
        transition = dense / dense.sum(dim=0, keepdim=True)
        for _ in range(int(math.log2(steps))):
            transition = transition @ transition
        return (cam.reshape(channels, n) @ transition).reshape(channels, h, w)
