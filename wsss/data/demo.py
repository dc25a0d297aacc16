"""A deterministic generator of a small VOC-layout dataset for the demo and the tests.

Scenes are textured backgrounds (smooth coloured noise with a gradient) holding zero to two
objects from five classes, each with its own shape *and* texture, so a classifier must look
at the object to tell them apart. Masks carry a one-pixel void (255) border around objects,
as VOC's do. The dataset is written with the same layout real data uses, so the demo runs
exactly the code path a user's data takes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import WsssError
from ..io import IGNORE_INDEX, save_image, save_palette_png

DEMO_CLASSES = ["background", "disc", "box", "triangle", "ring", "cross"]


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """(size, size) noise in [0, 1], bilinear upsampling of a cells x cells random grid."""
    grid = rng.random((cells + 1, cells + 1))
    coords = np.linspace(0, cells, size, endpoint=False)
    i0 = coords.astype(int)
    f = coords - i0
    rows = grid[i0] * (1 - f)[:, None] + grid[i0 + 1] * f[:, None]
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    base = rng.uniform(60, 200, size=3)
    noise = np.stack([_smooth_noise(rng, size, int(rng.integers(3, 9))) for _ in range(3)], axis=-1)
    ramp = np.linspace(-1, 1, size)[:, None, None] * rng.uniform(-30, 30, size=3)
    fine = rng.normal(0, 8, size=(size, size, 3))
    return (base + 70 * (noise - 0.5) + ramp + fine).clip(0, 255)


def _shape_mask(cls: int, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float, angle: float) -> np.ndarray:
    dy, dx = yy - cy, xx - cx
    ry = dy * np.cos(angle) - dx * np.sin(angle)
    rx = dy * np.sin(angle) + dx * np.cos(angle)
    dist = np.sqrt(dy ** 2 + dx ** 2)
    if cls == 1:  # disc
        return dist <= r
    if cls == 2:  # box
        return (np.abs(ry) <= 0.8 * r) & (np.abs(rx) <= 0.8 * r)
    if cls == 3:  # triangle pointing along the rotated y axis
        return (ry <= 0.6 * r) & (ry >= -r + 1.9 * np.abs(rx))
    if cls == 4:  # ring
        return (dist <= r) & (dist >= 0.55 * r)
    # cross
    arm = 0.3 * r
    return ((np.abs(ry) <= arm) & (np.abs(rx) <= r)) | ((np.abs(rx) <= arm) & (np.abs(ry) <= r))


def _texture(cls: int, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """(size, size, 3) float texture of a class: a hue family plus a pattern."""
    size = yy.shape[0]
    jitter = rng.uniform(-25, 25, size=3)
    period = rng.uniform(5, 9)
    if cls == 1:  # red with dots
        base, other = np.array([210, 50, 40]), np.array([250, 210, 200])
        pattern = ((np.sin(yy * 2 * np.pi / period) * np.sin(xx * 2 * np.pi / period)) > 0.6)
    elif cls == 2:  # blue with diagonal stripes
        base, other = np.array([40, 70, 200]), np.array([170, 200, 250])
        pattern = (((yy + xx) // (period / 2)) % 2) == 0
    elif cls == 3:  # yellow checkerboard
        base, other = np.array([230, 200, 40]), np.array([120, 90, 10])
        pattern = (((yy // period) + (xx // period)) % 2) == 0
    elif cls == 4:  # green with horizontal stripes
        base, other = np.array([40, 170, 60]), np.array([10, 80, 20])
        pattern = ((yy // (period / 2)) % 2) == 0
    else:  # purple speckle
        base, other = np.array([140, 50, 170]), np.array([230, 180, 240])
        pattern = rng.random((size, size)) < 0.25
    tex = np.where(pattern[..., None], other, base).astype(np.float64) + jitter
    return tex + rng.normal(0, 10, size=(size, size, 3))


def _void_border(mask: np.ndarray) -> np.ndarray:
    """Mark pixels whose 4-neighbourhood holds another label as void (255), as VOC does."""
    edge = np.zeros(mask.shape, dtype=bool)
    edge[1:] |= mask[1:] != mask[:-1]
    edge[:-1] |= mask[1:] != mask[:-1]
    edge[:, 1:] |= mask[:, 1:] != mask[:, :-1]
    edge[:, :-1] |= mask[:, 1:] != mask[:, :-1]
    out = mask.copy()
    out[edge] = IGNORE_INDEX
    return out


def render_scene(rng: np.random.Generator, size: int, num_objects: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """One scene: (size, size, 3) uint8 image, (size, size) uint8 mask, sorted class list."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    image = _background(rng, size)
    mask = np.zeros((size, size), dtype=np.uint8)
    classes = rng.choice(np.arange(1, len(DEMO_CLASSES)), size=num_objects, replace=False)
    placed: list[int] = []
    for cls in classes:
        for _ in range(20):  # find a spot that does not hide an earlier object
            r = rng.uniform(0.16, 0.28) * size
            cy, cx = rng.uniform(r, size - r, size=2)
            shape = _shape_mask(int(cls), yy, xx, cy, cx, r, rng.uniform(0, 2 * np.pi))
            if shape.sum() > 0.01 * size * size and (mask[shape] > 0).mean() < 0.1:
                break
        else:
            continue
        shape &= mask == 0
        image[shape] = _texture(int(cls), rng, yy, xx)[shape]
        mask[shape] = cls
        placed.append(int(cls))
    return image.clip(0, 255).astype(np.uint8), _void_border(mask), sorted(placed)


