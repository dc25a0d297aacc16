"""`wsss run` with ``pipeline: irn``: every stage of IRN's semantic pipeline in order, over one
run directory: CAMs -> seeds -> class-boundary network -> boundary-aware random walk (+ CRF) ->
segmentation network. The shape is PSA's (:func:`wsss.psa.pipeline.run_walk_pipeline`, the same
CAM stages) with IRN's seeds, network and walk.
"""

from __future__ import annotations

from ..psa.pipeline import run_walk_pipeline
from ..run.context import RunContext
from . import make_labels, make_pseudo, train


def run(ctx: RunContext) -> dict:
    return run_walk_pipeline(ctx, ("make-irn-labels", make_labels.run), ("train-irn", train.run),
                             ("make-irn-pseudo", make_pseudo.run), ctx.config.irn.eval_splits)
