"""How long a run will take: the whole run's estimate, told at the start of every stage.

``wsss run`` plans its stages first (:mod:`wsss.run.plan`) and gives each stage that will run a
predicted duration: its work (training steps x batch x crop area, or images x network passes) at
the speed this machine kind had on msrc (:data:`REFERENCE`, seconds per unit on the 2-core CPU
machine of BENCHMARKS.md). As stages finish, the ratio of their real to their predicted time
corrects the rest: on a faster machine, or a GPU, the estimate follows within a stage or two.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

log = logging.getLogger("wsss")

REFERENCE = {
    # seconds per training sample-pixel (steps x batch x crop^2), msrc, 2 cores (AMD EPYC),
    # EfficientNet-Lite0, NCHW: configs/msrc.yaml's run from nothing (BENCHMARKS.md)
    "train-cam": 2.17e-6, "train-psa": 2.98e-6, "train-irn": 3.55e-6, "train-seg": 2.31e-6,
    "train-saliency": 3.27e-6,  # SSNet stage 1: a batch holds batch x (1 + saliency_per_sample) crops
    # seconds per image and network pass (scales x flips) at msrc's ~320 x 213 px
    "make-cam": 0.030, "make-saliency": 0.037,
    # seconds per image: seeds (a dense CRF each), the walk (+ CRF), scoring
    "seeds": 0.24, "walk": 0.15, "eval-seg": 0.67, "eval": 0.05,
}
CHANNELS_LAST = 0.69
"""Training time in channels-last memory over NCHW (the same run: CAM 0.71, IRN 0.74, segmentation 0.63)."""
BACKBONE_COST = {"efficientnet_lite2": 1.57}
"""Training time on a backbone over EfficientNet-Lite0's (msrc's train-seg on the same labels:
367 s against 234 s); a backbone not named here counts as Lite0."""


def training_seconds(kind: str, images: int, section, channels_last: bool = False,
                     backbone: str = "efficientnet_lite0") -> float:
    """Predicted seconds of a training stage of ``section`` (epochs, batch_size, crop_size) on
    ``images`` training images and ``backbone``; ``kind`` a key of :data:`REFERENCE`."""
    batch = min(section.batch_size, max(images, 1))
    steps = (images // batch) * section.epochs
    return (steps * batch * section.crop_size ** 2 * REFERENCE[kind] * (CHANNELS_LAST if channels_last else 1.0)
            * BACKBONE_COST.get(backbone, 1.0))


def passes(scales, flip: bool) -> float:
    """Network passes per image, in units of one pass at scale 1 (cost grows with the area)."""
    return sum(s * s for s in scales) * (2 if flip else 1)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


@dataclass
class RunClock:
    """The run's stages with their predicted seconds (0 for a complete one); logs where the run
    stands at the start of each stage."""

    predicted: dict[str, float]
    started: float = field(default_factory=time.perf_counter)
    done: list[tuple[float, float]] = field(default_factory=list)  # (predicted, real) of stages that ran
    finished: set[str] = field(default_factory=set)

    def factor(self) -> float:
        """Real over predicted time of the stages that did work so far (1 before any)."""
        worked = [(p, r) for p, r in self.done if p > 0 and r > 1.0]
        return sum(r for _, r in worked) / sum(p for p, _ in worked) if worked else 1.0

    def left(self) -> float:
        return self.factor() * sum(s for name, s in self.predicted.items() if name not in self.finished)

    def opening(self) -> str:
        to_run = sum(1 for s in self.predicted.values() if s > 0)
        return (f"{len(self.predicted)} stages, {to_run} to run, about {_minutes(self.left())} (estimated from "
                "reference speeds of a 2-core CPU, corrected as stages finish)")

    def stage_started(self, name: str) -> None:
        names = list(self.predicted)
        position = names.index(name) + 1 if name in self.predicted else len(self.finished) + 1
        elapsed = time.perf_counter() - self.started
        log.info("stage %d/%d: %s (%s so far; about %s left)", position, len(names), name, _minutes(elapsed),
                 _minutes(self.left()))

    def stage_finished(self, name: str, seconds: float) -> None:
        self.done.append((self.predicted.get(name, 0.0), seconds))
        self.finished.add(name)
