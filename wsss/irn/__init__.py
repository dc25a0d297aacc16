"""IRN (Ahn, Cho & Kwak, "Weakly Supervised Learning of Instance Segmentation with Inter-pixel
Relations", CVPR 2019), its semantic-segmentation part: relation labels from CAM seeds,
class-boundary affinities (path maximum) and their loss, and the boundary-aware random walk.
The network is ``wsss.models.irn.IRNet``; its displacement-field branch (instances) is not built.
"""

from .boundary import boundary_loss, path_max_affinity, path_pixels
from .relations import (
    IRN_LABEL_RADIUS,
    IRN_SEED_BG_THRESHOLD,
    IRN_SEED_FG_THRESHOLD,
    confident_seeds,
    relation_labels,
    relation_offsets,
)
from .walk import IRN_BETA, IRN_SEM_BG_THRESHOLD, IRN_STEPS, IRN_WALK_RADIUS, boundary_walk, walk_scores

__all__ = [
    "IRN_BETA",
    "IRN_LABEL_RADIUS",
    "IRN_SEED_BG_THRESHOLD",
    "IRN_SEED_FG_THRESHOLD",
    "IRN_SEM_BG_THRESHOLD",
    "IRN_STEPS",
    "IRN_WALK_RADIUS",
    "boundary_loss",
    "boundary_walk",
    "confident_seeds",
    "path_max_affinity",
    "path_pixels",
    "relation_labels",
    "relation_offsets",
    "walk_scores",
]
