"""Plain tags files and `wsss import`: from a folder of photos and a list of their tags to a
dataset every pipeline reads.

A tags file is CSV or TSV, one image per row: the image's file name, then its tags, separated by
``;``, ``,`` or spaces (in one cell or spread over several)::

    image,tags
    IMG_0001.jpg,dog;chair
    IMG_0002.jpg,cat
    IMG_0003.jpg,

An empty tags cell is an image with no object (background only: a real negative). The header row
is optional. The image's id is its file name without the extension.

``import_tagged_images`` lays such a folder out as the dataset the pipelines read
(``wsss.data.voc``): ``JPEGImages/``, ``image_labels.json``, ``class_names.txt`` (background, then
the tags in alphabetical order) and seeded ``ImageSets/Segmentation/{train,val}.txt``. Its
validation split has no masks: the runs report no val mIoU until masks are added.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import WsssError
from ..io import save_json, save_text
from ..names import check_name
from .demo import claim_generated_folder

log = logging.getLogger("wsss")

TAGS_FILES = ("tags.csv", "tags.tsv")
"""The names under which a dataset folder's tags file is found (``data.labels: tags``)."""

HEADER_NAMES = {"image", "images", "file", "filename", "file_name", "name", "id", "image_id", "path"}
"""A first row whose first cell is one of these is a header, not an image."""

SEPARATORS = re.compile(r"[;,\s]+")


