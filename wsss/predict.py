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
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import distributed
from .amp import autocast, autocast_dtype, dtype_name
from .config import DEFAULT_MAX_SIDE
from .crf import dense_crf
from .engine import resolve_device
from .errors import WsssError
from .export import EXPORT_KINDS, OnnxNetwork
from .inference import image_tensor, multiscale_sum, shrink_to_max_side, upsample, upsampled_rows
from .io import (
    IGNORE_INDEX,
    VOC_PALETTE,
    load_rgb,
    overlay,
    read_json,
    remove_stale_temps,
    save_image,
    save_json,
    save_palette_png,
    with_legend,
)
from .metrics import saliency_levels
from .models import load_model
from .parallel import map_images
from .ssnet.losses import saliency_map
from .ssnet.saliency import UPSAMPLE_ORDERS, saliency_at, saliency_crf

log = logging.getLogger("wsss")

ImageLike = Union[str, Path, np.ndarray, Image.Image]
ENGINES = ("torch", "onnxruntime")
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
                 flip: bool = False, crf: bool = False, amp: str = "auto",
                 max_side: Optional[int] = DEFAULT_MAX_SIDE, saliency_upsample: str = "map",
                 saliency_crf: bool = False, engine: str = "torch"):
        """``max_side``: images with a longer side are shrunk to it (antialiased) before the
        network and the CRF see them, and the results are upsampled back to the image's size:
        bounds the memory of a large photo (6000x4000: 0.8 GB at 1024, 8.4 GB at full size) and
        keeps it near the scale the model was trained at. None: every image as it is.

        ``saliency_upsample`` and ``saliency_crf``: how an SSNet's saliency map is made
        (``wsss.ssnet.saliency``): aggregated at the network's stride and then upsampled
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
            self.model, kind, self.class_names, self.fingerprint = loaded.model, loaded.kind, loaded.class_names, \
                loaded.fingerprint
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


def list_images(path: Path) -> tuple[list[Path], list[Path]]:
    """(the images to segment, the entries of the folder that are not images by extension)."""
    if path.is_file():
        return [path], []
    if path.is_dir():
        entries = sorted(path.iterdir())
        files = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
        if not files:
            raise WsssError(f"{path}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in this folder")
        return files, [p for p in entries if p not in files]
    raise WsssError(f"{path}: input not found")


def _report_ignored(folder: Path, ignored: list[Path]) -> None:
    """One line for the folder entries that are not images (every name with -v)."""
    if not ignored:
        return
    names = [p.name + ("/" if p.is_dir() else "") for p in ignored]
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more (-v lists them)" if len(names) > 5 else "")
    log.info("predict: ignored %d entr%s of %s that %s not images by extension: %s", len(names),
             "y" if len(names) == 1 else "ies", folder, "is" if len(names) == 1 else "are", shown)
    log.debug("predict: ignored %s", ", ".join(names))


class _PredictJob:
    """Per-image job of ``wsss predict`` (built in each worker process): (index, None) when the
    image's files are written, (index, why) when the image cannot be read and is skipped."""

    def __init__(self, checkpoint, device, scales, flip, crf, amp, max_side, files, output, saliency_upsample="map",
                 saliency_crf=False, engine="torch"):
        self.predictor = Predictor(checkpoint, device, scales, flip, crf, amp, max_side, saliency_upsample, saliency_crf,
                                   engine)
        self.files, self.output = files, Path(output)

    def __call__(self, index: int) -> tuple[int, Optional[str]]:
        path = self.files[index]
        try:
            rgb = load_rgb(path)
        except WsssError as exc:  # this file alone: the others are still segmented
            return index, getattr(exc, "reason", str(exc))
        mask = self.predictor.predict(rgb)
        overlay_name, *saliency_name, mask_name = output_names(path.stem, self.predictor.has_saliency)
        save_image(self.output / overlay_name, with_legend(overlay(rgb, mask), mask, self.predictor.class_names))
        if saliency_name:
            save_image(self.output / saliency_name[0], saliency_levels(self.predictor.saliency(rgb)))
        save_palette_png(self.output / mask_name, mask)  # written last: marks the image done
        return index, None


PREDICT_RECORD = ".wsss-predict.json"
"""The settings of the masks in a predict output folder; also what marks the folder as wsss's."""


def output_names(stem: str, saliency: bool) -> list[str]:
    """The files ``wsss predict`` writes for one image (the mask last)."""
    return [f"{stem}_overlay.jpg", *([f"{stem}_saliency.png"] if saliency else []), f"{stem}.png"]


CLASSES_FILE = "classes.json"
"""Beside the masks: which index and colour is which class."""


def classes_table(class_names: list[str]) -> list[dict]:
    """[{index, name, colour}] of the masks' palette, void (255) included."""
    rows = [{"index": i, "name": name, "colour": VOC_PALETTE[i].tolist()} for i, name in enumerate(class_names)]
    return rows + [{"index": IGNORE_INDEX, "name": "void", "colour": VOC_PALETTE[IGNORE_INDEX].tolist()}]


