"""Segment new images with a trained model: the ``Predictor`` API and ``wsss predict``.

    from wsss import Predictor
    mask = Predictor("runs/msrc/seg/model.pt").predict("photo.jpg")   # (H, W) uint8 classes

Any image size; EXIF orientation is respected; grayscale and RGBA images are accepted.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .cam import multiscale_sum
from .crf import dense_crf
from .engine import load_checkpoint, resolve_device
from .errors import WsssError
from .io import load_rgb, overlay, save_image, save_palette_png

log = logging.getLogger("wsss")

ImageLike = Union[str, Path, np.ndarray, Image.Image]
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def as_rgb_array(image: ImageLike) -> np.ndarray:
    """A path, PIL image or array -> (H, W, 3) uint8 RGB."""
    if isinstance(image, (str, Path)):
        return load_rgb(image)
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise WsssError(f"image array must be (H, W), (H, W, 3) or (H, W, 4), got {array.shape}")
    return np.ascontiguousarray(array[..., :3]).astype(np.uint8)


class Predictor:
    """A trained segmentation network (``train-seg``) or SSNet (``train-ssnet``), ready to segment
    images; an SSNet also gives saliency maps (``has_saliency``)."""

    def __init__(self, checkpoint: Union[str, Path], device: str = "auto", scales: Sequence[float] = (1.0,),
                 flip: bool = False, crf: bool = False, max_side: Optional[int] = None):
        """``max_side``: images with a longer side are shrunk to it before the network sees them
        (the prediction is upsampled back): keeps large photos near the scale the model was
        trained at."""
        from .steps.train_seg import build_seg_net

        path = Path(checkpoint)
        payload = load_checkpoint(path)
        kind = payload.get("kind") if isinstance(payload, dict) else None
        if kind not in ("segmentation", "ssnet"):
            raise WsssError(f"{path}: not a segmentation model (holds {kind!r}); pass the model.pt of "
                            "`wsss train-seg` or `wsss train-ssnet`")
        meta = payload["meta"]
        self.class_names: list[str] = meta["class_names"]
        self.device = resolve_device(device)
        self.has_saliency = kind == "ssnet"
        if self.has_saliency:
            from .steps.train_ssnet import load_ssnet

            self.model = load_ssnet(path, self.device)
        else:
            self.model = build_seg_net(meta["backbone"], meta["output_stride"], len(self.class_names), meta["head"],
                                       meta["rates"], pretrained=False)
            self.model.load_state_dict(payload["model"])
            self.model.to(self.device).eval()
        self.scales, self.flip, self.crf, self.max_side = list(scales), flip, crf, max_side

    def _scales(self, height: int, width: int) -> list[float]:
        factor = min(1.0, self.max_side / max(height, width)) if self.max_side else 1.0
        return [scale * factor for scale in self.scales]

    def _logits(self, batch: torch.Tensor) -> torch.Tensor:
        out = self.model(batch)
        return out[0] if self.has_saliency else out  # an SSNet also returns its SAM scores

    def _image(self, image: ImageLike) -> tuple[np.ndarray, torch.Tensor]:
        rgb = as_rgb_array(image)
        return rgb, torch.from_numpy(rgb).to(self.device).permute(2, 0, 1).float()

    @torch.inference_mode()
    def probabilities(self, image: ImageLike) -> np.ndarray:
        """(C, H, W) float32 class probabilities (averaged over scales/flips, CRF-refined if set)."""
        rgb, tensor = self._image(image)
        summed = multiscale_sum(lambda batch: F.softmax(self._logits(batch), dim=1), tensor, self._scales(*rgb.shape[:2]),
                                self.flip)
        probs = (summed / (len(self.scales) * (2 if self.flip else 1))).cpu().numpy()
        return dense_crf(rgb, probs, size_relative=True) if self.crf else probs

    @torch.inference_mode()
    def saliency(self, image: ImageLike) -> np.ndarray:
        """(H, W) float32 saliency in [0, 1] of an SSNet, S = sum_i v_i H_i (averaged over scales/flips)."""
        if not self.has_saliency:
            raise WsssError("this model gives no saliency maps; that needs an SSNet model (`wsss train-ssnet`)")
        from .ssnet import saliency_map

        rgb, tensor = self._image(image)
        summed = multiscale_sum(lambda batch: saliency_map(*self.model(batch))[:, None], tensor,
                                self._scales(*rgb.shape[:2]), self.flip)
        return (summed[0] / (len(self.scales) * (2 if self.flip else 1))).clamp(0, 1).cpu().numpy()

    def predict(self, image: ImageLike) -> np.ndarray:
        """(H, W) uint8 class indices (index into ``class_names``)."""
        return self.probabilities(image).argmax(axis=0).astype(np.uint8)


def list_images(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise WsssError(f"{path}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in this folder")
        return files
    raise WsssError(f"{path}: input not found")


def run(checkpoint: Path, input_path: Path, output: Path, device: str = "auto", scales: Sequence[float] = (1.0,),
        flip: bool = False, crf: bool = False, progress: bool = True) -> list[Path]:
    """Write ``<stem>.png`` (VOC palette) and ``<stem>_overlay.jpg`` for every input image, and
    ``<stem>_saliency.png`` (grayscale, 255 = salient) when the model is an SSNet."""
    from tqdm import tqdm

    predictor = Predictor(checkpoint, device, scales, flip, crf)
    files = list_images(Path(input_path))
    written = []
    start = time.perf_counter()
    for path in tqdm(files, desc="predict", unit="img", disable=not progress, dynamic_ncols=True):
        rgb = load_rgb(path)
        mask = predictor.predict(rgb)
        save_palette_png(output / f"{path.stem}.png", mask)
        save_image(output / f"{path.stem}_overlay.jpg", overlay(rgb, mask))
        if predictor.has_saliency:
            saliency = np.round(predictor.saliency(rgb) * 255).astype(np.uint8)
            save_image(output / f"{path.stem}_saliency.png", saliency)
        written.append(output / f"{path.stem}.png")
    elapsed = time.perf_counter() - start
    log.info("predict: %d images in %.1f s (%.2f images/s)", len(files), elapsed, len(files) / max(elapsed, 1e-9))
    return written
