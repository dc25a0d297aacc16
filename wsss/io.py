"""Reading images and masks with clear errors, and writing outputs atomically.

Every writer here goes through :func:`atomic_path`: the data is written to a temporary
file in the destination folder and renamed over the target, so a killed process never
leaves a half-written file where a finished one belongs.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import WsssError

IGNORE_INDEX = 255


class UnreadableImage(WsssError):
    """An image file that cannot be read: ``reason`` says why without advice on the fix, for
    callers that handle the file themselves (``wsss predict`` skips it)."""

    def __init__(self, path: Path, reason: str, advice: str):
        super().__init__(f"{path}: {reason}" + (f"; {advice}" if advice else ""))
        self.path, self.reason, self.advice = path, reason, advice

    def __reduce__(self):  # raised in a worker process, it is pickled back to the parent
        return type(self), (self.path, self.reason, self.advice)


def voc_palette(num_entries: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map: (num_entries, 3) uint8, index 255 is void (224, 224, 192)."""
    palette = np.zeros((num_entries, 3), dtype=np.uint8)
    for index in range(num_entries):
        c, r, g, b = index, 0, 0, 0
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette[index] = (r, g, b)
    return palette


VOC_PALETTE = voc_palette()


def _image_size_unchecked(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header, past PIL's decompression-bomb check (nothing is decoded)."""
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as img:
            return img.size
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _decode(path: Path, what: str, convert: Callable[[Image.Image], np.ndarray], missing: str,
            damaged: str) -> np.ndarray:
    """Open ``path``, decode it fully and ``convert`` it; every failure is one WsssError naming the file.

    Images over PIL's decompression-bomb limit (2 x ``PIL.Image.MAX_IMAGE_PIXELS``, about 179 Mpx)
    are refused with their size; wsss reads anything below it.
    """
    try:
        with Image.open(path) as img:
            img.load()  # force full decode now: truncated files fail here, not later
            return convert(img)
    except FileNotFoundError:
        raise UnreadableImage(path, f"{what} not found", missing) from None
    except Image.DecompressionBombError:
        width, height = _image_size_unchecked(path)
        raise UnreadableImage(path, f"{what} is {width}x{height} ({width * height / 1e6:.0f} Mpx), larger than wsss "
                              f"reads ({2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} Mpx)", "downscale it") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UnreadableImage(path, f"cannot decode {what} ({exc})", damaged) from None


def _to_rgb(img: Image.Image) -> np.ndarray:
    img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        arr = (255.0 * arr / max(arr.max(), 1.0)).astype(np.uint8)
        img = Image.fromarray(arr, mode="L")
    return np.array(img if img.mode == "RGB" else img.convert("RGB"), dtype=np.uint8)  # one copy


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Load an image as (H, W, 3) uint8 RGB.

    EXIF orientation is applied; grayscale, palette, 16-bit and RGBA images are converted
    (transparent pixels are composited over white). Missing, undecodable or oversized files
    raise a :class:`WsssError` naming the file.
    """
    return _decode(Path(path), "image", _to_rgb, "check the dataset root and the split file that lists it",
                   "replace the file or remove its id from the split")


def load_mask(path: str | os.PathLike) -> np.ndarray:
    """Load a label mask as (H, W) uint8 class indices (255 = ignore).

    Accepts palette ('P') and grayscale ('L') PNGs, the VOC convention.
    """
    path = Path(path)

    def indices(img: Image.Image) -> np.ndarray:
        if img.mode not in ("P", "L", "I", "I;16"):
            raise WsssError(f"{path}: mask has mode {img.mode}; expected a palette or grayscale PNG of class indices")
        values = np.asarray(img, dtype=np.int64)
        if values.size and (values.min() < 0 or values.max() > IGNORE_INDEX):
            bad = int(values.max() if values.max() > IGNORE_INDEX else values.min())
            raise WsssError(f"{path}: mask value {bad} is not a class index (0..254, {IGNORE_INDEX} = void); "
                            "save the mask with 8-bit class indices")
        return values.astype(np.uint8)

    return _decode(path, "mask", indices, "provide it or use a split without masks", "replace the file")


def load_saliency_mask(path: str | os.PathLike) -> np.ndarray:
    """Load a saliency mask as (H, W) float32 in {0, 1}: any non-zero pixel is salient."""
    return _decode(Path(path), "saliency mask", lambda img: (np.asarray(img.convert("L")) > 0).astype(np.float32),
                   "", "replace the file")


def load_saliency_map(path: str | os.PathLike, missing: str = "", damaged: str = "replace the file") -> np.ndarray:
    """Load a grey saliency map as (H, W) float32 in [0, 1] (grey level / 255)."""
    return _decode(Path(path), "saliency map", lambda img: np.asarray(img.convert("L"), dtype=np.float32) / 255.0,
                   missing, damaged)


@functools.lru_cache(maxsize=None)
def file_mode() -> int:
    """The mode an ordinary new file gets here, 0o666 less the umask; the umask is read once,
    from /proc where it can be read without changing it (set and restored elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o077)
    os.umask(umask)
    return 0o666 & ~umask


def write_error(path: str | os.PathLike, exc: OSError) -> WsssError:
    """The one-line error of a failed write (a full disk, no permission) to ``path``."""
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    fix = "free space or" if full else "check its permissions or"
    return WsssError(f"{path}: cannot write ({exc.strerror or exc}); {fix} choose another --run-dir "
                     "(--output for predict)")


TEMP_MARK = ".wsss-"
"""In the name of every temporary file of :func:`atomic_path` (``.<name>.wsss-XXXXXXXX.tmp``):
the clean-up of a killed run's temporaries removes these names and no one else's ``.*.tmp``."""


def check_replaceable(target: Path) -> None:
    """A writer replaces only a regular file (or writes a new one): never a folder, a device, a
    pipe or a symbolic link, which a rename would silently swap for a file."""
    if target.is_symlink() or (target.exists() and not target.is_file()):
        kind = "a symbolic link" if target.is_symlink() else "a folder" if target.is_dir() else "not a regular file"
        raise WsssError(f"{target}: is {kind}; wsss replaces only regular files, choose another path")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it over ``target``.

    The file gets the mode an ordinary new file would (0o666 less the umask), not mkstemp's 0600.
    On any exception the temporary file is removed and ``target`` is left untouched; a failed
    write (a full disk) is a :class:`WsssError` naming ``target``. Only a regular file is ever
    replaced (:func:`check_replaceable`).
    """
    target = Path(target)
    check_replaceable(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WsssError(f"{target.parent}: cannot create output folder ({exc}); choose a writable location") from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}{TEMP_MARK}", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise WsssError(f"{target.parent}: output folder is not writable ({exc}); choose a writable location") from None
    tmp_path = Path(tmp)
    try:
        try:
            os.fchmod(fd, file_mode())
        finally:
            os.close(fd)
        yield tmp_path
        # on disk before the rename: a full disk that a write did not report (delayed allocation)
        # fails here, not as a truncated file at the final name
        with open(tmp_path, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(tmp_path, target)
    except OSError as exc:
        if exc.errno is None:  # not the file system's: e.g. PIL's "cannot write mode RGBA as JPEG"
            raise
        raise write_error(target, exc) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_stale_temps(folder: str | os.PathLike, recursive: bool = True) -> int:
    """Delete the temporary files of :func:`atomic_path` that a killed process left under ``folder``
    (in its subfolders too unless ``recursive`` is False): its names only, never another program's.

    Call it only where no other process is writing into ``folder``; returns how many were removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    stale = [p for p in (folder.rglob if recursive else folder.glob)(f".*{TEMP_MARK}*.tmp") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def save_palette_png(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Write an (H, W) class-index mask as a VOC-palette PNG, atomically."""
    image = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    image.putpalette(VOC_PALETTE.reshape(-1).tolist())
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def save_image(path: str | os.PathLike, image: np.ndarray, quality: int = 92) -> None:
    """Write an (H, W, 3) uint8 RGB (or (H, W) gray) image, format from the suffix, atomically."""
    path = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}.get(path.suffix.lower(), "PNG")
    with atomic_path(path) as tmp:
        kwargs = {"quality": quality} if fmt == "JPEG" else {}
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(tmp, format=fmt, **kwargs)


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write arrays as a compressed .npz, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every array of an .npz into memory; a damaged file raises a WsssError naming it."""
    try:
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise WsssError(f"{path}: not found; run the stage that produces it first") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise WsssError(f"{path}: damaged file ({exc}); delete it and re-run the stage") from None


def save_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 text, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def save_json(path: str | os.PathLike, obj) -> None:
    """Write JSON (indented, sorted keys kept as given), atomically."""
    save_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def read_json(path: str | os.PathLike, default=None):
    """A JSON file's content, ``default`` when it is missing; a damaged file (not JSON, not
    UTF-8, nested past what the parser follows) is a one-line WsssError naming it."""
    path = Path(path)
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text())
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise WsssError(f"{path}: damaged JSON ({str(exc)[:120]}); re-run the stage that writes it") from None


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the VOC colours of an (H, W) mask over an (H, W, 3) image; void and background stay visible.

    Done in bands of rows: the float copies of a large photo's pixels would take GBs."""
    blend = np.array(image, dtype=np.uint8)
    rows = max(1, (1 << 20) // max(1, mask.shape[1]))
    for start in range(0, mask.shape[0], rows):
        labels, pixels = mask[start:start + rows], blend[start:start + rows]
        painted = (labels > 0) & (labels != IGNORE_INDEX)
        colours = VOC_PALETTE[labels[painted]].astype(np.float32)
        pixels[painted] = ((1 - alpha) * pixels[painted].astype(np.float32) + alpha * colours).clip(0, 255)
    return blend


def with_legend(image: np.ndarray, mask: np.ndarray, class_names: list[str]) -> np.ndarray:
    """``image`` (an overlay, (H, W, 3) uint8) with a legend of the classes present in ``mask``
    in its top-left corner: a swatch of each class's VOC colour and its name, on a dark box.
    Background and void are left out; an image too small for a readable legend keeps none
    (``classes.json`` beside it says which colour is which class)."""
    from PIL import ImageDraw, ImageFont

    present = [int(c) for c in np.unique(mask) if 0 < c < len(class_names) and c != IGNORE_INDEX]
    height, width = image.shape[:2]
    size = max(10, min(height, width) // 24)  # text height in pixels
    if not present or min(height, width) < 6 * size:
        return image
    font = ImageFont.load_default(size=size)
    canvas = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(canvas, "RGBA")
    line, pad = int(size * 1.4), size // 2
    names = [class_names[c] for c in present]
    text_width = max(draw.textlength(name, font=font) for name in names)
    rows = min(len(present), max(1, (height - 2 * pad) // line))  # as many as fit
    box = (0, 0, min(width, int(2 * pad + size + pad + text_width)), 2 * pad + rows * line)
    draw.rectangle(box, fill=(0, 0, 0, 150))
    for row, (cls, name) in enumerate(zip(present[:rows], names)):
        top = pad + row * line
        draw.rectangle((pad, top, pad + size, top + size), fill=tuple(int(v) for v in VOC_PALETTE[cls]),
                       outline=(255, 255, 255))
        draw.text((2 * pad + size, top - size // 8), name, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)
