"""`wsss make-saliency`: SSNet's saliency maps of a split, the background cue of PSA and IRN.

SSNet (Zeng et al., ICCV 2019) learns class-agnostic saliency S = sum_i v_i H_i from pixel
masks (DUTS-TR). PSA and IRN decide background from (1 - max CAM)^alpha, a guess where CAMs
fire on parts and leak onto context; saliency is the missing cue. This step writes the maps of
any split from any saliency-capable checkpoint (``saliency.checkpoint``, or
``--saliency-checkpoint``), like make-cam writes CAMs:

    saliency/<name>/<id>.png               8-bit grey, round(255 S), at the image's size
    saliency/<name>/settings.json          the model's fingerprint and how the maps were made
    eval/saliency_maps_<name>.json         on a split with masks: the maps as class-agnostic
                                           foreground (objects vs background, void ignored)
                                           at thresholds 0.05..0.95, their best threshold s*, MAE

The seeds and the walk read them through :func:`saliency_cue` (thresholds from s*, as
``psa.seeds: auto`` derives the CAMs' from t*).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..config import TRAIN_SALIENCY
from ..distributed import on_main_process
from ..engine.plan import WouldRun, is_planning
from ..errors import WsssError
from ..inference.predictor import Predictor
from ..io import IGNORE_INDEX, load_saliency_map, read_json, save_image, save_json
from ..metrics import confusion_matrix, iou_per_class
from ..models import load_model
from ..run.context import RunContext
from ..run.per_image import output_settings, run_per_image
from .cam_threshold import auto_seed_thresholds, cam_background_threshold

log = logging.getLogger("wsss")

EVAL_KIND = "saliency_maps"
"""``eval/saliency_maps_<name>.json`` (``eval/saliency_<dataset>.json`` is eval-saliency's)."""

THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))
"""Saliency thresholds the foreground IoU is scored at (0.05 .. 0.95)."""


def saliency_checkpoint(ctx: RunContext, checkpoint: Optional[Path] = None) -> Path:
    """The saliency model: ``checkpoint`` (--saliency-checkpoint), the one the run trained or
    reused (``saliency.checkpoint: train``), or ``saliency.checkpoint``."""
    path = checkpoint or ctx.saliency_model or ctx.config.saliency.checkpoint
    if path == TRAIN_SALIENCY:
        raise WsssError("saliency.checkpoint: train is the model `wsss run` trains (or reuses) first; run "
                        "`wsss run`, or pass --saliency-checkpoint MODEL")
    if path is None:
        raise WsssError("no saliency model: set saliency.checkpoint to an SSNet model.pt (`wsss train-ssnet`, "
                        "e.g. --set saliency.checkpoint=runs/ssnet_msrc/ssnet2/model.pt) or pass --saliency-checkpoint")
    path = Path(path)
    if not path.is_file():
        raise WsssError(f"{path}: saliency model not found; train one with `wsss train-ssnet` or fix saliency.checkpoint")
    return path


def saliency_dir(ctx: RunContext, split: str, root: Optional[Path] = None) -> Path:
    return ctx.layout.saliency(ctx.output_name(split, root))


def saliency_settings(ctx: RunContext, split: str, root: Optional[Path] = None) -> Optional[dict]:
    """The settings a split's saliency maps were made with (None before make-saliency ran)."""
    return output_settings(saliency_dir(ctx, split, root))


