"""Class-agnostic saliency data (DUTS / ECSSD layout) and SSNet's mixed training batches.

Layout::

    images/<id>.jpg     (or .jpeg/.png)
    masks/<id>.png      0 = background; any non-zero value counts as salient

The ids are the mask names. A deterministic part of the training set may be held out for
scoring (every k-th id of the sorted list); SSNet never trains on it. Evaluation sets (ECSSD,
DUTS-TE) are scored whole and must pair every image with a mask of the same stem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import WsssError
from ..io import load_rgb, load_saliency_mask
from .crops import AugmentedCrops
from .transforms import JointAugment
from .voc import IMAGE_SUFFIXES


def check_saliency_folder(root: Path, setting: str = "ssnet.saliency.root") -> Path:
    """``root`` if it holds ``images/`` and ``masks/``; else a WsssError naming the folder and
    ``setting`` (the config key or option that named it)."""
    root = Path(root)
    layout = "a saliency dataset holds images/<id>.jpg and masks/<id>.png (0/255)"
    if not root.is_dir():
        raise WsssError(f"{root}: saliency folder not found; point {setting} at a folder with images/ and masks/ "
                        f"({layout})")
    for sub in ("images", "masks"):
        if not (root / sub).is_dir():
            raise WsssError(f"{root}: no {sub}/ folder in it; {layout}: point {setting} at one")
    return root


def saliency_ids(root: Path, setting: str = "ssnet.saliency.root") -> list[str]:
    """Sorted ids of ``root/masks/*.png``; every one must have an image in ``root/images``."""
    root = check_saliency_folder(root, setting)
    mask_dir = root / "masks"
    ids = sorted(p.stem for p in mask_dir.glob("*.png"))
    if not ids:
        raise WsssError(f"{mask_dir}: no masks (*.png) found")
    return ids


def evaluation_ids(root: Path, setting: str) -> list[str]:
    """Sorted ids of an evaluation set: the stems of ``root/images``, each with ``masks/<id>.png``.

    Every image is scored, so an image without a mask (or a mask without an image) is an error
    naming the file, not a smaller benchmark.
    """
    root = check_saliency_folder(root, setting)
    images = {p.stem: p for p in sorted((root / "images").iterdir()) if p.suffix in IMAGE_SUFFIXES}
    if not images:
        raise WsssError(f"{root / 'images'}: no images (.jpg, .jpeg, .png) found; {setting} needs a "
                        "folder with images/ and masks/")
    masks = {p.stem for p in (root / "masks").glob("*.png")}
    unmasked = sorted(set(images) - masks)
    if unmasked:
        raise WsssError(f"{images[unmasked[0]]}: no mask {root / 'masks' / unmasked[0]}.png for this image"
                        f"{f' (nor for {len(unmasked) - 1} more)' if len(unmasked) > 1 else ''}; every image of "
                        "an evaluation set needs a 0/255 PNG mask of the same name: add it or remove the image")
    orphans = sorted(masks - set(images))
    if orphans:
        raise WsssError(f"{root / 'masks' / orphans[0]}.png: mask without an image in {root / 'images'}"
                        f"{f' (and {len(orphans) - 1} more)' if len(orphans) > 1 else ''}; add the image or "
                        "remove the mask")
    return sorted(images)


def split_holdout(ids: list[str], holdout_every: int) -> tuple[list[str], list[str]]:
    """(train ids, held-out ids): of the sorted ids, positions k-1, 2k-1, ... are held out (k = holdout_every)."""
    ids = sorted(ids)
    if holdout_every <= 0:
        return ids, []
    held = [i for n, i in enumerate(ids) if n % holdout_every == holdout_every - 1]
    held_set = set(held)
    return [i for i in ids if i not in held_set], held


class SaliencyDataset:
    """Images and binary masks of a saliency dataset (a subset of its ids, if given).

    ``load_image(i)`` -> (H, W, 3) uint8 RGB; ``load_mask(i)`` -> (H, W) uint8 in {0, 1}.
    """

    def __init__(self, root: str | Path, ids: Optional[list[str]] = None):
        self.root = Path(root)
        self.ids = list(ids) if ids is not None else saliency_ids(self.root)
        if not self.ids:
            raise WsssError(f"{self.root}: no saliency images selected")

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, index: int) -> Path:
        image_id = self.ids[index]
        for suffix in IMAGE_SUFFIXES:
            path = self.root / "images" / f"{image_id}{suffix}"
            if path.exists():
                return path
        raise WsssError(f"{self.root / 'images' / image_id}.jpg: image of saliency mask {image_id!r} not found")

    def load_image(self, index: int) -> np.ndarray:
        return load_rgb(self.image_path(index))

    def load_mask(self, index: int, expected_size: Optional[tuple[int, int]] = None) -> np.ndarray:
        """(H, W) uint8: 1 salient (any non-zero pixel), 0 not; checked against the image size if given."""
        path = self.root / "masks" / f"{self.ids[index]}.png"
        mask = load_saliency_mask(path).astype(np.uint8)
        if expected_size is not None and mask.shape != tuple(expected_size):
            raise WsssError(
                f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is {expected_size[1]}x{expected_size[0]}; "
                "masks must match their images pixel for pixel"
            )
        return mask


def saliency_partner(index: int, epoch: int, num_seg: int, num_sal: int, seed: int) -> int:
    """The saliency image paired with segmentation sample ``index`` in ``epoch``.

    Slot p = epoch * num_seg + index walks through successive seeded permutations of the
    saliency set, so every saliency image is used equally often over training, independent of
    the batch order (and so of resuming or the number of workers).
    """
    slot = epoch * num_seg + index
    block, offset = divmod(slot, num_sal)
    return int(np.random.default_rng([seed, block, 4243]).permutation(num_sal)[offset])


class MixedCrops(torch.utils.data.Dataset):
    """SSNet's joint samples: an augmented crop of the segmentation set (image-level ``label``,
    and ``target`` pseudo labels in stage 2) with k saliency crops, ``sal_image`` (k, 3, S, S)
    and ``sal_target`` (k, S, S) long in {0, 1, 255 = padding}.

    A batch of B samples thus mixes B segmentation images and k B saliency images (the reference
    code's batches: 8 + 8 in stage 1, 4 + 4 in stage 2: k = 1); an epoch is one pass over the
    segmentation set. Without one (``seg`` None: the saliency-only network) a sample holds the
    saliency crops alone and an epoch is one pass over the saliency set.
    """

    def __init__(self, seg: Optional[AugmentedCrops], saliency: SaliencyDataset, augment: JointAugment, seed: int,
                 per_sample: int = 1):
        self.seg, self.saliency, self.augment, self.seed, self.epoch = seg, saliency, augment, seed, 0
        self.per_sample = per_sample

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.seg is not None:
            self.seg.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.seg) if self.seg is not None else max(len(self.saliency) // self.per_sample, 1)

    def __getitem__(self, index: int) -> dict:
        sample = self.seg[index] if self.seg is not None else {}
        images, masks = [], []
        for slot in range(index * self.per_sample, (index + 1) * self.per_sample):
            partner = saliency_partner(slot, self.epoch, len(self) * self.per_sample, len(self.saliency), self.seed)
            image = self.saliency.load_image(partner)
            mask = self.saliency.load_mask(partner, image.shape[:2])
            # the partner's own stream: (seed, epoch, slot, 1) never collides with a segmentation crop's
            rng = np.random.default_rng([self.seed, self.epoch, slot, 1])
            image, (mask,), _ = self.augment(image, [mask], rng)
            images.append(torch.from_numpy(image).permute(2, 0, 1).float())
            masks.append(torch.from_numpy(mask).long())
        sample["sal_image"], sample["sal_target"] = torch.stack(images), torch.stack(masks)
        return sample
