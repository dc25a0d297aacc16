"""The report's gallery: sample images of a split with every stage's output side by side.

Rows are the best, median and worst image by per-image mIoU of the run's final pseudo labels
(when the split has masks), plus fixed images (evenly spaced ids of the split, or ones the user
names) so that reports of different runs show the same pictures. Each row shows the image, the
CAM heat map of every labelled class, the CAM segmentation at the best background threshold, the
random walk's labels, the labels after the CRF, the segmentation network's prediction and the
ground truth. Pictures are small thumbnails embedded as data URIs, so the page stands alone.
"""

from __future__ import annotations

import base64
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from ..cues.cam import cam_to_label
from ..errors import WsssError
from ..io import VOC_PALETTE, load_mask, load_npz
from ..metrics import confusion_matrix, mean_iou
from .run_data import RunData

log = logging.getLogger("wsss")

THUMB_LONG_SIDE = 200
SEG_RANK_LIMIT = 60  # images the segmentation network predicts to rank a split it alone covers
JPEG_QUALITY = 82

# Heat-map colour ramp (blue -> cyan -> yellow -> red), control points at 0, 1/3, 2/3, 1.
HEAT_STOPS = np.array([[0, 0, 180], [0, 200, 255], [255, 230, 0], [220, 0, 0]], dtype=np.float32)


@dataclass
class Tile:
    """One picture of a row (``uri`` a data URI) or, without a picture, a mark saying why."""

    title: str
    uri: Optional[str] = None
    note: str = ""
    mark: str = ""
    width: int = 0
    height: int = 0


@dataclass
class GalleryRow:
    """One image: ``cells`` maps a column title to its tiles (several CAM heat maps share a column)."""

    image_id: str
    reasons: list[str]
    cells: dict[str, list[Tile]]
    classes: list[int] = field(default_factory=list)
    score: Optional[float] = None


@dataclass
class Gallery:
    split: str
    ranked_by: str
    columns: list[str]
    rows: list[GalleryRow]
    note: str = ""


# --- pictures -----------------------------------------------------------------------------------
def thumbnail_size(height: int, width: int, long_side: int = THUMB_LONG_SIDE) -> tuple[int, int]:
    """(width, height) with the long side ``long_side`` (never upscaled), aspect kept."""
    scale = min(1.0, long_side / max(height, width))
    return max(1, round(width * scale)), max(1, round(height * scale))