def check_output_folder(input_path: Path, output: Path, stems: list[str], saliency: bool) -> None:
    """Refuse an output folder that would overwrite what wsss did not write: the input folder
    itself or one inside it (the masks would replace the photos, and a re-run would segment its
    own overlays), or a folder without wsss's record where a file has an output's name."""
    source = (input_path if input_path.is_dir() else input_path.parent).resolve()
    target = output.resolve()
    if target == source or source in target.parents:
        raise WsssError(f"{output}: the output folder is {'the input folder' if target == source else 'inside the input'} "
                        f"{source}; choose an --output outside it")
    if output.exists() and not output.is_dir():
        raise WsssError(f"{output}: is not a folder; choose another --output")
    if (output / PREDICT_RECORD).is_file():
        return  # wsss's folder: the names below are its own outputs
    names = [CLASSES_FILE] + [name for stem in stems for name in output_names(stem, saliency)]
    taken = next((output / name for name in names if (output / name).exists()), None)
    if taken is not None:
        raise WsssError(f"{taken}: exists and was not written by wsss predict; choose an empty or new --output")


def _reusable_outputs(output: Path, settings: dict) -> bool:
    """True when ``output`` holds masks of these settings (``.wsss-predict.json``); records them and
    removes the temporary files a killed run left."""
    record = output / PREDICT_RECORD
    wanted = json.loads(json.dumps(settings, sort_keys=True, default=str))
    try:
        same = read_json(record) == wanted
    except WsssError as exc:  # a damaged record: the folder's masks are made again
        log.warning("%s; its masks will be made again", exc)
        same = False
    if distributed.is_main():
        remove_stale_temps(output, recursive=False)  # the other ranks wait: nothing writes there now
        if not same:
            save_json(record, wanted)  # before any mask of the new settings is written
    distributed.barrier()
    return same


@dataclass
class PredictResult:
    """What :func:`run` did, over all processes: ``masks`` of the input images that have one now,
    how many were ``written`` by this run and ``kept`` from an earlier one, the images ``skipped``
    because they cannot be read (path, why) and the folder entries ``ignored`` (not images)."""

    masks: list[Path]
    written: int
    kept: int
    skipped: list[tuple[Path, str]]
    ignored: list[Path]


def run(checkpoint: Path, input_path: Path, output: Path, device: str = "auto", scales: Sequence[float] = (1.0,),
        flip: bool = False, crf: bool = False, progress: bool = True, workers: int = 1,
        amp: str = "auto", max_side: Optional[int] = DEFAULT_MAX_SIDE, saliency_upsample: str = "map",
        saliency_crf: bool = False, engine: str = "torch") -> PredictResult:
    """Write ``<stem>.png`` (VOC palette) and ``<stem>_overlay.jpg`` (with a legend of the classes
    in it) for every input image, ``<stem>_saliency.png`` (grayscale, 255 = salient) when the
    model is an SSNet, and ``classes.json`` (index, name, colour of each class).

    Masks already in ``output`` from the same model and settings are kept (a killed run
    continues); under torchrun each rank takes a share of the files, on CPU ``workers``
    processes do. Images that cannot be read are skipped with a warning each; files that are
    not images by extension, and subfolders, are ignored (one line says which).
    ``saliency_upsample`` / ``saliency_crf``: how an SSNet's saliency maps are made (see Predictor);
    ``engine``: torch or onnxruntime (see Predictor).
    """
    # checks the model file first
    predictor = Predictor(checkpoint, device, scales, flip, crf, amp, max_side, saliency_upsample, saliency_crf,
                          engine)
    files, ignored = list_images(Path(input_path))
    stems = [p.stem for p in files]
    duplicate = next((s for s in stems if stems.count(s) > 1), None)
    if duplicate is not None:
        raise WsssError(f"{input_path}: several images are named {duplicate!r} (other extensions); "
                        "their masks would overwrite each other, rename them")
    output = Path(output)
    check_output_folder(Path(input_path), output, stems, predictor.has_saliency)
    if distributed.is_main():
        _report_ignored(Path(input_path), ignored)
    settings = {"model": predictor.fingerprint, "checkpoint": str(Path(checkpoint).resolve()),
                "scales": list(scales), "flip": flip, "crf": crf, "precision": dtype_name(predictor.amp),
                "max_side": max_side}
    if predictor.has_saliency and (saliency_upsample, saliency_crf) != ("map", False):
        # only when not the defaults: outputs of earlier runs with the defaults are kept
        settings.update(saliency_upsample=saliency_upsample, saliency_crf=saliency_crf)
    if predictor.engine != "torch":  # recorded only when not the default, as above
        settings["engine"] = predictor.engine
    keep = _reusable_outputs(output, settings)
    if distributed.is_main():
        save_json(output / CLASSES_FILE, classes_table(predictor.class_names))
    pending = distributed.broadcast_object(
        [i for i, p in enumerate(files) if not (keep and (output / f"{p.stem}.png").exists())])
    todo = distributed.shard(pending)
    workers = 1 if predictor.device.type == "cuda" else workers
    start = time.perf_counter()
    job = (checkpoint, device, scales, flip, crf, amp, max_side, files, output, saliency_upsample, saliency_crf, engine)
    results = map_images(_PredictJob, job, todo, workers, "predict", progress and distributed.is_main())
    elapsed = time.perf_counter() - start
    segmented = sum(1 for _, why in results if not why)  # the speed of the images that were segmented
    log.info("predict: %d images segmented in %.1f s (%.2f images/s, %s)", segmented, elapsed,
             segmented / max(elapsed, 1e-9), predictor.engine)
    gathered = [result for rank_results in distributed.all_gather(results) for result in rank_results]
    skipped = sorted((files[index], why) for index, why in gathered if why)
    if distributed.is_main():
        for path, why in skipped:
            log.warning("%s: skipped, %s", path, why)
    unread = {path for path, _ in skipped}
    return PredictResult([output / f"{p.stem}.png" for p in files if p not in unread], len(pending) - len(skipped),
                         len(files) - len(pending), skipped, ignored)
