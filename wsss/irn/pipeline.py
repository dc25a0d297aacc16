"""IRN's stages between the CAMs and the segmentation network: confident seeds -> class-boundary
network -> boundary-aware random walk (+ CRF). ``wsss.methods`` runs them after the CAM stages and
before train-seg, as it runs PSA's."""

from __future__ import annotations

from ..walk.pipeline import Stage, WalkStages
from . import make_labels, make_pseudo, train

STAGES = WalkStages(seeds=Stage("make-irn-labels", make_labels.run), network=Stage("train-irn", train.run),
                    walk=Stage("make-irn-pseudo", make_pseudo.run))
