"""IRN (Ahn, Cho & Kwak, "Weakly Supervised Learning of Instance Segmentation with Inter-pixel
Relations", CVPR 2019), its semantic-segmentation part: relation labels from CAM seeds,
class-boundary affinities (path maximum) and their loss.
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

__all__ = [
    "IRN_LABEL_RADIUS",
    "IRN_SEED_BG_THRESHOLD",
    "IRN_SEED_FG_THRESHOLD",
    "boundary_loss",
    "confident_seeds",
    "path_max_affinity",
    "path_pixels",
    "relation_labels",
    "relation_offsets",
]
