"""`wsss predict`: segment a folder of new images with a trained model (the
:class:`wsss.inference.predictor.Predictor` of each worker), writing masks, overlays and
``classes.json``.

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
from typing import Optional, Sequence

from . import distributed
from .amp import dtype_name
from .config import DEFAULT_MAX_SIDE
from .errors import WsssError
from .inference.predictor import Predictor
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
from .parallel import map_images

log = logging.getLogger("wsss")

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


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
