"""The ``Predictor``: a trained segmentation network or SSNet, ready to segment images (the API
behind ``wsss predict``, eval-seg, eval-ssnet, make-saliency and the report).

    from wsss import Predictor
    mask = Predictor("runs/msrc/seg/model.pt").predict("photo.jpg")   # (H, W) uint8 classes

Any image size; EXIF orientation is respected; grayscale and RGBA images are accepted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .. import distributed
from ..amp import autocast, autocast_dtype
from ..config import DEFAULT_MAX_SIDE
from ..crf import dense_crf
from ..engine import resolve_device
from ..errors import WsssError
from ..export import EXPORT_KINDS, OnnxNetwork
from ..io import load_rgb
from ..models import load_model
from . import image_tensor, multiscale_sum, shrink_to_max_side, upsample, upsampled_rows
from .saliency import UPSAMPLE_ORDERS, saliency_at, saliency_crf, saliency_map

ImageLike = Union[str, Path, np.ndarray, Image.Image]
ENGINES = ("torch", "onnxruntime")


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
                 flip: bool = False, crf: bool = False, amp: str = "auto",
                 max_side: Optional[int] = DEFAULT_MAX_SIDE, saliency_upsample: str = "map",
                 saliency_crf: bool = False, engine: str = "torch"):
        """``max_side``: images with a longer side are shrunk to it (antialiased) before the
        network and the CRF see them, and the results are upsampled back to the image's size:
        bounds the memory of a large photo (6000x4000: 0.8 GB at 1024, 8.4 GB at full size) and
        keeps it near the scale the model was trained at. None: every image as it is.

        ``saliency_upsample`` and ``saliency_crf``: how an SSNet's saliency map is made
        (``wsss.inference.saliency``): aggregated at the network's stride and then upsampled
        ("map"), or from logits upsampled to the size the network saw ("logits"); refined by a
        two-label dense CRF at that size (DSS's settings).

        ``engine``: "torch", or "onnxruntime" (CPU, float32): the network alone runs in
        onnxruntime (exported in memory from a ``model.pt``, or an ``.onnx`` file of ``wsss
        export``); scales, flips, softmax, upsampling and CRF are the same code."""
        if saliency_upsample not in UPSAMPLE_ORDERS:
            raise WsssError(f"saliency_upsample must be one of {', '.join(UPSAMPLE_ORDERS)}, not {saliency_upsample!r}")
        if engine not in ENGINES:
            raise WsssError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
        self.engine = "onnxruntime" if Path(checkpoint).suffix.lower() == ".onnx" else engine
        self.device = resolve_device(device) if self.engine == "torch" else torch.device("cpu")
        if distributed.is_distributed() and self.device.type == "cuda":
            self.device = torch.device("cuda", distributed.local_rank())
        if self.engine == "torch":
            loaded = load_model(checkpoint, self.device, EXPORT_KINDS)
            # NHWC memory, as make-cam: oneDNN's convolutions are faster on it, the outputs equal to rounding
            self.model, kind, self.class_names, self.fingerprint = loaded.model.to(memory_format=torch.channels_last), \
                loaded.kind, loaded.class_names, loaded.fingerprint
        else:
            source = Path(checkpoint) if Path(checkpoint).suffix.lower() == ".onnx" else \
                load_model(checkpoint, "cpu", EXPORT_KINDS)
            self.model = OnnxNetwork(source, torch.get_num_threads())
            kind, self.class_names, self.fingerprint = self.model.kind, self.model.class_names, self.model.fingerprint
        self.has_saliency = kind == "ssnet"
        self.amp = autocast_dtype(amp, self.device) if self.engine == "torch" else None
        self.scales, self.flip, self.crf, self.max_side = list(scales), flip, crf, max_side
        self.saliency_upsample, self.saliency_crf = saliency_upsample, saliency_crf

    def _outputs(self, batch: torch.Tensor):
        if self.engine == "torch":
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.amp):
            return self.model(batch)

    def _softmax(self, batch: torch.Tensor) -> torch.Tensor:
        out = self._outputs(batch)
        logits = out[0] if self.has_saliency else out  # an SSNet also returns its SAM scores
        return F.softmax(logits.float(), dim=1)

    def _inputs(self, image: ImageLike) -> tuple[np.ndarray, torch.Tensor]:
        """(the (H, W, 3) image, the (3, h, w) float tensor the network sees: shrunk to max_side)."""
        rgb = as_rgb_array(image)
        return rgb, shrink_to_max_side(image_tensor(rgb, self.device), self.max_side)

    def _mean(self, score_fn, tensor: torch.Tensor) -> torch.Tensor:
        summed = multiscale_sum(score_fn, tensor, self.scales, self.flip)
        return summed / (len(self.scales) * (2 if self.flip else 1))

    def _working_probabilities(self, image: ImageLike) -> tuple[np.ndarray, np.ndarray]:
        """(the (H, W, 3) image, (C, h, w) probabilities at the size the network saw it)."""
        rgb, tensor = self._inputs(image)
        probs = self._mean(self._softmax, tensor).cpu().numpy()
        if self.crf:
            probs = dense_crf(self._seen(rgb, tensor), probs, size_relative=True)
        return rgb, probs

    @staticmethod
    def _seen(rgb: np.ndarray, tensor: torch.Tensor) -> np.ndarray:
        """The (h, w, 3) uint8 image the network saw (``rgb`` itself when not shrunk), for the CRF."""
        if tuple(tensor.shape[1:]) == rgb.shape[:2]:
            return rgb
        return tensor.round().clamp(0, 255).byte().permute(1, 2, 0).cpu().numpy()

    @torch.inference_mode()
    def probabilities(self, image: ImageLike) -> np.ndarray:
        """(C, H, W) float32 class probabilities (averaged over scales/flips, CRF-refined if set)."""
        rgb, probs = self._working_probabilities(image)
        return upsample(probs, rgb.shape[:2])

    @torch.inference_mode()
    def saliency(self, image: ImageLike) -> np.ndarray:
        """(H, W) float32 saliency in [0, 1] of an SSNet, S = sum_i v_i H_i (averaged over
        scales/flips; upsampled and CRF-refined as ``saliency_upsample`` / ``saliency_crf`` say)."""
        if not self.has_saliency:
            raise WsssError("this model gives no saliency maps; that needs an SSNet model (`wsss train-ssnet`)")
        rgb, tensor = self._inputs(image)
        working = tuple(tensor.shape[1:])

        def maps(batch: torch.Tensor) -> torch.Tensor:
            logits, scores = self._outputs(batch)
            if self.saliency_upsample == "logits":  # straight to the working size, for every scale
                return saliency_at(logits.float(), scores.float(), working, "logits")[:, None]
            return saliency_map(logits.float(), scores.float())[:, None]  # multiscale_sum upsamples S

        saliency = self._mean(maps, tensor)[0].clamp(0, 1).cpu().numpy()
        if self.saliency_crf:
            saliency = saliency_crf(self._seen(rgb, tensor), saliency)
        return upsample(saliency[None], rgb.shape[:2])[0]

    @torch.inference_mode()
    def predict(self, image: ImageLike) -> np.ndarray:
        """(H, W) uint8 class indices (index into ``class_names``)."""
        rgb, probs = self._working_probabilities(image)
        if probs.shape[1:] == rgb.shape[:2]:
            return probs.argmax(axis=0).astype(np.uint8)
        labels = np.empty(rgb.shape[:2], dtype=np.uint8)  # a band at a time: C x H x W floats can be GBs
        for rows, band in upsampled_rows(torch.from_numpy(probs), rgb.shape[:2]):
            labels[rows] = band.argmax(dim=0).numpy()
        return labels
