"""The training dataset every stage uses: augmented crops of a VOC-layout split.

Randomness comes from (seed, epoch, index) alone, so a resumed run, or a run with another
number of workers or processes, sees exactly the same crops.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch

from ..errors import WsssError
from .transforms import JointAugment
from .voc import VocDataset


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The augmentation generator of sample ``index`` in ``epoch``: independent of batch order."""
    return np.random.default_rng([seed, epoch, index])


class AugmentedCrops(torch.utils.data.Dataset):
    """Samples: ``image`` (3, S, S) float 0..255, plus ``target`` (S, S) long when a label map
    loader is given (seeds, pseudo labels or masks; 255 ignore) and ``label`` (C,) float when
    image-level labels are asked for.
    """

    def __init__(self, voc: VocDataset, augment: JointAugment, seed: int,
                 target: Optional[Callable[[int], np.ndarray]] = None, image_labels: bool = False):
        self.voc, self.augment, self.seed = voc, augment, seed
        self.target, self.image_labels, self.epoch = target, image_labels, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.voc)

    def __getitem__(self, index: int) -> dict:
        image = self.voc.load_image(index)
        maps = []
        if self.target is not None:
            target = self.target(index)
            if target.shape != image.shape[:2]:
                raise WsssError(
                    f"label map of image {self.voc.ids[index]!r} is {target.shape[1]}x{target.shape[0]}, its image "
                    f"{image.shape[1]}x{image.shape[0]}; delete the label map and re-run the stage that wrote it"
                )
            maps.append(target)
        image, maps, _ = self.augment(image, maps, sample_rng(self.seed, self.epoch, index))
        sample = {"image": torch.from_numpy(image).permute(2, 0, 1).float()}
        if self.target is not None:
            sample["target"] = torch.from_numpy(maps[0]).long()
        if self.image_labels:
            sample["label"] = torch.from_numpy(self.voc.labels[index])
        return sample


class LabelMapFolder:
    """index -> (H, W) uint8 label map read from ``<folder>/<id>.png`` (picklable for workers)."""

    def __init__(self, folder, ids: list[str]):
        self.folder, self.ids = folder, ids

    def __call__(self, index: int) -> np.ndarray:
        from ..io import load_mask

        return load_mask(self.folder / f"{self.ids[index]}.png")
