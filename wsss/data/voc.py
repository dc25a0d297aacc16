"""PASCAL VOC-layout datasets with image-level labels.

Layout (``root`` is e.g. ``VOCdevkit/VOC2012``)::

    JPEGImages/<id>.jpg
    SegmentationClassAug/<id>.png or SegmentationClass/<id>.png   (optional per split)
    ImageSets/Segmentation/<split>.txt
    class_names.txt            (optional; default: background + the tags used, or VOC's 21)
    image_labels.json          ({id: [class names]}), tags.csv / tags.tsv (``image,tags`` rows,
                               wsss.data.tags) or cls_labels.npy (AffinityNet repo)

Image-level labels are multi-hot vectors over the foreground classes (background excluded),
so label index ``k`` is class ``k + 1`` of ``class_names``.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import WsssError
from ..io import IGNORE_INDEX, load_mask, load_rgb
from ..names import check_name
from .tags import find_tags_file, label_table_names, tags_by_id

VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")


MAX_CLASSES = IGNORE_INDEX
"""Masks are 8-bit with 255 as void: at most 255 classes (background included)."""


def read_text_file(path: Path, what: str) -> str:
    """A dataset's text file (UTF-8); anything else is one line naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise WsssError(f"{path}: {what} is not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:
        raise WsssError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None


def read_class_names(root: Path) -> list[str]:
    """Class names from ``class_names.txt`` (index = label, background first); without it, from
    the tags the label file uses (background, then the tags in alphabetical order), or VOC's 21
    when every tag is a VOC class or the labels are vectors (``cls_labels.npy``) or masks."""
    path = root / "class_names.txt"
    if not path.exists():
        used = label_table_names(root)
        if used is None or set(used) <= set(VOC_CLASSES[1:]):
            return list(VOC_CLASSES)
        if len(used) + 1 > MAX_CLASSES:
            raise WsssError(f"{root}: the labels use {len(used)} tags; at most {MAX_CLASSES - 1} classes fit 8-bit masks")
        return ["background", *used]
    names = [line.strip() for line in read_text_file(path, "the class list").splitlines() if line.strip()]
    if len(names) < 2:
        raise WsssError(f"{path}: needs background plus at least one class, one name per line")
    if len(set(names)) != len(names):
        raise WsssError(f"{path}: class names must be unique")
    if len(names) > MAX_CLASSES:
        raise WsssError(f"{path}: {len(names)} classes; masks are 8-bit with {IGNORE_INDEX} as void, so at most "
                        f"{MAX_CLASSES} (background included)")
    return names


def read_split(root: Path, split: str) -> list[str]:
    """Image ids listed in ``ImageSets/Segmentation/<split>.txt`` (first column of each line).

    An id becomes a file name (``cams/<split>/<id>.npz``): a separator, ``..``, an absolute path
    or an over-long id is refused with its line, as is an id listed twice."""
    check_name(split, "split name", "--split / data.train_split / data.val_split", "name a file of ImageSets/Segmentation")
    path = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not path.exists():
        raise WsssError(f"{path}: split file not found; list one image id per line there")
    ids: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(read_text_file(path, "the split file").splitlines(), start=1):
        if not line.strip():
            continue
        image_id = line.split()[0]
        check_name(image_id, "image id", f"{path}:{number}", "list plain file names (no folders) of JPEGImages")
        if image_id in seen:
            raise WsssError(f"{path}:{number}: image id {image_id!r} is listed again (first on line "
                            f"{seen[image_id]}); list each image once")
        seen[image_id] = number
        ids.append(image_id)
    if not ids:
        raise WsssError(f"{path}: split lists no images")
    return ids


def find_mask_dir(root: Path) -> Optional[Path]:
    """``SegmentationClassAug`` if present (the VOC train_aug masks), else ``SegmentationClass``."""
    for name in ("SegmentationClassAug", "SegmentationClass"):
        if (root / name).is_dir():
            return root / name
    return None


