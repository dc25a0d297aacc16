"""PSA's stages between the CAMs and the segmentation network: confident seeds -> AffinityNet ->
random walk (+ CRF). ``wsss.methods`` runs them after the CAM stages and before train-seg."""

from __future__ import annotations

from ..walk.pipeline import Stage, WalkStages
from . import make_labels, make_pseudo, train

STAGES = WalkStages(seeds=Stage("make-psa-labels", make_labels.run), network=Stage("train-psa", train.run),
                    walk=Stage("make-psa-pseudo", make_pseudo.run))