def read_tags_file(path: Path) -> dict[str, list[str]]:
    """{image file name: [tags]} of a CSV or TSV tags file, in its order.

    Every problem is one line naming the file and its line: an empty image cell, an image listed
    twice, a tag that is not a plain name or is called background."""
    from .voc import read_text_file

    text = read_text_file(path, "the tags file")
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = "\t" if "\t" in first or path.suffix.lower() == ".tsv" else ","
    table: dict[str, list[str]] = {}
    seen: dict[str, int] = {}
    for number, row in enumerate(csv.reader(text.splitlines(), delimiter=delimiter), start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        if number == 1 and cells[0].lower() in HEADER_NAMES:
            continue
        name = cells[0]
        if not name:
            raise WsssError(f"{path}:{number}: no image name in the first column; write `image,tags`")
        if name in seen:
            raise WsssError(f"{path}:{number}: image {name!r} is listed again (first on line {seen[name]}); "
                            "list each image once with all its tags")
        tags = [tag for cell in cells[1:] for tag in SEPARATORS.split(cell) if tag]
        for tag in tags:
            check_name(tag, "tag", f"{path}:{number}", "use plain class names such as dog or dining_table")
            if tag.lower() == "background":
                raise WsssError(f"{path}:{number}: 'background' is not a tag; leave the tags empty for an image "
                                "with no object")
        seen[name] = number
        table[name] = list(dict.fromkeys(tags))  # a tag given twice counts once
    if not table:
        raise WsssError(f"{path}: lists no images; write one row per image: `image,tags`")
    return table


def find_tags_file(root: Path):
    """The tags file of a dataset folder (``tags.csv`` or ``tags.tsv``), or None."""
    found = [root / name for name in TAGS_FILES if (root / name).is_file()]
    if len(found) > 1:
        raise WsssError(f"{root}: holds both {' and '.join(p.name for p in found)}; keep one tags file")
    return found[0] if found else None


def tags_by_id(path: Path) -> dict[str, list[str]]:
    """A tags file keyed by image id (the file name without its extension)."""
    table = {}
    for name, tags in read_tags_file(path).items():
        image_id = Path(name).stem if Path(name).suffix else name
        if image_id in table:
            raise WsssError(f"{path}: two rows name image {image_id!r} (with different extensions); keep one")
        table[image_id] = tags
    return table


def class_names_from_tags(tags: dict[str, list[str]]) -> list[str]:
    """background, then every tag used, in alphabetical order (so the list does not depend on
    the order of the rows)."""
    return ["background", *sorted({tag for names in tags.values() for tag in names})]


def seeded_split(ids: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train ids, val ids): a seeded shuffle of the sorted ids, ``val_fraction`` of them (at least
    one when there are two or more and the fraction is above 0) for val; each list sorted."""
    ordered = sorted(ids)
    count = round(val_fraction * len(ordered))
    if val_fraction > 0 and len(ordered) >= 2:
        count = min(max(count, 1), len(ordered) - 1)
    chosen = set(np.random.default_rng(seed).permutation(len(ordered))[:count].tolist())
    val = [image_id for k, image_id in enumerate(ordered) if k in chosen]
    train = [image_id for k, image_id in enumerate(ordered) if k not in chosen]
    return train, val


def import_tagged_images(images: Path, tags_file: Path, out: Path, val_fraction: float = 0.2, seed: int = 0,
                         link: bool = False) -> dict:
    """Lay out the photos of ``images`` named in ``tags_file`` as a dataset in ``out`` (a new or
    empty folder, or one imported before); returns what was written (also ``out/import.json``).
    ``link``: symbolic links to the photos instead of copies. Nothing is written into ``images``."""
    from .voc import IMAGE_SUFFIXES

    images, out = Path(images), Path(out)
    if not images.is_dir():
        raise WsssError(f"{images}: not a folder; --images names the folder of your photos")
    if not tags_file.is_file():
        raise WsssError(f"{tags_file}: tags file not found; write one row per image: `image,tags`")
    if not 0 <= val_fraction < 1:
        raise WsssError(f"--val-fraction {val_fraction}: must lie in [0, 1)")
    if out.resolve() == images.resolve() or images.resolve() in out.resolve().parents:
        raise WsssError(f"{out}: is inside the photos folder {images}; choose an output folder outside it")
    table = read_tags_file(tags_file)
    sources: dict[str, Path] = {}
    labels: dict[str, list[str]] = {}
    for name, tags in table.items():
        source = images / name
        if not Path(name).suffix:  # a bare id: the photo with any of the image suffixes
            source = next((images / f"{name}{s}" for s in IMAGE_SUFFIXES if (images / f"{name}{s}").is_file()), source)
        check_name(source.name, "image file name", str(tags_file), "name files of the photos folder, no subfolders")
        if not source.is_file():
            raise WsssError(f"{source}: not found; {tags_file} lists {name!r}, which is not in {images}")
        if source.suffix not in IMAGE_SUFFIXES:
            raise WsssError(f"{source}: not a .jpg or .png; convert it, or remove its row from {tags_file}")
        try:
            with Image.open(source) as image:
                image.verify()  # a file that is not an image fails here, not in the middle of training
        except Exception:
            raise WsssError(f"{source}: not a readable image; replace it or remove its row from {tags_file}") from None
        image_id = source.stem
        check_name(image_id, "image id", str(tags_file), "name the photos with plain file names")
        if image_id in sources:
            raise WsssError(f"{tags_file}: {sources[image_id].name} and {source.name} make the same id {image_id!r}; "
                            "rename one")
        sources[image_id], labels[image_id] = source, tags
    listed = {source.name for source in sources.values()}
    unlisted = sorted(p.name for p in images.iterdir() if p.suffix in IMAGE_SUFFIXES and p.name not in listed)
    train, val = seeded_split(list(sources), val_fraction, seed)
    class_names = class_names_from_tags(labels)

    claim_generated_folder(out)
    photos = out / "JPEGImages"
    photos.mkdir(exist_ok=True)
    for source in sources.values():
        target = photos / source.name
        if target.is_symlink() or target.exists():
            target.unlink()  # this folder is an import's own (claimed above): its earlier photo or link
        if link:
            os.symlink(source.resolve(), target)
        else:
            shutil.copy2(source, target)
    save_json(out / "image_labels.json", dict(sorted(labels.items())))
    save_text(out / "class_names.txt", "\n".join(class_names) + "\n")
    for split, ids in (("train", train), ("val", val)):
        save_text(out / "ImageSets" / "Segmentation" / f"{split}.txt", "".join(f"{i}\n" for i in ids))
    record = {"images": str(images.resolve()), "tags": str(tags_file.resolve()), "seed": seed,
              "val_fraction": val_fraction, "linked": link, "num_images": len(sources), "num_train": len(train),
              "num_val": len(val), "classes": class_names[1:], "background_only": sum(not t for t in labels.values()),
              "left_out": unlisted, "masks": "none: val is scored only once SegmentationClass/<id>.png masks are added"}
    save_json(out / "import.json", record)
    counts = {name: sum(name in tags for tags in labels.values()) for name in class_names[1:]}
    log.info("imported %d photos into %s: %d train, %d val (seed %d; val has tags only, no masks); %d classes: %s",
             len(sources), out, len(train), len(val), seed, len(counts),
             ", ".join(f"{name} ({count})" for name, count in counts.items()))
    if unlisted:
        log.info("%d photos in %s have no row in %s and were left out (give them an empty tags cell to use them "
                 "as background-only images): %s", len(unlisted), images, tags_file.name, ", ".join(unlisted[:5])
                 + (" ..." if len(unlisted) > 5 else ""))
    rare = [name for name, count in counts.items() if count < 2]
    if rare:
        log.warning("tags on fewer than 2 photos (a classifier cannot learn them): %s", ", ".join(rare))
    return record


def label_table_names(root: Path) -> list[str] | None:
    """Every class name the label file of a dataset folder uses (``image_labels.json`` or a tags
    file), or None when it has neither: the classes when ``class_names.txt`` is absent."""
    from .voc import read_text_file

    json_path = root / "image_labels.json"
    if json_path.is_file():
        try:
            table = json.loads(read_text_file(json_path, "the label file"))
        except (json.JSONDecodeError, RecursionError):
            return None  # reading the labels names the problem
        if isinstance(table, dict):
            return sorted({n for names in table.values() if isinstance(names, list) for n in names if isinstance(n, str)})
        return None
    tags = find_tags_file(root)
    return class_names_from_tags(tags_by_id(tags))[1:] if tags is not None else None
