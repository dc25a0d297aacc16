"""Hostile input and everyday failure: each ends in one line that names the file or setting at
fault and what to do, and leaves the run's files as they were."""

import pytest
import yaml

from wsss.cli import main
from wsss.config import config_to_yaml, load_config
from wsss.steps.common import RunContext


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("wsss: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def small_config(tmp_path, root, **top):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"name": "h", "device": "cpu", "data": {"root": str(root)},
                                    "backbone": {"pretrained": False}, **top}))
    return path


@pytest.mark.parametrize("command", ["eval-cam", "train-cam", "make-cam"])
def test_failing_command_leaves_the_runs_config_alone(tmp_path, tiny_dataset, capsys, command):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    before = config_to_yaml(load_config(small_config(tmp_path, tiny_dataset))).encode()
    (run_dir / "config.yaml").write_bytes(before)
    assert main([command, "--run-dir", str(run_dir), "--set", "data.root=/typo", "--no-progress"]) == 2
    assert "/typo: dataset root not found" in one_line_error(capsys)
    assert (run_dir / "config.yaml").read_bytes() == before
    assert not (run_dir / "run_info.json").exists()


def test_config_is_recorded_once_the_dataset_is_found(tmp_path, tiny_dataset):
    config = load_config(small_config(tmp_path, tiny_dataset), ["seed=5"])
    ctx = RunContext(tmp_path / "run", config, progress=False)
    ctx.prepare()
    assert not (ctx.run_dir / "config.yaml").exists()
    ctx.dataset("train")
    assert yaml.safe_load((ctx.run_dir / "config.yaml").read_text())["seed"] == 5
    assert (ctx.run_dir / "run_info.json").exists()
