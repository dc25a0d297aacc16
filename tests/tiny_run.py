"""The tiny config that the end-to-end tests (and the shared run fixtures in conftest.py) train
with, an untrained classifier for tests that need any, and the thread pinning the multi-process
tests compare under."""

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


def untrained_classifier(path, root):
    """A CAM classifier file (random weights, output stride 16) for the classes of dataset ``root``,
    for tests where any classifier will do; returns the network."""
    from wsss.models.backbone import build_backbone
    from wsss.models.classifier import CamNet

    names = (root / "class_names.txt").read_text().split()
    torch.manual_seed(0)
    net = CamNet(build_backbone("efficientnet_lite0", 16, pretrained=False), len(names) - 1).eval()
    torch.save({"kind": "cam", "fingerprint": "test", "model": net.state_dict(), "meta": {"class_names": names}}, path)
    return net


def write_config(tmp_path, root, **cam):
    """A tiny config: the whole pipeline runs in well under a minute per stage on 2 cores. Sized
    for time (64 px crops, 5 CAM epochs: 20 steps) with its quality checks kept: CAM mIoU 24.2
    against the test's 22.6, random walk 17.4 against 14.2 when this was set."""
    config = {
        "name": "tiny", "seed": 0, "device": "cpu",
        "data": {"root": str(root)},
        "backbone": {"name": "efficientnet_lite0", "pretrained": True},
        "cam": {"output_stride": 16, "epochs": 5, "batch_size": 8, "lr": 0.01, "resize_long": [56, 72],
                "crop_size": 64, "scales": [1.0, 1.5], "flip": True, "eval_splits": ["train"], **cam},
        "psa": {"output_stride": 16, "seeds": "auto", "epochs": 3, "batch_size": 8, "lr": 0.05,
                "resize_long": [56, 72], "crop_size": 64,
                "beta": 8, "steps": 32, "walk_alpha": None, "crf": True, "eval_splits": ["train"]},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


TINY_SEG = {"output_stride": 16, "epochs": 1, "batch_size": 8, "resize_long": [56, 72], "crop_size": 64,
            "eval_scales": [1.0], "eval_crf": False}
"""A segmentation section for tests that need a model, not a good one: one epoch, single-scale scoring."""


def untrained_twin(path, out):
    """The model file ``path`` with the network as it was before training: the pretrained backbone
    and freshly initialised new layers (seed 0), with the same kind, metadata and fingerprint, so
    a stage takes it in place of the trained one: the reference a trained-quality check must
    leave behind. Returns ``out``."""
    from wsss.models.build import DEFAULT_RATES, build_model

    payload = torch.load(path, map_location="cpu", weights_only=True)
    meta = payload["meta"]
    torch.manual_seed(0)
    net = build_model(payload["kind"], meta["backbone"], meta.get("output_stride") or 16, len(meta["class_names"]),
                      meta.get("head", "aspp"), meta.get("rates", DEFAULT_RATES), pretrained=True,
                      options=meta.get("options"))
    torch.save({**payload, "model": net.state_dict()}, out)
    return out
