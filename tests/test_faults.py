"""Killed with SIGKILL mid-run and re-run with the same command, a stage ends with the files of an
uninterrupted run; checkpoints from other settings or models are clear errors; seeds reproduce."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml
from tiny_run import torch_threads

from wsss.cli import main
from wsss.config import OptimConfig, load_config
from wsss.data.voc import VocDataset
from wsss.engine import TrainJob, train
from wsss.errors import WsssError
from wsss.io import save_npz
from wsss.models import build_model
from wsss.run.context import RunContext

REPO = Path(__file__).resolve().parents[1]


def write_config(tmp_path, root, name="faults.yaml", **top):
    config = {
        "name": "faults", "seed": 0, "device": "cpu",
        "data": {"root": str(root)},
        "backbone": {"name": "efficientnet_lite0", "pretrained": True},
        "cam": {"output_stride": 16, "epochs": 3, "batch_size": 8, "lr": 0.01, "resize_long": [56, 72],
                "crop_size": 56},
        "psa": {"output_stride": 16, "radius": 4, "beta": 8, "steps": 32, "walk_alpha": 4.0, "crf": True, "crf_power": 2},
        **top,
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def start_wsss(args):
    """`wsss ARGS` in its own process group (so a kill reaches its worker processes too)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        env.pop(key, None)
    return subprocess.Popen([sys.executable, "-m", "wsss", *args], cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_when(process, ready, timeout=180.0):
    """SIGKILL ``process`` (and its group) as soon as ``ready()`` holds; fails if it ended first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            pytest.fail(f"the run ended (rc {process.returncode}) before it could be killed: "
                        f"{process.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail("the run did not reach the kill point in time")
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL


def folder_bytes(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftover_temps(folder):
    return sorted(str(p) for p in Path(folder).rglob(".*.tmp"))


# ----------------------------------------------------------------------- make-psa-pseudo


def prepare_pseudo_run(run_dir, config_path):
    """A run directory with what make-psa-pseudo reads: an AffinityNet (ImageNet backbone, untrained
    head: any weights make the same files twice) and CAMs made from the masks."""
    config = load_config(config_path)
    ctx = RunContext(run_dir, config, progress=False)
    torch.manual_seed(0)
    model = build_model("affinity", config.backbone.name, config.psa.output_stride, 0, **ctx.backbone_weights())
    (run_dir / "psa").mkdir(parents=True)
    torch.save({"kind": "affinity", "fingerprint": "test", "model": model.state_dict(), "meta": {}},
               run_dir / "psa" / "model.pt")
    voc = VocDataset(config.data.root, "train")
    rng = np.random.default_rng(0)
    for index, image_id in enumerate(voc.ids):
        mask = voc.load_mask(index)
        keys = np.flatnonzero(voc.labels[index] > 0.5)
        cams = np.zeros((len(keys), *mask.shape), dtype=np.float32)
        for row, key in enumerate(keys):
            cams[row] = (mask == key + 1) * 0.8 + rng.uniform(0, 0.2, mask.shape)
        save_npz(run_dir / "cams" / "train" / f"{image_id}.npz", cams=cams.astype(np.float16), keys=keys)
    return len(voc)


def test_make_pseudo_killed_mid_run_then_rerun_equals_an_uninterrupted_run(tmp_path, tiny_dataset, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # worker processes compute with 1 thread, as this one
    config = write_config(tmp_path, tiny_dataset)
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    total = prepare_pseudo_run(reference, config)
    prepare_pseudo_run(killed, config)
    command = ["make-psa-pseudo", "--config", str(config), "--split", "train", "--no-progress"]

    with torch_threads(1):
        assert main([*command, "--run-dir", str(reference)]) == 0
    expected = folder_bytes(reference / "psa_pseudo" / "train")
    assert sum(name.startswith("rw/") for name in expected) == total

    # two worker processes, killed (with them) once a few images are finished
    rw = killed / "psa_pseudo" / "train" / "rw"
    process = start_wsss([*command, "--run-dir", str(killed), "--workers", "2"])
    kill_when(process, lambda: rw.is_dir() and len(list(rw.glob("*.png"))) >= 3)
    done = len(list(rw.glob("*.png")))
    assert 3 <= done < total, done

    # the same command again: finished images are kept, the rest made, the files are the reference's
    stamps = {p: p.stat().st_mtime_ns for p in rw.glob("*.png")}
    with torch_threads(1):
        assert main([*command, "--run-dir", str(killed), "--workers", "2"]) == 0
    assert folder_bytes(killed / "psa_pseudo" / "train") == expected
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    assert leftover_temps(killed) == []


# --------------------------------------------------------------------------- training


def test_train_cam_killed_after_a_checkpoint_then_rerun_equals_an_uninterrupted_run(tmp_path, tiny_dataset):
    config = write_config(tmp_path, tiny_dataset, checkpoint_every=2)
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    command = ["train-cam", "--config", str(config), "--no-progress"]
    with torch_threads(1):
        assert main([*command, "--run-dir", str(reference)]) == 0

    checkpoint = killed / "cam" / "checkpoint.pt"
    process = start_wsss([*command, "--run-dir", str(killed)])
    kill_when(process, checkpoint.exists)
    assert not (killed / "cam" / "model.pt").exists()
    step = torch.load(checkpoint, weights_only=True)["step"]
    assert 2 <= step < 12, step

    with torch_threads(1):
        assert main([*command, "--run-dir", str(killed)]) == 0
    expected = torch.load(reference / "cam" / "model.pt", weights_only=True)
    resumed = torch.load(killed / "cam" / "model.pt", weights_only=True)
    assert expected["model"].keys() == resumed["model"].keys()
    assert all(torch.equal(resumed["model"][k], v) for k, v in expected["model"].items())
    assert resumed["meta"] == expected["meta"]

    def curve(run_dir):  # everything but the timing
        lines = (run_dir / "cam" / "train_log.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "images_per_s"} for line in lines]

    assert curve(killed) == curve(reference) and len(curve(reference)) == 12
    assert leftover_temps(killed) == []


class TinyCrops(torch.utils.data.Dataset):
    """Random images whose values depend on (seed, epoch, index), like AugmentedCrops."""

    def __init__(self, count=12):
        self.count, self.epoch = count, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        rng = np.random.default_rng([5, self.epoch, index])
        return {"image": torch.from_numpy(rng.normal(size=(3, 8, 8)).astype(np.float32)),
                "target": torch.tensor(float(index % 2))}


class DropoutNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.5))
        self.head = nn.Linear(8, 1)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))[:, 0]


def tiny_job(out_dir, kind="tiny", fingerprint="a", fail_at=None):
    torch.manual_seed(0)
    model = DropoutNet()
    calls = {"n": 0}

    def loss_fn(net, batch):
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise KeyboardInterrupt  # stands in for a kill: after step fail_at - 1 was logged
        return nn.functional.binary_cross_entropy_with_logits(net(batch["image"]), batch["target"]), {"n": 1.0}

    return TrainJob(kind=kind, model=model, param_groups={"pretrained": list(model.features.parameters()),
                                                          "new": list(model.head.parameters())},
                    dataset=TinyCrops(), loss_fn=loss_fn, optim=OptimConfig(epochs=3, batch_size=4, lr=0.1),
                    out_dir=out_dir, device=torch.device("cpu"), seed=1, fingerprint=fingerprint,
                    checkpoint_every=2, progress=False)


def test_engine_resume_restores_dropout_rng_and_trims_the_log(tmp_path):
    """Interrupted after step 4 (checkpointed) with step 5 logged: the resumed run drops the
    stray log line, draws the same dropout masks, and ends with the uninterrupted weights."""
    train(tiny_job(tmp_path / "reference"))
    with pytest.raises(KeyboardInterrupt):
        train(tiny_job(tmp_path / "killed", fail_at=6))
    log = (tmp_path / "killed" / "train_log.jsonl").read_text().splitlines()
    assert len(log) == 5 and torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)["step"] == 4
    train(tiny_job(tmp_path / "killed"))
    expected = torch.load(tmp_path / "reference" / "model.pt", weights_only=True)["model"]
    resumed = torch.load(tmp_path / "killed" / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(resumed[k], v) for k, v in expected.items())
    steps = [json.loads(line)["step"] for line in (tmp_path / "killed" / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 10))


def test_checkpoint_of_other_settings_or_model_is_a_clear_error(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train(tiny_job(tmp_path / "run", fail_at=4))
    with pytest.raises(WsssError, match="other settings or another model"):
        train(tiny_job(tmp_path / "run", fingerprint="b"))
    with pytest.raises(WsssError, match="other settings or another model"):
        train(tiny_job(tmp_path / "run", kind="other"))
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    state["model"] = {"head.weight": torch.zeros(3, 3)}
    torch.save(state, tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(WsssError, match="does not fit this model"):
        train(tiny_job(tmp_path / "run"))


# --------------------------------------------------------------------------- reproducibility


def test_same_seed_same_run_other_seed_other_run(tmp_path, tiny_dataset):
    config = write_config(tmp_path, tiny_dataset)
    common = ["--config", str(config), "--no-progress", "--set", "cam.epochs=1", "--set", "cam.crop_size=40",
              "--set", "cam.resize_long=[40,48]"]
    with torch_threads(1):
        for name, seed in [("a", 3), ("b", 3), ("c", 4)]:
            assert main(["train-cam", *common, "--run-dir", str(tmp_path / name), "--seed", str(seed)]) == 0

    def weights(name):
        return torch.load(tmp_path / name / "cam" / "model.pt", weights_only=True)["model"]

    def losses(name):
        return [json.loads(line)["loss"] for line in (tmp_path / name / "cam" / "train_log.jsonl").read_text().splitlines()]

    assert losses("a") == losses("b") and all(torch.equal(weights("b")[k], v) for k, v in weights("a").items())
    assert losses("a") != losses("c")
    assert not torch.equal(weights("a")["classifier.weight"], weights("c")["classifier.weight"])

    info = json.loads((tmp_path / "a" / "run_info.json").read_text())
    assert info["seed"] == 3
    assert info["versions"]["torch"] == torch.__version__ and info["versions"]["wsss"]
    assert info["hardware"]["cpu_count"] == os.cpu_count() and info["hardware"]["world_size"] == 1
    assert "git_commit" in info  # None outside a git checkout
    assert yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())["seed"] == 3


def test_channels_last_training_is_deterministic_and_trains_the_same_network(tmp_path, tiny_dataset):
    """channels_last changes float rounding, not the model: twice the same bytes, and the losses
    and weights of NCHW training up to the rounding's drift."""
    config = write_config(tmp_path, tiny_dataset)
    common = ["--config", str(config), "--no-progress", "--set", "cam.epochs=1", "--set", "cam.crop_size=40",
              "--set", "cam.resize_long=[40,48]"]
    with torch_threads(1):
        for name, channels_last in [("nchw", "false"), ("a", "true"), ("b", "true")]:
            assert main(["train-cam", *common, "--run-dir", str(tmp_path / name),
                         "--set", f"channels_last={channels_last}"]) == 0

    def weights(name):
        return torch.load(tmp_path / name / "cam" / "model.pt", weights_only=True)["model"]

    def losses(name):
        return [json.loads(line)["loss"] for line in (tmp_path / name / "cam" / "train_log.jsonl").read_text().splitlines()]

    assert losses("a") == losses("b") and all(torch.equal(weights("b")[k], v) for k, v in weights("a").items())
    # the first step's loss (before any update) to float noise; the rounding then grows step by step
    assert losses("a")[0] == pytest.approx(losses("nchw")[0], rel=1e-5)
    assert losses("a") == pytest.approx(losses("nchw"), rel=0.03)
    moved = weights("a")["classifier.weight"] - weights("nchw")["classifier.weight"]
    assert moved.abs().max() < 0.02 * weights("nchw")["classifier.weight"].abs().max()
