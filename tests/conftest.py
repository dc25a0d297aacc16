import shutil

import pytest
import torch
import yaml
from tiny_run import write_config

from wsss.cli import main
from wsss.data.demo import generate_demo_dataset, generate_demo_saliency

# One torch thread. With two, every parallel region of an op waits for both threads, and when
# other work holds a core that wait is a scheduler time slice: on a busy 2-core machine a tiny
# network's forward pass took 2.5 s instead of 0.03 s and the fixtures' training ran 5-20x
# slower than with one thread (docs/notes/benchmarks-history.md). Multi-process tests pin threads themselves.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A generated VOC-layout dataset: 32 train + 8 val images of 80x80 pixels."""
    root = tmp_path_factory.mktemp("tiny") / "data"
    return generate_demo_dataset(root, num_train=32, num_val=8, image_size=80, seed=1)


@pytest.fixture(scope="session")
def cam_run(tmp_path_factory, tiny_dataset):
    """train-cam -> make-cam -> eval-cam through the CLI; later tests copy the run and go on."""
    tmp_path = tmp_path_factory.mktemp("cam_run")
    config = write_config(tmp_path, tiny_dataset)
    run_dir = tmp_path / "run"
    common = ["--config", str(config), "--run-dir", str(run_dir), "--no-progress"]
    assert main(["train-cam", *common]) == 0
    assert main(["make-cam", *common, "--split", "train"]) == 0
    assert main(["eval-cam", *common, "--split", "train"]) == 0
    return tmp_path, config, run_dir


@pytest.fixture(scope="session")
def pseudo_run(cam_run, tmp_path_factory):
    """A copy of ``cam_run`` gone on through make-psa-labels -> train-psa -> make-psa-pseudo -> eval-pseudo."""
    _, config, cam_run_dir = cam_run
    run_dir = tmp_path_factory.mktemp("pseudo_run") / "run"
    shutil.copytree(cam_run_dir, run_dir)
    common = ["--config", str(config), "--run-dir", str(run_dir), "--no-progress"]
    assert main(["make-psa-labels", *common]) == 0
    assert main(["train-psa", *common]) == 0
    assert main(["make-psa-pseudo", *common, "--split", "train"]) == 0
    assert main(["eval-pseudo", *common, "--split", "train"]) == 0
    return config, run_dir


@pytest.fixture(scope="session")
def ssnet_run(tmp_path_factory, tiny_dataset):
    """SSNet stage 1 -> mining -> stage 2 -> evaluation through the CLI on generated data (its
    models also serve as the saliency source of the saliency-cue tests)."""
    tmp = tmp_path_factory.mktemp("ssnet")
    stage = {"output_stride": 16, "epochs": 2, "batch_size": 8, "optimizer": "adam", "lr": 2e-4, "head_lr_mult": 10,
             "resize_long": [72, 96], "crop_size": 80}
    config = {
        "name": "tiny-ssnet", "seed": 0, "device": "cpu", "pipeline": "ssnet",
        "data": {"root": str(tiny_dataset)},
        "backbone": {"name": "efficientnet_lite0", "pretrained": True},
        "ssnet": {"saliency": {"root": str(tmp / "saliency"), "holdout_every": 5,
                               "demo": {"num_images": 15, "image_size": 80, "seed": 3},
                               "eval_roots": [str(generate_demo_saliency(tmp / "bench", 4, 80, seed=4))]},
                  "stage1": stage, "stage2": {**stage, "epochs": 1, "init_from_stage1": True},
                  "eval_scales": [1.0], "eval_crf": False, "compare_stages": False},
    }
    path = tmp / "ssnet.yaml"
    path.write_text(yaml.safe_dump(config))
    run_dir = tmp / "run"
    common = ["--config", str(path), "--run-dir", str(run_dir), "--no-progress"]
    assert main(["run", *common]) == 0
    return run_dir, common