def _labels_from_json(path: Path, ids: list[str], class_names: list[str]) -> np.ndarray:
    try:
        table = json.loads(read_text_file(path, "the label file"))
    except json.JSONDecodeError as exc:
        raise WsssError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise WsssError(f"{path}: nested too deeply; expected {{id: [class names]}}") from None
    if not isinstance(table, dict):
        raise WsssError(f"{path}: expected a mapping of image id to a list of class names")
    return _labels_from_table(path, table, ids, class_names)


def _labels_from_table(path: Path, table: dict, ids: list[str], class_names: list[str]) -> np.ndarray:
    """(len(ids), num_fg) multi-hot labels from {id: [class names]} read from ``path``."""
    index = {name: i for i, name in enumerate(class_names)}
    labels = np.zeros((len(ids), len(class_names) - 1), dtype=np.float32)
    for row, image_id in enumerate(ids):
        if image_id not in table:
            raise WsssError(f"{path}: no labels for image {image_id!r}; add it (an empty list means background only)")
        names = table[image_id]
        if not isinstance(names, list):
            raise WsssError(f"{path}: labels of {image_id!r} must be a list of class names")
        for name in names:
            if not isinstance(name, str):
                raise WsssError(f"{path}: labels of {image_id!r} must be a list of class names (strings), "
                                f"found {json.dumps(name)[:60]}")
            if name not in index or index[name] == 0:
                raise WsssError(
                    f"{path}: image {image_id!r} has unknown class name {name!r}; "
                    f"known classes: {', '.join(class_names[1:])}"
                )
            labels[row, index[name] - 1] = 1.0
    return labels


def check_mask_classes(mask: np.ndarray, path: Path, num_classes: int) -> None:
    """A mask may hold class indices 0..num_classes-1 and 255 (void), nothing else."""
    counts = np.bincount(mask.reshape(-1), minlength=IGNORE_INDEX + 1)
    beyond = np.flatnonzero(counts[num_classes:IGNORE_INDEX])
    if beyond.size:
        raise WsssError(f"{path}: class index {num_classes + int(beyond[0])} but the dataset has {num_classes} classes "
                        f"(0..{num_classes - 1}, {IGNORE_INDEX} = void); fix the mask or class_names.txt")