def load_saliency(folder: Path, image_id: str, size: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 saliency in [0, 1] of one image, checked to be the image's ``size``."""
    path = folder / f"{image_id}.png"
    saliency = load_saliency_map(path, missing="run `wsss make-saliency` for this split first",
                                 damaged="delete it and re-run `wsss make-saliency`")
    if saliency.shape != tuple(size):
        raise WsssError(f"{path}: saliency map is {saliency.shape[1]}x{saliency.shape[0]}, its image "
                        f"{size[1]}x{size[0]}; delete it and re-run `wsss make-saliency`")
    return saliency


def saliency_to_png(saliency: np.ndarray) -> np.ndarray:
    """(H, W) float saliency in [0, 1] -> (H, W) uint8 grey levels round(255 S)."""
    return np.round(255 * np.clip(saliency, 0, 1)).astype(np.uint8)


def foreground_confusions(saliency: np.ndarray, mask: np.ndarray, thresholds=THRESHOLDS) -> np.ndarray:
    """Saliency as class-agnostic foreground against a class mask.

    Args:
        saliency: (H, W) S in [0, 1]; mask: (H, W) uint8, 0 background, 1.. objects, 255 void.
    Returns:
        (T, 2, 2) int64 confusion matrices, one per threshold (rows: truth background /
        object, columns: S < t / S >= t), void pixels left out.
    """
    truth = np.where(mask == IGNORE_INDEX, IGNORE_INDEX, mask > 0)  # objects vs background, void kept
    return np.stack([confusion_matrix(saliency >= t, truth, 2) for t in thresholds])


class SaliencyMaker:
    """Per-image job: the saliency map of one image, written atomically (built in each worker)."""

    def __init__(self, ctx: RunContext, split: str, root: Optional[Path], checkpoint: Path):
        cue = ctx.config.saliency
        self.voc, self.out = ctx.dataset(split, root), saliency_dir(ctx, split, root)
        self.predictor = Predictor(checkpoint, str(ctx.device), cue.scales, cue.flip, amp=ctx.config.amp,
                                   max_side=cue.long_side, saliency_upsample=cue.upsample, saliency_crf=cue.crf)

    def __call__(self, index: int) -> None:
        saliency = self.predictor.saliency(self.voc.load_image(index))
        save_image(self.out / f"{self.voc.ids[index]}.png", saliency_to_png(saliency))


def run(ctx: RunContext, split: Optional[str] = None, root: Optional[Path] = None,
        checkpoint: Optional[Path] = None) -> Path:
    """Write the saliency maps of every image of ``split``; score them when it has masks."""
    split = split or ctx.config.data.train_split
    voc = ctx.dataset(split, root)
    cue = ctx.config.saliency
    out = saliency_dir(ctx, split, root)
    if checkpoint is None and cue.checkpoint is None and saliency_settings(ctx, split, root) is not None \
            and all((out / f"{image_id}.png").exists() for image_id in voc.ids):
        # made earlier with --saliency-checkpoint: complete, and no model configured to remake them
        log.info("make-saliency: %s is complete (%d images), skipping", out, len(voc))
        return out
    path = saliency_checkpoint(ctx, checkpoint)
    model = load_model(path, "cpu", "ssnet")  # not an SSNet: one line naming the file, before any worker starts
    settings = {"model": model.fingerprint, "scales": cue.scales, "flip": cue.flip, "crf": cue.crf,
                "upsample": cue.upsample, "long_side": cue.long_side, **ctx.precision_setting()}
    run_per_image(ctx, "make-saliency", voc, out, settings, lambda image_id: out / f"{image_id}.png",
                  SaliencyMaker, (ctx, split, root, path), cue.workers, f"make-saliency {split}", scores=(EVAL_KIND,))
    if voc.has_masks and not is_planning():
        score(ctx, split, root)
    return out


@on_main_process  # scoring is not sharded: rank 0 scores, the others wait
def score(ctx: RunContext, split: str, root: Optional[Path] = None) -> dict:
    """Score a split's saliency maps as class-agnostic foreground (objects vs background)."""
    voc = ctx.dataset(split, root, require_masks=True)
    folder = saliency_dir(ctx, split, root)
    confusions = np.zeros((len(THRESHOLDS), 2, 2), dtype=np.int64)
    abs_error, pixels = 0.0, 0
    for index, image_id in enumerate(voc.ids):
        image = voc.load_image(index)
        mask = voc.load_mask(index, image.shape[:2])
        saliency = load_saliency(folder, image_id, image.shape[:2])
        confusions += foreground_confusions(saliency, mask)
        valid = mask != IGNORE_INDEX
        abs_error += float(np.abs(saliency[valid] - (mask[valid] > 0)).sum())
        pixels += int(valid.sum())
    ious = [iou_per_class(c) for c in confusions]  # (background, objects) per threshold
    mious = [float(np.nanmean(pair)) for pair in ious]
    best = int(np.nanargmax(mious))
    name = ctx.output_name(split, root)
    result = {"split": split, "best_threshold": THRESHOLDS[best], "miou": round(100 * mious[best], 2),
              "object_iou": round(100 * ious[best][1], 2), "mae": round(abs_error / max(pixels, 1), 4),
              "sweep": [{"threshold": t, "background_iou": round(100 * b, 2), "object_iou": round(100 * o, 2)}
                        for t, (b, o) in zip(THRESHOLDS, ious)]}
    save_json(ctx.layout.eval_file(EVAL_KIND, name), result)
    ctx.update_summary(f"{EVAL_KIND}/{name}", {"miou": result["miou"], "object_iou": result["object_iou"],
                                             "threshold": result["best_threshold"], "mae": result["mae"]})
    log.info("saliency %s: objects vs background mIoU %.2f (object IoU %.2f) at threshold %.2f, MAE %.4f",
             name, result["miou"], result["object_iou"], result["best_threshold"], result["mae"])
    return result


def best_saliency_threshold(ctx: RunContext) -> float:
    """s*, as ``saliency.threshold`` says: a number; mask-free from the train split's maps (auto =
    otsu, or cams: :func:`estimate_saliency_threshold`); or, with the named opt-in ``masks``, the
    threshold at which the train split's maps scored best against its masks (make-saliency's score).

    Otsu is the default: a saliency model trained with a per-pixel cross-entropy gives maps with an
    object mode and a background mode (unlike CAMs), and on msrc its s* scored 1.9 below the
    masks' best where the agreement with the CAMs' foreground, which is wider than the objects,
    scored 4.4 below (BENCHMARKS.md)."""
    source = ctx.config.saliency.threshold
    if isinstance(source, float):
        return source
    if source != "masks":
        return mask_free_saliency_threshold(ctx, "otsu" if source == "auto" else source)
    path = ctx.layout.eval_file(EVAL_KIND, ctx.config.data.train_split)
    if not path.exists():
        raise WsssError(f"{path}: not found; saliency.threshold: masks needs `wsss make-saliency` on the train split "
                        "with masks first (or set saliency.threshold: auto)")
    return float(read_json(path)["best_threshold"])


def agreement_threshold(saliency_and_cam_foreground, thresholds=THRESHOLDS) -> tuple[float, list[float]]:
    """The saliency threshold whose foreground S >= s agrees best with the CAMs' foreground.

    Args:
        saliency_and_cam_foreground: iterable of ((H, W) S in [0, 1], (H, W) bool max CAM > t*),
            one pair per tagged image.
    Returns:
        (s*, the pooled IoU of the two foregrounds at each of ``thresholds``). The CAMs say
        where the tagged objects are but blur their borders; saliency has sharp borders but does
        not know the tags: s* is where the two notions of "object" overlap most.
    """
    intersections = np.zeros(len(thresholds))
    unions = np.zeros(len(thresholds))
    for saliency, cam_foreground in saliency_and_cam_foreground:
        for k, t in enumerate(thresholds):
            salient = saliency >= t
            intersections[k] += np.count_nonzero(salient & cam_foreground)
            unions[k] += np.count_nonzero(salient | cam_foreground)
    ious = intersections / np.maximum(unions, 1)
    return float(thresholds[int(np.argmax(ious))]), [round(float(v), 4) for v in ious]


def estimate_saliency_threshold(method: str, voc, maps: Path, cams: Optional[Path] = None,
                                cam_threshold: Optional[float] = None) -> tuple[float, dict]:
    """s* of ``method`` from the saliency maps in ``maps`` of split ``voc``, no mask read:
    ``otsu``, Otsu's threshold of the pooled saliency values (every image), or ``cams``, the
    agreement with the CAMs' foreground at t* (tagged images; CAMs in ``cams``). Returns (s*,
    what was measured)."""
    from .cam import load_cam
    from .cam_threshold import otsu_threshold

    if method == "cams":
        tagged = [i for i in range(len(voc)) if voc.labels[i].any()]
        if not tagged:
            raise WsssError(f"{maps}: no image of split {voc.split!r} has a tag; saliency.threshold: cams needs CAMs")

        def pairs():
            for index in tagged:
                cam, _ = load_cam(cams / f"{voc.ids[index]}.npz")  # (C, H, W) at the image's size
                yield load_saliency(maps, voc.ids[index], cam.shape[1:]), cam.max(axis=0) > cam_threshold

        threshold, ious = agreement_threshold(pairs())
        return threshold, {"images": len(tagged), "cam_threshold": cam_threshold,
                           "foreground_iou": dict(zip((f"{t:.2f}" for t in THRESHOLDS), ious))}
    if method == "otsu":
        pooled = [load_saliency_map(maps / f"{image_id}.png", missing="run `wsss make-saliency` for this split first",
                                    damaged="delete it and re-run `wsss make-saliency`")[::2, ::2].ravel()
                  for image_id in voc.ids]
        return otsu_threshold(np.concatenate(pooled)), {"images": len(voc)}
    raise WsssError(f"saliency.threshold: unknown method {method!r}; use auto, {', '.join(MASK_FREE_METHODS)}, "
                    "masks or a number")


MASK_FREE_METHODS = ("otsu", "cams")


def mask_free_saliency_threshold(ctx: RunContext, method: str) -> float:
    """s* of ``method`` for the run's train saliency maps, cached in
    ``eval/saliency_threshold_<split>.json`` with what it was made from (new maps or CAMs:
    estimated again)."""
    from .cam import cam_dir, cam_settings

    split = ctx.config.data.train_split
    maps = _existing_maps(ctx, split, None)
    made_from = {"maps": maps}
    cam_threshold = None
    if method == "cams":
        cam_threshold = cam_background_threshold(ctx, "saliency.threshold")
        made_from.update(cams=cam_settings(ctx, split), cam_threshold=cam_threshold)
    path = ctx.layout.eval_file("saliency_threshold", split)
    cached = read_json(path, {})
    if isinstance(cached, dict) and cached.get("method") == method and cached.get("made_from") == made_from:
        return float(cached["threshold"])
    if is_planning():
        raise WouldRun(f"s* is found anew from the {split} saliency maps ({method})")
    threshold, measured = estimate_saliency_threshold(method, ctx.dataset(split), saliency_dir(ctx, split),
                                                      cam_dir(ctx, split), cam_threshold)
    save_json(path, {"method": method, "threshold": threshold, "masks": "none read", "made_from": made_from,
                     **measured})
    log.info("saliency threshold s* = %.2f from the %s maps alone (%s; no mask read)", threshold, split, method)
    ctx.update_summary(f"saliency_threshold/{split}", {"threshold": threshold, "method": method})
    return threshold


@dataclass(frozen=True)
class SaliencyCue:
    """How the seeds and the walk use a split's saliency maps (``wsss.config.SaliencyCueConfig``).

    ``fg_min`` / ``bg_max``: a foreground seed needs S >= fg_min, S <= bg_max makes background
    (``wsss.walk.seeds.saliency_guided_seeds``); ``weight`` / ``power``: the walk's background
    (1 - w) b_cam + w (1 - S)^power (``wsss.walk.seeds.mixed_background``)."""

    seeds: bool
    fg_min: float
    bg_max: float
    weight: float
    power: float

    def walk_mix(self, folder: Path, image_id: str, size: tuple[int, int]) -> dict:
        """The saliency arguments of the walk's background for one image of ``folder``:
        ``saliency`` (H, W), ``weight``, ``power`` (as ``wsss.walk.seeds.scores_with_background`` and
        ``irn.make_pseudo.walked_scores`` take them)."""
        return {"saliency": load_saliency(folder, image_id, size), "weight": self.weight, "power": self.power}

    def seed_settings(self, ctx: RunContext, split: str) -> dict:
        """What the seeds of ``split`` depend on: the thresholds and the maps (checked to exist, so
        that missing maps fail before any worker starts). The walk's weight is not among them: a
        new weight re-walks, it does not remake the seeds and retrain the network."""
        return {"fg_min": self.fg_min, "bg_max": self.bg_max, "maps": _existing_maps(ctx, split, None)}

    def walk_settings(self, ctx: RunContext, split: str, root: Optional[Path] = None) -> dict:
        """What the walk's labels of ``split`` depend on: the weight, the power and the maps."""
        return {"weight": self.weight, "power": self.power, "maps": _existing_maps(ctx, split, root)}


def _existing_maps(ctx: RunContext, split: str, root: Optional[Path]) -> dict:
    """The settings of ``split``'s saliency maps; no maps is a one-line error naming the fix."""
    settings = saliency_settings(ctx, split, root)
    if settings is None:
        raise WsssError(f"{saliency_dir(ctx, split, root)}: no saliency maps; run `wsss make-saliency --split {split}` first")
    return settings


def seed_cue(ctx: RunContext) -> Optional[SaliencyCue]:
    """The saliency cue when the seeds use it (``saliency.seeds``), else None."""
    cue = saliency_cue(ctx)
    return cue if cue is not None and cue.seeds else None


def walk_cue(ctx: RunContext) -> Optional[SaliencyCue]:
    """The saliency cue when the walk's background uses it (``saliency.walk_weight`` > 0), else None."""
    cue = saliency_cue(ctx)
    return cue if cue is not None and cue.weight > 0 else None


def saliency_power(saliency_threshold: float, cam_threshold: float) -> float:
    """gamma with (1 - s*)^gamma = t*: at the saliency threshold s* the background score
    (1 - S)^gamma equals the CAMs' best threshold t*, the value a CAM must beat to be object."""
    return math.log(cam_threshold) / math.log(1 - saliency_threshold)


def saliency_cue(ctx: RunContext) -> Optional[SaliencyCue]:
    """The run's saliency cue, or None when neither the seeds nor the walk use saliency."""
    cfg = ctx.config.saliency
    if not cfg.used:
        return None
    threshold = best_saliency_threshold(ctx)
    fg_min, bg_max = auto_seed_thresholds(threshold, cfg.fg_margin, cfg.bg_factor)
    power = cfg.walk_power
    if power is None and cfg.walk_weight > 0:
        power = saliency_power(threshold, cam_background_threshold(ctx, "saliency.walk_power"))
    return SaliencyCue(cfg.seeds, fg_min, bg_max, cfg.walk_weight, power or 1.0)
