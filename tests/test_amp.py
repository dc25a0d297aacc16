"""Mixed precision: off on CPU unless asked, bf16 autocast when asked, fp16 + GradScaler on CUDA."""

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml

from wsss.amp import autocast, autocast_dtype, needs_grad_scaler
from wsss.cli import main
from wsss.config import OptimConfig, load_config
from wsss.data.voc import VocDataset
from wsss.engine import TrainJob, train
from wsss.models import build_model
from wsss.run.context import RunContext

CPU = torch.device("cpu")


def test_amp_modes_resolve_per_device():
    assert autocast_dtype("auto", CPU) is None and autocast_dtype("off", CPU) is None
    assert autocast_dtype("on", CPU) == torch.bfloat16
    assert autocast_dtype("bf16", CPU) == torch.bfloat16 and autocast_dtype("fp16", CPU) == torch.float16
    cuda = torch.device("cuda", 0)
    assert autocast_dtype("off", cuda) is None and autocast_dtype("fp16", cuda) == torch.float16
    assert needs_grad_scaler(cuda, torch.float16) and not needs_grad_scaler(cuda, torch.bfloat16)
    assert not needs_grad_scaler(CPU, torch.float16)
    with pytest.raises(ValueError, match="amp must be one of"):
        autocast_dtype("half", CPU)
    with autocast(CPU, torch.bfloat16):
        assert nn.functional.linear(torch.ones(2, 3), torch.ones(4, 3)).dtype == torch.bfloat16
    with autocast(CPU, None):
        assert nn.functional.linear(torch.ones(2, 3), torch.ones(4, 3)).dtype == torch.float32


class Crops(torch.utils.data.Dataset):
    def __init__(self):
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return 8

    def __getitem__(self, index):
        rng = np.random.default_rng([2, self.epoch, index])
        return {"image": torch.from_numpy(rng.normal(size=(3, 12, 12)).astype(np.float32)),
                "target": torch.tensor(float(index % 2))}


def conv_job(out_dir, amp, device=CPU):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 1, 3))

    def loss_fn(net, batch):
        logits = net(batch["image"]).mean(dim=(1, 2, 3))
        return nn.functional.binary_cross_entropy_with_logits(logits, batch["target"]), {}

    return TrainJob(kind="conv", model=model, param_groups={"pretrained": list(model[0].parameters()),
                                                            "new": list(model[2].parameters())},
                    dataset=Crops(), loss_fn=loss_fn, optim=OptimConfig(epochs=2, batch_size=4, lr=0.05),
                    out_dir=out_dir, device=device, seed=0, progress=False, amp=amp)


def losses(out_dir):
    return [json.loads(line)["loss"] for line in (out_dir / "train_log.jsonl").read_text().splitlines()]


def test_training_autocasts_to_bf16_on_cpu_only_when_asked(tmp_path):
    train(conv_job(tmp_path / "auto", "auto"))
    train(conv_job(tmp_path / "off", "off"))
    train(conv_job(tmp_path / "on", "on"))
    assert losses(tmp_path / "auto") == losses(tmp_path / "off")  # auto = float32 on CPU
    fp32, bf16 = losses(tmp_path / "off"), losses(tmp_path / "on")
    assert fp32 != bf16  # the convolutions did run in bf16 ...
    np.testing.assert_allclose(bf16, fp32, rtol=0.05)  # ... and the loss curve is the same one
    weights = torch.load(tmp_path / "on" / "model.pt", weights_only=True)["model"]
    assert all(w.dtype == torch.float32 for w in weights.values())  # the optimiser keeps float32 weights


def test_make_cam_with_amp_records_precision_and_stays_close(tmp_path, tiny_dataset):
    config = {"name": "amp", "device": "cpu", "data": {"root": str(tiny_dataset)},
              "cam": {"output_stride": 16, "scales": [1.0], "flip": False}}
    path = tmp_path / "amp.yaml"
    path.write_text(yaml.safe_dump(config))
    ctx = RunContext(tmp_path / "run", load_config(path), progress=False)
    voc = VocDataset(tiny_dataset, "val")
    torch.manual_seed(0)
    cfg = ctx.config
    model = build_model("cam", cfg.backbone.name, cfg.cam.output_stride, voc.num_classes, **ctx.backbone_weights())
    (tmp_path / "run" / "cam").mkdir(parents=True)
    torch.save({"kind": "cam", "fingerprint": "test", "model": model.state_dict(),
                "meta": {"class_names": voc.class_names}}, tmp_path / "run" / "cam" / "model.pt")
    common = ["make-cam", "--config", str(path), "--run-dir", str(tmp_path / "run"), "--split", "val", "--no-progress"]
    assert main([*common, "--out-dir", str(tmp_path / "fp32")]) == 0
    assert main([*common, "--out-dir", str(tmp_path / "bf16"), "--set", "amp=on"]) == 0
    assert "precision" not in json.loads((tmp_path / "fp32" / "settings.json").read_text())
    assert json.loads((tmp_path / "bf16" / "settings.json").read_text())["precision"] == "bfloat16"
    differences = []
    for fp32 in sorted((tmp_path / "fp32").glob("*.npz")):
        a, b = np.load(fp32)["cams"].astype(np.float32), np.load(tmp_path / "bf16" / fp32.name)["cams"].astype(np.float32)
        assert a.shape == b.shape
        if a.size:
            differences.append(np.abs(a - b).mean())
    assert 0 < max(differences) < 0.05  # bf16 arithmetic, the same maps (normalised to max 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_amp_auto_and_fp16_with_loss_scaling(tmp_path):
    cuda = torch.device("cuda", 0)
    assert autocast_dtype("auto", cuda) == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    train(conv_job(tmp_path / "fp16", "fp16", cuda))
    train(conv_job(tmp_path / "off", "off", cuda))
    assert "scaler" in torch.load(tmp_path / "fp16" / "checkpoint.pt", weights_only=True)
    np.testing.assert_allclose(losses(tmp_path / "fp16"), losses(tmp_path / "off"), rtol=0.05)
