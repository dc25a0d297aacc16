"""Segment new images with a trained model: the ``Predictor`` API and ``wsss predict``.

    from wsss import Predictor
    mask = Predictor("runs/msrc/seg/model.pt").predict("photo.jpg")   # (H, W) uint8 classes

Any image size; EXIF orientation is respected; grayscale and RGBA images are accepted.
``wsss predict`` over a folder: under torchrun each rank segments a disjoint share of the files,
on CPU ``--workers N`` processes share them; a re-run with the same model and settings keeps the
masks already written.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import distributed
from .amp import autocast, autocast_dtype, dtype_name
from .cam import multiscale_sum
from .crf import dense_crf
from .engine import load_weights, read_wsss_file, resolve_device
from .errors import WsssError
from .io import load_rgb, overlay, save_image, save_json, save_palette_png
from .parallel import map_images

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
                 flip: bool = False, crf: bool = False, amp: str = "auto", max_side: Optional[int] = None):
        """``max_side``: images with a longer side are shrunk to it before the network sees them
        (the prediction is upsampled back): keeps large photos near the scale the model was
        trained at."""
        from .steps.train_seg import build_seg_net

        path = Path(checkpoint)
        payload = read_wsss_file(path)
        kind = payload.get("kind")
        if kind not in ("segmentation", "ssnet") or "meta" not in payload:
            raise WsssError(f"{path}: not a segmentation model (holds {kind!r}); pass the model.pt of "
                            "`wsss train-seg` or `wsss train-ssnet`")
        meta = payload["meta"]
        self.class_names: list[str] = meta["class_names"]
        self.fingerprint = payload.get("fingerprint")
        self.device = resolve_device(device)
        if distributed.is_distributed() and self.device.type == "cuda":
            self.device = torch.device("cuda", distributed.local_rank())
        self.amp = autocast_dtype(amp, self.device)
        self.has_saliency = kind == "ssnet"
        if self.has_saliency:
            from .steps.train_ssnet import load_ssnet

            self.model = load_ssnet(path, self.device)
        else:
            self.model = build_seg_net(meta["backbone"], meta["output_stride"], len(self.class_names), meta["head"],
                                       meta["rates"], pretrained=False)
            load_weights(self.model, payload["model"], path, "was it written by another version of wsss?")
            self.model.to(self.device).eval()
        self.scales, self.flip, self.crf, self.max_side = list(scales), flip, crf, max_side

    def _scales(self, height: int, width: int) -> list[float]:
        factor = min(1.0, self.max_side / max(height, width)) if self.max_side else 1.0
        return [scale * factor for scale in self.scales]

    def _outputs(self, batch: torch.Tensor):
        with autocast(self.device, self.amp):
            return self.model(batch)

    def _softmax(self, batch: torch.Tensor) -> torch.Tensor:
        out = self._outputs(batch)
        logits = out[0] if self.has_saliency else out  # an SSNet also returns its SAM scores
        return F.softmax(logits.float(), dim=1)

    def _image(self, image: ImageLike) -> tuple[np.ndarray, torch.Tensor]:
        rgb = as_rgb_array(image)
        return rgb, torch.from_numpy(rgb).to(self.device).permute(2, 0, 1).float()

    @torch.inference_mode()
    def probabilities(self, image: ImageLike) -> np.ndarray:
        """(C, H, W) float32 class probabilities (averaged over scales/flips, CRF-refined if set)."""
        rgb, tensor = self._image(image)
        summed = multiscale_sum(self._softmax, tensor, self._scales(*rgb.shape[:2]), self.flip)
        probs = (summed / (len(self.scales) * (2 if self.flip else 1))).cpu().numpy()
        return dense_crf(rgb, probs, size_relative=True) if self.crf else probs

    @torch.inference_mode()
    def saliency(self, image: ImageLike) -> np.ndarray:
        """(H, W) float32 saliency in [0, 1] of an SSNet, S = sum_i v_i H_i (averaged over scales/flips)."""
        if not self.has_saliency:
            raise WsssError("this model gives no saliency maps; that needs an SSNet model (`wsss train-ssnet`)")
        from .ssnet import saliency_map

        def maps(batch: torch.Tensor) -> torch.Tensor:
            logits, scores = self._outputs(batch)
            return saliency_map(logits.float(), scores.float())[:, None]

        rgb, tensor = self._image(image)
        summed = multiscale_sum(maps, tensor, self._scales(*rgb.shape[:2]), self.flip)
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


class _PredictJob:
    """Per-image job of ``wsss predict`` (built in each worker process)."""

    def __init__(self, checkpoint, device, scales, flip, crf, amp, files, output):
        self.predictor = Predictor(checkpoint, device, scales, flip, crf, amp)
        self.files, self.output = files, Path(output)

    def __call__(self, index: int) -> Path:
        path = self.files[index]
        rgb = load_rgb(path)
        mask = self.predictor.predict(rgb)
        save_image(self.output / f"{path.stem}_overlay.jpg", overlay(rgb, mask))
        if self.predictor.has_saliency:
            saliency = np.round(self.predictor.saliency(rgb) * 255).astype(np.uint8)
            save_image(self.output / f"{path.stem}_saliency.png", saliency)
        save_palette_png(self.output / f"{path.stem}.png", mask)  # written last: marks the image done
        return self.output / f"{path.stem}.png"


def _reusable_outputs(output: Path, settings: dict) -> bool:
    """True when ``output`` holds masks of these settings (``.wsss-predict.json``); records them."""
    record = output / ".wsss-predict.json"
    wanted = json.loads(json.dumps(settings, sort_keys=True, default=str))
    same = record.exists() and json.loads(record.read_text()) == wanted
    if distributed.is_main() and not same:
        save_json(record, wanted)  # before any mask of the new settings is written
    distributed.barrier()
    return same


def run(checkpoint: Path, input_path: Path, output: Path, device: str = "auto", scales: Sequence[float] = (1.0,),
        flip: bool = False, crf: bool = False, progress: bool = True, workers: int = 1,
        amp: str = "auto") -> list[Path]:
    """Write ``<stem>.png`` (VOC palette) and ``<stem>_overlay.jpg`` for every input image, and
    ``<stem>_saliency.png`` (grayscale, 255 = salient) when the model is an SSNet.

    Masks already in ``output`` from the same model and settings are kept (a killed run
    continues); under torchrun each rank takes a share of the files, on CPU ``workers``
    processes do. Returns the mask paths of all input images.
    """
    predictor = Predictor(checkpoint, device, scales, flip, crf, amp)  # checks the model file first
    files = list_images(Path(input_path))
    stems = [p.stem for p in files]
    duplicate = next((s for s in stems if stems.count(s) > 1), None)
    if duplicate is not None:
        raise WsssError(f"{input_path}: several images are named {duplicate!r} (other extensions); "
                        "their masks would overwrite each other, rename them")
    output = Path(output)
    settings = {"model": predictor.fingerprint, "checkpoint": str(Path(checkpoint).resolve()),
                "scales": list(scales), "flip": flip, "crf": crf, "precision": dtype_name(predictor.amp)}
    keep = _reusable_outputs(output, settings)
    todo = distributed.shard([i for i, p in enumerate(files) if not (keep and (output / f"{p.stem}.png").exists())])
    workers = 1 if predictor.device.type == "cuda" else workers
    start = time.perf_counter()
    map_images(_PredictJob, (checkpoint, device, scales, flip, crf, amp, files, output), todo, workers,
               "predict", progress and distributed.is_main())
    elapsed = time.perf_counter() - start
    log.info("predict: %d images in %.1f s (%.2f images/s)", len(todo), elapsed, len(todo) / max(elapsed, 1e-9))
    distributed.barrier()
    return [output / f"{stem}.png" for stem in stems]
