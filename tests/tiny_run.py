"""The tiny config that the end-to-end tests (and the shared run fixtures in conftest.py) train
with, and the thread pinning the multi-process tests compare under."""

import contextlib

import torch
import yaml


@contextlib.contextmanager
def torch_threads(count):
    """This process computes as a subprocess with OMP_NUM_THREADS=count does (bit for bit)."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def write_config(tmp_path, root, **cam):
    """A tiny config: the whole pipeline runs in well under a minute per stage on 2 cores."""
    config = {
        "name": "tiny", "seed": 0, "device": "cpu",
        "data": {"root": str(root)},
        "backbone": {"name": "efficientnet_lite0", "pretrained": True},
        "cam": {"output_stride": 16, "epochs": 6, "batch_size": 8, "lr": 0.01, "resize_long": [72, 96],
                "crop_size": 80, "scales": [1.0, 1.5], "flip": True, "eval_splits": ["train"], **cam},
        "aff": {"output_stride": 16, "seeds": "auto", "epochs": 3, "batch_size": 8, "lr": 0.05,
                "resize_long": [72, 96], "crop_size": 80},
        "walk": {"beta": 8, "steps": 32, "alpha": None, "crf": True, "eval_splits": ["train"]},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
