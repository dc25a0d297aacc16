"""Fully connected CRF refinement (Kraehenbuehl & Koltun, NIPS 2011) with PSA's settings.

PSA (Ahn & Kwak, CVPR 2018) refines CAMs with a dense CRF before deriving affinity labels
(Sec. 3.2) and refines random-walk results before training the segmentation network; its
``crf_inference`` (tool/imutils.py) uses, on ~500 px PASCAL VOC images,

    addPairwiseGaussian(sxy=3 / scale, compat=3)
    addPairwiseBilateral(sxy=80 / scale, srgb=13, rgbim=image, compat=10)
    10 mean-field iterations

which are this module's defaults. The spatial widths are in pixels, so on much smaller or
larger images they mean a different amount of smoothing; ``size_relative=True`` rescales
them with the image size (see ``scaled_crf_widths``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .config import CrfConfig

__all__ = ["REFERENCE_SIZE", "scaled_crf_widths", "dense_crf", "crf_refiner"]

REFERENCE_SIZE = 500
"""Longest side (pixels) of the PASCAL VOC images the default CRF widths were tuned on."""


def scaled_crf_widths(
    image_size: tuple[int, int],
    *,
    reference_size: float = REFERENCE_SIZE,
    gaussian_sxy: float = 3.0,
    bilateral_sxy: float = 80.0,
) -> tuple[float, float]:
    """Spatial CRF widths scaled in proportion to the image's longest side.

    A width tuned for ``reference_size`` px images covers the same fraction of an image of
    any size: width * max(H, W) / reference_size. E.g. a 320 px image gets
    (3 * 0.64, 80 * 0.64) = (1.92, 51.2) instead of (3, 80). Colour width and
    compatibilities do not depend on size and are not scaled.

    Args:
        image_size: (H, W) in pixels.
        reference_size: longest side the widths were tuned for (500 for PSA on VOC).
        gaussian_sxy, bilateral_sxy: the widths at the reference size.

    Returns:
        ``(gaussian_sxy, bilateral_sxy)`` for this image.
    """
    if len(image_size) != 2 or min(image_size) < 1:
        raise ValueError(f"image_size must be (H, W) with positive sides, got {tuple(image_size)}")
    if not reference_size > 0:
        raise ValueError(f"reference_size must be > 0, got {reference_size}")
    factor = max(image_size) / reference_size
    return gaussian_sxy * factor, bilateral_sxy * factor


def dense_crf(
    image: np.ndarray,
    probs: np.ndarray,
    *,
    iterations: int = 10,
    gaussian_sxy: float = 3.0,
    gaussian_compat: float = 3.0,
    bilateral_sxy: float = 80.0,
    bilateral_srgb: float = 13.0,
    bilateral_compat: float = 10.0,
    scale: float = 1.0,
    size_relative: bool = False,
) -> np.ndarray:
    """Refine per-pixel label probabilities with a fully connected CRF (PSA's crf_inference).

    Unaries are -log(probs) (``pydensecrf.utils.unary_from_softmax``, clipped at 1e-5);
    pairwise terms are a Gaussian smoothness kernel (width ``gaussian_sxy``) and a
    bilateral appearance kernel (spatial width ``bilateral_sxy``, colour width
    ``bilateral_srgb``), both with Potts compatibilities.

    Args:
        image: (H, W, 3) uint8 RGB image.
        probs: (L, H, W) float probabilities over L >= 1 labels (expected to sum to 1 over L;
            not renormalised here).
        iterations: mean-field iterations (>= 0).
        gaussian_sxy, gaussian_compat, bilateral_sxy, bilateral_srgb, bilateral_compat:
            kernel parameters; the defaults are PSA's.
        scale: PSA's ``scale_factor``: both spatial widths are divided by it.
        size_relative: if True, the spatial widths are first rescaled to the image's size
            with ``scaled_crf_widths`` (width * max(H, W) / 500), so the defaults smooth a
            320 px image as much, relative to its size, as they smooth a 500 px VOC image.
            Off by default, to reproduce PSA.

    Returns:
        (L, H, W) float32 refined probabilities, summing to 1 over L (all ones when L == 1).
    """
    image = np.asarray(image)
    probs = np.asarray(probs)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) RGB, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got dtype {image.dtype}")
    if probs.ndim != 3 or probs.shape[0] < 1:
        raise ValueError(f"probs must be (L, H, W) with L >= 1, got shape {probs.shape}")
    if probs.shape[1:] != image.shape[:2]:
        raise ValueError(f"probs grid {probs.shape[1:]} does not match image size {image.shape[:2]}")
    if min(image.shape[:2]) < 1:
        raise ValueError(f"image is empty: shape {image.shape}")
    if not np.issubdtype(probs.dtype, np.floating) or not np.all(np.isfinite(probs)) or probs.min() < 0:
        raise ValueError("probs must be finite, non-negative floats")
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 0:
        raise ValueError(f"iterations must be an int >= 0, got {iterations!r}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")

    n_labels, height, width = probs.shape
    if n_labels == 1:
        return np.ones((1, height, width), dtype=np.float32)

    import pydensecrf.densecrf as dcrf  # imported lazily: a compiled extension
    from pydensecrf.utils import unary_from_softmax

    if size_relative:
        gaussian_sxy, bilateral_sxy = scaled_crf_widths(
            (height, width), gaussian_sxy=gaussian_sxy, bilateral_sxy=bilateral_sxy
        )
    crf = dcrf.DenseCRF2D(width, height, n_labels)
    # pydensecrf needs C-contiguous float32 unaries and a C-contiguous uint8 image.
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs.astype(np.float32)), dtype=np.float32))
    crf.addPairwiseGaussian(sxy=gaussian_sxy / scale, compat=gaussian_compat)
    crf.addPairwiseBilateral(
        sxy=bilateral_sxy / scale,
        srgb=bilateral_srgb,
        rgbim=np.ascontiguousarray(image),
        compat=bilateral_compat,
    )
    refined = crf.inference(int(iterations))
    return np.asarray(refined, dtype=np.float32).reshape(n_labels, height, width)


def scores_to_probabilities(scores: np.ndarray, power: float = 1.0) -> np.ndarray:
    """(L, H, W) non-negative class scores (a random walk's) -> probabilities for the CRF's unary:
    s^power renormalised per pixel. Walked scores are flat compared with a softmax: a power
    above 1 weights the unary term that many times against the pairwise ones."""
    probs = scores.clip(min=0) ** power
    return probs / probs.sum(axis=0, keepdims=True).clip(min=1e-8)


def crf_refiner(config: CrfConfig, image: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """probs (L, H, W) -> CRF-refined probs of ``image`` (H, W, 3), with the ``crf`` section's settings."""

    def refine(probs: np.ndarray) -> np.ndarray:
        return dense_crf(image, probs, iterations=config.iterations, gaussian_sxy=config.gaussian_sxy,
                         gaussian_compat=config.gaussian_compat, bilateral_sxy=config.bilateral_sxy,
                         bilateral_srgb=config.bilateral_srgb, bilateral_compat=config.bilateral_compat,
                         size_relative=config.size_relative)

    return refine