GENERATED_MARKER = ".wsss-generated"
"""Written first into a folder the generators fill: a later generation may write there again."""


def claim_generated_folder(root: Path) -> None:
    """Let a generator write into ``root`` only when it is new, empty or one that wsss generated
    (its marker): a config that keeps ``data.demo`` while ``data.root`` names a real dataset
    must not write demo images, splits and labels into it."""
    if root.exists() and not root.is_dir():
        raise WsssError(f"{root}: is not a folder; generated data needs a new or empty folder")
    if root.is_dir() and not (root / GENERATED_MARKER).exists() and any(root.iterdir()):
        raise WsssError(f"{root}: holds files wsss did not generate; generated data goes only into a new or empty "
                        "folder (remove data.demo from the config to use the data there)")
    root.mkdir(parents=True, exist_ok=True)
    (root / GENERATED_MARKER).touch()


def generate_demo_dataset(root: str | Path, num_train: int = 96, num_val: int = 32, image_size: int = 128, seed: int = 0) -> Path:
    """Write the demo dataset in VOC layout under ``root`` and return ``root``: a new or empty
    folder, or one generated before (:func:`claim_generated_folder`).

    Deterministic: the same arguments give byte-identical files. About 10% of the images
    hold no object (background-only negatives, as real data has).
    """
    root = Path(root)
    claim_generated_folder(root)
    rng = np.random.default_rng(seed)
    labels: dict[str, list[str]] = {}
    splits = {"train": [], "val": []}
    for split, count in (("train", num_train), ("val", num_val)):
        for n in range(count):
            image_id = f"{split}_{n:04d}"
            num_objects = int(rng.choice([0, 1, 2], p=[0.1, 0.55, 0.35]))
            image, mask, classes = render_scene(rng, image_size, num_objects)
            save_image(root / "JPEGImages" / f"{image_id}.jpg", image, quality=92)
            save_palette_png(root / "SegmentationClass" / f"{image_id}.png", mask)
            labels[image_id] = [DEMO_CLASSES[c] for c in classes]
            splits[split].append(image_id)
    split_dir = root / "ImageSets" / "Segmentation"
    split_dir.mkdir(parents=True, exist_ok=True)
    for split, ids in splits.items():
        (split_dir / f"{split}.txt").write_text("\n".join(ids) + "\n")
    (root / "class_names.txt").write_text("\n".join(DEMO_CLASSES) + "\n")
    (root / "image_labels.json").write_text(json.dumps(labels, indent=1) + "\n")
    return root


def demo_dataset_complete(root: str | Path) -> bool:
    """True when a previous generation finished (the labels file is written last)."""
    root = Path(root)
    return (root / "image_labels.json").exists() and (root / "class_names.txt").exists()


SALIENCY_DONE = "README.txt"


def generate_demo_saliency(root: str | Path, num_images: int = 48, image_size: int = 128, seed: int = 0) -> Path:
    """Write a generated saliency dataset (``images/<id>.jpg``, ``masks/<id>.png``) under ``root``.

    The scenes are those of the demo segmentation set (same backgrounds, shapes and textures),
    each with one or two objects; the mask marks every object pixel salient (255), the void
    ring around objects included. Uses its own random stream, so the segmentation set's files
    do not depend on it. Deterministic: the same arguments give byte-identical files.
    """
    root = Path(root)
    claim_generated_folder(root)
    rng = np.random.default_rng([seed, 5])
    for n in range(num_images):
        num_objects = int(rng.choice([1, 2], p=[0.7, 0.3]))
        image, mask, _ = render_scene(rng, image_size, num_objects)
        save_image(root / "images" / f"sal_{n:04d}.jpg", image, quality=92)
        save_image(root / "masks" / f"sal_{n:04d}.png", np.where(mask > 0, 255, 0).astype(np.uint8))
    # written last: its presence marks a finished generation
    (root / SALIENCY_DONE).write_text(
        f"Generated saliency data (wsss.data.demo.generate_demo_saliency, {num_images} images, "
        f"{image_size} px, seed {seed}): images/<id>.jpg, masks/<id>.png (255 salient).\n"
    )
    return root


def demo_saliency_complete(root: str | Path) -> bool:
    return (Path(root) / SALIENCY_DONE).exists()
