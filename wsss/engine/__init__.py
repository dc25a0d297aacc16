"""The one training loop every stage uses, and the files of trained networks.

    train.py       TrainJob and train(): optimiser set-up, resume, step, checkpoint
    checkpoint.py  writing and reading model.pt / checkpoint.pt safely (weights_only)
    device.py      the device and the seeded generators
"""

from .checkpoint import (
                         config_fingerprint,
                         finished_model,
                         first_line,
                         load_checkpoint,
                         load_model_weights,
                         load_weights,
                         model_fingerprint,
                         read_wsss_file,
                         save_checkpoint,
                         skip_finished,
                         state_mismatch,
)
from .device import resolve_device, seed_everything
from .train import TrainJob, epoch_order, poly_lr, set_bn_frozen, train, unwrap

__all__ = [
    "TrainJob", "config_fingerprint", "epoch_order", "finished_model", "first_line", "load_checkpoint",
    "load_model_weights", "load_weights", "model_fingerprint", "poly_lr", "read_wsss_file", "resolve_device",
    "save_checkpoint", "seed_everything", "skip_finished", "set_bn_frozen", "state_mismatch", "train", "unwrap",
]