def data_uri(image: Image.Image, fmt: str) -> str:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.convert("RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    else:
        image.save(buffer, format="PNG", optimize=True)
    mime = "image/jpeg" if fmt == "JPEG" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def photo_tile(title: str, rgb: np.ndarray, note: str = "") -> Tile:
    """(H, W, 3) uint8 -> a JPEG thumbnail tile."""
    size = thumbnail_size(*rgb.shape[:2])
    image = Image.fromarray(rgb).resize(size, Image.BILINEAR)
    return Tile(title, data_uri(image, "JPEG"), note, width=size[0], height=size[1])


def label_tile(title: str, labels: np.ndarray, note: str = "") -> Tile:
    """(H, W) class indices -> a VOC-palette PNG thumbnail tile (nearest neighbour keeps the classes)."""
    size = thumbnail_size(*labels.shape)
    image = Image.fromarray(labels.astype(np.uint8), mode="P").resize(size, Image.NEAREST)
    image.putpalette(VOC_PALETTE.reshape(-1).tolist())
    return Tile(title, data_uri(image, "PNG"), note, width=size[0], height=size[1])


def heat_colours(cam: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8 colours of the heat ramp."""
    position = np.clip(cam, 0, 1) * (len(HEAT_STOPS) - 1)
    low = np.floor(position).astype(np.int64).clip(0, len(HEAT_STOPS) - 2)
    frac = (position - low)[..., None]
    return ((1 - frac) * HEAT_STOPS[low] + frac * HEAT_STOPS[low + 1]).astype(np.uint8)


def heat_overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """The heat colours of an (H, W) CAM blended over the (H, W, 3) image."""
    blend = (1 - alpha) * image.astype(np.float32) + alpha * heat_colours(cam).astype(np.float32)
    return blend.clip(0, 255).astype(np.uint8)


def image_miou(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> float:
    """mIoU (%) of one image over the classes in its ground truth or prediction (void ignored)."""
    return 100.0 * mean_iou(confusion_matrix(pred, gt, num_classes))


def present_classes(*label_maps: Optional[np.ndarray]) -> list[int]:
    """Sorted class indices (void 255 included) that occur in any of the label maps."""
    found: set[int] = set()
    for labels in label_maps:
        if labels is not None:
            found.update(int(v) for v in np.unique(labels))
    return sorted(found)


# --- choosing rows ------------------------------------------------------------------------------
def pick_rows(ids: list[str], scores: dict[str, float], fixed: list[str]) -> list[tuple[str, list[str]]]:
    """[(id, reasons)]: best, median and worst by score (when scored), then the fixed ids; an id
    chosen twice appears once with both reasons."""
    chosen: dict[str, list[str]] = {}
    ranked = sorted((i for i in ids if i in scores and np.isfinite(scores[i])), key=lambda i: (-scores[i], i))
    if ranked:
        for reason, image_id in (("best", ranked[0]), ("median", ranked[len(ranked) // 2]), ("worst", ranked[-1])):
            chosen.setdefault(image_id, []).append(reason)
    for image_id in fixed:
        if image_id in ids:
            chosen.setdefault(image_id, []).append("fixed")
    return list(chosen.items())


_LABELS = {"seg": "pseudo", "seg_gt": "gt"}
"""The gallery's segmentation columns: the model trained on the run's pseudo labels, and on ground truth."""


class GalleryBuilder:
    """Builds the gallery of one split of a run."""

    def __init__(self, run: RunData, split: str, device: str = "cpu"):
        self.run, self.split = run, split
        self.voc = run.dataset(split)
        if self.voc is None:
            raise WsssError(f"split {split!r}: dataset not found (data.root {run.section('data').get('root')!r}); "
                            "pass --data-root")
        self.names = self.voc.class_names
        self.cam_dir = run.layout.cams(split)
        self.rw_dir = run.layout.pseudo_labels(run.method.name, split, crf=False)
        self.rw_crf_dir = run.layout.pseudo_labels(run.method.name, split, crf=True)
        self.threshold = self._cam_threshold()
        self.device = device
        self._predictors: dict[str, object] = {}
        self._segmented: dict[tuple[str, int], np.ndarray] = {}

    def _cam_threshold(self) -> Optional[float]:
        """The background threshold eval-cam found best (on this split, else on any)."""
        for key in (f"cam_{self.split}", *[k for k in self.run.evals if k.startswith("cam_")]):
            value = self.run.evals.get(key, {}).get("best_threshold")
            if isinstance(value, (int, float)):
                return float(value)
        return None

    def final_labels(self) -> tuple[str, Optional[Path]]:
        """(name, folder) of the run's last pseudo labels of this split, the ones rows are ranked by."""
        for name, folder in (("CAM + RW + CRF", self.rw_crf_dir), ("CAM + RW", self.rw_dir)):
            if folder.is_dir() and any(folder.glob("*.png")):
                return name, folder
        return "", None

    def scores(self) -> tuple[str, dict[str, float]]:
        """(what was scored, {id: per-image mIoU}) over the split's images with an object; empty
        without masks or outputs. Background-only images are left out: an all-background
        prediction scores 100 there and would always be "best" while showing nothing.

        The label maps on disk are scored (pseudo labels, else CAMs at the best threshold); a split
        with neither (e.g. val, where only the segmentation network ran) is ranked by that
        network's single-scale predictions on up to ``SEG_RANK_LIMIT`` evenly spaced images.
        """
        if not self.voc.has_masks:
            return "", {}
        with_objects = [i for i in range(len(self.voc)) if self.voc.labels[i].any()] or list(range(len(self.voc)))
        name, folder = self.final_labels()
        if folder is not None:
            load = lambda image_id, index: load_mask(folder / f"{image_id}.png")  # noqa: E731
            exists = lambda image_id: (folder / f"{image_id}.png").exists()  # noqa: E731
        elif self.threshold is not None and self.cam_dir.is_dir():
            name = f"CAM @ {self.threshold:.2f}"

            def load(image_id: str, index: int) -> np.ndarray:
                data = load_npz(self.cam_dir / f"{image_id}.npz")
                return cam_to_label(data["cams"].astype(np.float32), data["keys"], self.threshold)

            exists = lambda image_id: (self.cam_dir / f"{image_id}.npz").exists()  # noqa: E731
        elif self.predictor("seg") is not None:
            step = max(1, -(-len(with_objects) // SEG_RANK_LIMIT))
            with_objects = with_objects[::step]
            name = f"the segmentation network (single-scale; {len(with_objects)} of {len(self.voc)} images)"
            load = lambda image_id, index: self.segment(index)  # noqa: E731
            exists = lambda image_id: True  # noqa: E731
        else:
            return "", {}
        scores = {}
        for index in with_objects:
            image_id = self.voc.ids[index]
            if exists(image_id):
                pred = load(image_id, index)
                scores[image_id] = image_miou(pred, self.voc.load_mask(index, pred.shape), self.voc.num_classes)
        return name, scores

    def segment(self, index: int, kind: str = "seg") -> np.ndarray:
        """The segmentation network's single-scale prediction of one image (computed once)."""
        key = (kind, index)
        if key not in self._segmented:
            self._segmented[key] = self.predictor(kind).predict(self.voc.load_image(index))
        return self._segmented[key]

    def build(self, fixed: list[str], num_fixed: int = 2) -> Gallery:
        ranked_by, scores = self.scores()
        ids = self.voc.ids
        # default fixed samples: evenly spaced through the split (ids are often grouped by theme)
        wanted = [i for i in fixed if i in ids] if fixed else list(dict.fromkeys(ids[k * len(ids) // num_fixed]
                                                                                 for k in range(num_fixed)))
        missing = [i for i in fixed if i not in self.voc.ids]
        picked = pick_rows(self.voc.ids, scores, wanted)
        rows = [self.row(image_id, reasons, scores.get(image_id)) for image_id, reasons in picked]
        columns = list(dict.fromkeys(title for row in rows for title in row.cells))
        note = ""
        if not self.voc.has_masks:
            note = f"split {self.split!r} has no ground truth: fixed samples only, no per-image scores"
        elif not scores:
            note = "no label maps of this split to rank by: fixed samples only"
        if missing:
            note = (note + "; " if note else "") + f"not in split {self.split!r}: {', '.join(missing)}"
        return Gallery(self.split, ranked_by, columns, rows, note)

    def predictor(self, kind: str):
        """The run's segmentation model (``seg`` or ``seg_gt``) as a single-scale Predictor, or None."""
        if kind not in self._predictors:
            from ..inference.predictor import Predictor

            path = self.run.layout.seg_model(_LABELS[kind])
            self._predictors[kind] = None
            if path.exists():
                predictor = Predictor(path, self.device)
                if predictor.class_names != self.names:
                    raise WsssError(f"{path}: trained for classes {predictor.class_names[1:]}, the dataset has {self.names[1:]}")
                self._predictors[kind] = predictor
        return self._predictors[kind]

    def row(self, image_id: str, reasons: list[str], score: Optional[float]) -> GalleryRow:
        index = self.voc.ids.index(image_id)
        image = self.voc.load_image(index)
        gt = self.voc.load_mask(index, image.shape[:2]) if self.voc.mask_path(index) is not None else None
        labelled = [self.names[k + 1] for k in np.flatnonzero(self.voc.labels[index])]
        cells: dict[str, list[Tile]] = {"Image": [photo_tile("", image, "labels: " + (", ".join(labelled) or "none"))]}
        label_maps = [gt]

        def scored(title: str, labels: np.ndarray) -> Tile:
            label_maps.append(labels)
            note = f"mIoU {image_miou(labels, gt, len(self.names)):.1f}" if gt is not None else ""
            return label_tile(title, labels, note)

        cam_path = self.cam_dir / f"{image_id}.npz"
        threshold_title = f"CAM @ {self.threshold:.2f}" if self.threshold is not None else "CAM segmentation"
        if cam_path.exists():
            data = load_npz(cam_path)
            cams, keys = data["cams"].astype(np.float32), data["keys"].astype(np.int64)
            if cams.shape[1:] != image.shape[:2]:
                raise WsssError(f"{cam_path}: CAM size differs from its image; delete it and re-run make-cam")
            cells["CAM per class"] = [photo_tile(self.names[key + 1], heat_overlay(image, cam), f"peak {cam.max():.2f}")
                                      for cam, key in zip(cams, keys)] or [Tile("", mark="no labelled class")]
            cells[threshold_title] = ([scored("", cam_to_label(cams, keys, self.threshold))] if self.threshold is not None
                                      else [Tile("", mark="eval-cam not run")])
        else:
            cells["CAM per class"] = [Tile("", mark="not run")]
            cells[threshold_title] = [Tile("", mark="not run")]
        for title, folder in (("Random walk", self.rw_dir), ("Random walk + CRF", self.rw_crf_dir)):
            path = folder / f"{image_id}.png"
            cells[title] = [scored("", load_mask(path)) if path.exists() else Tile("", mark="not run")]
        for kind, title in (("seg", "Segmentation network"), ("seg_gt", "Segmentation (GT-trained)")):
            if kind == "seg_gt" and not self.run.layout.seg_model("gt").exists():
                continue  # the upper bound is optional: no column when it was never trained
            cells[title] = [scored("single-scale", self.segment(index, kind)) if self.predictor(kind) is not None
                            else Tile("", mark="not run")]
        cells["Ground truth"] = [label_tile("", gt) if gt is not None else Tile("", mark="no ground truth")]
        return GalleryRow(image_id, reasons, cells, present_classes(*label_maps), score)


def build_galleries(run: RunData, images: Optional[list[str]] = None, device: str = "cpu") -> tuple[list[Gallery], list[str]]:
    """(galleries of every split with CAMs or pseudo labels, and of the val split when the
    segmentation network was trained; notes on splits that got none)."""
    galleries, notes = [], []
    val = run.section("data").get("val_split")
    for split in run.splits():
        made = run.layout.cams(split).is_dir() or run.layout.pseudo(run.method.name, split).is_dir()
        if not (made or (split == val and run.layout.seg_model().exists())):
            continue
        try:
            galleries.append(GalleryBuilder(run, split, device).build(list(images or [])))
        except WsssError as exc:
            log.warning("report: no gallery for split %s: %s", split, exc)
            notes.append(f"split {split}: {exc}")
    return galleries, notes