def _numpy_globals() -> dict[tuple[str, str], object]:
    """The only globals a pickled dict of ndarrays needs (np.save of {id: vector}), under the
    module names of numpy 1 (numpy.core) and numpy 2 (numpy._core)."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1
        from numpy.core import multiarray
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    return allowed


class _LabelTableUnpickler(pickle.Unpickler):
    """Unpickles plain data and ndarrays; any other global (a function, a class) is refused, so
    reading the file can never run code."""

    def __init__(self, file, path: Path):
        super().__init__(file)
        self.path, self.allowed = path, _numpy_globals()

    def find_class(self, module: str, name: str):
        found = self.allowed.get((module, name))
        if found is None:
            raise WsssError(f"{self.path}: not a plain label table; it asks to run code ({module}.{name}); refused. "
                            "Write it with np.save of a dict {id: vector}, or use image_labels.json")
        return found


def _unpickle_label_table(path: Path, fh) -> object:
    """The object array of an .npy file whose payload is a pickle (``fh`` at its start)."""
    version = np.lib.format.read_magic(fh)
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version not in readers:
        raise WsssError(f"{path}: .npy format {version[0]}.{version[1]} is not read for object arrays; "
                        "re-save it with np.save")
    shape, _, dtype = readers[version](fh)
    if dtype != np.dtype(object) or shape != ():
        raise WsssError(f"{path}: expected a dict saved with np.save, found an object array of shape {shape}")
    array = _LabelTableUnpickler(fh, path).load()
    return array.item() if isinstance(array, np.ndarray) and array.shape == () else array


def _table_from_array(path: Path, array: np.ndarray) -> dict:
    """A plain array as a label table: structured with two fields (id, vector), or 2-D numeric
    whose first column is the integer id and the rest the vector."""
    if array.dtype.names is not None and len(array.dtype.names) == 2 and array.ndim == 1:
        id_field, vector_field = array.dtype.names
        return dict(zip(array[id_field], array[vector_field]))
    if array.ndim == 2 and array.dtype.kind in "iuf" and array.shape[1] >= 2:
        ids = array[:, 0]
        if not np.array_equal(ids, np.round(ids)):
            raise WsssError(f"{path}: the first column of a 2-D label table must be the integer image id")
        return {int(key): row for key, row in zip(ids, array[:, 1:])}
    raise WsssError(f"{path}: expected a dict {{id: vector}} (np.save), a structured array (id, vector) or a "
                    f"2-D numeric array [id, vector...]; found {array.dtype} of shape {array.shape}")


def read_label_table(path: Path, num_fg: int) -> dict:
    """``cls_labels.npy`` as {id: (num_fg,) float32}, read without running code from the file.

    Accepted: AffinityNet's pickled dict (np.save of {id: vector}; unpickled with only numpy's
    array globals allowed), a structured array with fields (id, vector), or a 2-D numeric array
    whose rows are [integer id, vector...].
    """
    try:
        with open(path, "rb") as fh:
            try:
                table = np.load(fh, allow_pickle=False)
            except ValueError as exc:
                if "allow_pickle" not in str(exc):
                    raise
                fh.seek(0)
                table = _unpickle_label_table(path, fh)
    except WsssError:
        raise
    except Exception as exc:  # a damaged file raises several types (EOFError, UnpicklingError, ...)
        raise WsssError(f"{path}: cannot read cls_labels.npy ({exc}); re-save it with np.save") from None
    if isinstance(table, np.ndarray):
        table = _table_from_array(path, table)
    if not isinstance(table, dict):
        raise WsssError(f"{path}: expected a dict {{id: vector}}, found a {type(table).__name__}")
    checked = {}
    for key, vector in table.items():
        key = key.item() if isinstance(key, np.generic) else key  # numpy str/int keys as Python ones
        if not isinstance(key, (str, int)) or not isinstance(vector, np.ndarray) or vector.dtype.kind not in "biuf":
            raise WsssError(f"{path}: entry {key!r} is not an image id with a numeric label vector")
        if vector.ndim != 1 or vector.shape[0] != num_fg:
            raise WsssError(f"{path}: label vector of {key!r} has shape {vector.shape}, expected ({num_fg},)")
        if not np.isin(vector, (0, 1)).all():
            raise WsssError(f"{path}: label vector of {key!r} holds {vector[~np.isin(vector, (0, 1))][0]!r}; "
                            "a multi-hot vector holds only 0 and 1")
        checked[key] = vector.astype(np.float32)
    return checked


def _labels_from_npy(path: Path, ids: list[str], num_fg: int) -> np.ndarray:
    """AffinityNet's ``cls_labels.npy``: a dict id -> multi-hot vector (20 VOC classes).

    PSA keys it by the id string ("2007_000032"), IRN by the id as an integer (2007000032).
    """
    table = read_label_table(path, num_fg)
    labels = np.zeros((len(ids), num_fg), dtype=np.float32)
    for row, image_id in enumerate(ids):
        vector = table.get(image_id)
        if vector is None:
            digits = image_id.replace("_", "")
            vector = table.get(int(digits)) if digits.isdigit() else None
        if vector is None:
            raise WsssError(f"{path}: no labels for image {image_id!r}")
        labels[row] = vector
    return labels


class VocDataset:
    """Images, optional masks and image-level labels of one split of a VOC-layout dataset.

    ``dataset[i]`` returns a dict with ``id``, ``image`` (H, W, 3) uint8 RGB, ``label``
    (num_fg,) float32 multi-hot and ``mask`` (H, W) uint8 or None.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        labels: str = "auto",
        require_masks: bool = False,
        class_names: Optional[list[str]] = None,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise WsssError(f"{self.root}: dataset root not found; point data.root (or --data-root) at a VOC-layout folder")
        self.split = split
        self.class_names = class_names or read_class_names(self.root)
        self.ids = read_split(self.root, split)
        self.image_dir = self.root / "JPEGImages"
        self.mask_dir = find_mask_dir(self.root)
        self.has_masks = self.mask_dir is not None and all((self.mask_dir / f"{i}.png").exists() for i in self.ids)
        if require_masks and not self.has_masks:
            missing = self.first_missing_mask()
            raise WsssError(f"{missing}: mask not found; split {split!r} needs masks for this stage")
        self.labels = self._read_labels(labels)

    @property
    def num_classes(self) -> int:
        """Number of classes including background."""
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.ids)

    def first_missing_mask(self) -> Path:
        base = self.mask_dir or (self.root / "SegmentationClass")
        for image_id in self.ids:
            if not (base / f"{image_id}.png").exists():
                return base / f"{image_id}.png"
        return base

    def _read_labels(self, source: str) -> np.ndarray:
        json_path, npy_path = self.root / "image_labels.json", self.root / "cls_labels.npy"
        tags_path = find_tags_file(self.root)
        if source == "auto":
            source = "json" if json_path.exists() else "npy" if npy_path.exists() else "tags" if tags_path else \
                "masks" if self.has_masks else ""
            if not source:
                raise WsssError(
                    f"{self.root}: no image-level labels found; add image_labels.json ({{id: [class names]}}), "
                    "tags.csv (`image,tags` rows) or cls_labels.npy"
                )
        if source == "tags":
            if tags_path is None:
                raise WsssError(f"{self.root / 'tags.csv'}: not found; write `image,tags` rows or choose data.labels")
            table = tags_by_id(tags_path)
            return _labels_from_table(tags_path, table, self.ids, self.class_names)
        if source == "json":
            if not json_path.exists():
                raise WsssError(f"{json_path}: not found; write {{id: [class names]}} or choose data.labels")
            return _labels_from_json(json_path, self.ids, self.class_names)
        if source == "npy":
            if not npy_path.exists():
                raise WsssError(f"{npy_path}: not found; choose another data.labels source")
            return _labels_from_npy(npy_path, self.ids, self.num_classes - 1)
        if source == "masks":
            if not self.has_masks:
                raise WsssError(f"{self.first_missing_mask()}: labels from masks need a mask for every image")
            return np.stack([self.labels_from_mask(self.load_mask(i)) for i in range(len(self))])
        raise WsssError(f"data.labels: unknown source {source!r}; use auto, json, npy, tags or masks")

    def labels_from_mask(self, mask: np.ndarray) -> np.ndarray:
        """(num_fg,) multi-hot vector of the classes present in an (H, W) mask."""
        present = np.unique(mask)
        present = present[(present > 0) & (present != IGNORE_INDEX) & (present < self.num_classes)]
        vector = np.zeros(self.num_classes - 1, dtype=np.float32)
        vector[present - 1] = 1.0
        return vector

    def image_path(self, index: int) -> Path:
        image_id = self.ids[index]
        for suffix in IMAGE_SUFFIXES:
            path = self.image_dir / f"{image_id}{suffix}"
            if path.exists():
                return path
        return self.image_dir / f"{image_id}.jpg"

    def mask_path(self, index: int) -> Optional[Path]:
        if self.mask_dir is None:
            return None
        path = self.mask_dir / f"{self.ids[index]}.png"
        return path if path.exists() else None

    def load_image(self, index: int) -> np.ndarray:
        return load_rgb(self.image_path(index))

    def load_mask(self, index: int, expected_size: Optional[tuple[int, int]] = None) -> Optional[np.ndarray]:
        """The (H, W) uint8 mask, its values checked against the class list and its size against
        the image's when ``expected_size`` is given."""
        path = self.mask_path(index)
        if path is None:
            return None
        mask = load_mask(path)
        check_mask_classes(mask, path, self.num_classes)
        if expected_size is not None and mask.shape != tuple(expected_size):
            raise WsssError(
                f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
                f"{expected_size[1]}x{expected_size[0]}; masks must match their images pixel for pixel"
            )
        return mask

    def __getitem__(self, index: int) -> dict:
        image = self.load_image(index)
        return {
            "id": self.ids[index],
            "index": index,
            "image": image,
            "mask": self.load_mask(index, image.shape[:2]),
            "label": self.labels[index],
        }
