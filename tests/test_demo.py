"""`make demo` must end on a model that shows what the pipeline does (issue: the demo's final model
scored 22.7 mIoU against its own pseudo labels' 59.5), and on lines that tell a newcomer what next."""

import json
import shutil
from pathlib import Path

import yaml

from wsss.cli import main
from wsss.config import PSA_WALK_SETTINGS, load_config

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"


def demo_on_tiny_data(base_config: dict, tiny_train_images: int) -> dict:
    """configs/demo.yaml's walk and segmentation schedule on the tests' smaller copy of the demo data:
    crops scaled to its 80 px images, the same number of segmentation steps (the epochs scaled by
    the demo's train images / these), everything else as the demo has it."""
    demo = yaml.safe_load(DEMO_CONFIG.read_text())
    scale = 80 / demo["data"]["demo"]["image_size"]
    seg = dict(demo["seg"])
    seg["crop_size"] = 80
    seg["resize_long"] = [round(side * scale) for side in seg["resize_long"]]
    seg["epochs"] = round(seg["epochs"] * demo["data"]["demo"]["num_train"] / tiny_train_images)
    walk = {k: v for k, v in demo["psa"].items() if k in PSA_WALK_SETTINGS}  # the demo's walk, the tiny training
    return {**base_config, "psa": {**base_config["psa"], **walk, "eval_splits": ["train", "val"]}, "seg": seg}


def test_demo_schedule_trains_a_model_near_its_pseudo_labels(pseudo_run, tmp_path, capsys):
    config_path, pseudo_run_dir = pseudo_run  # CAMs and AffinityNet of the tiny set (conftest.py)
    run_dir = tmp_path / "run"
    shutil.copytree(pseudo_run_dir, run_dir)
    config = tmp_path / "demo_tiny.yaml"
    config.write_text(yaml.safe_dump(demo_on_tiny_data(yaml.safe_load(config_path.read_text()), 32)))

    assert main(["run", "--config", str(config), "--run-dir", str(run_dir), "--no-progress"]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    pseudo_val = summary["rw_crf/val"]["miou"]
    seg_val = json.loads((run_dir / "eval" / "seg_val.json").read_text())["miou"]["single-scale"]
    # The demo asks 0.9 of its pseudo labels on its own data (BENCHMARKS.md); here, on 8 val images
    # of 80 px, at least 0.8.
    assert seg_val >= 0.8 * pseudo_val, (seg_val, pseudo_val)
    # ... and not by predicting background everywhere: it finds objects of several classes
    per_class = json.loads((run_dir / "eval" / "seg_val.json").read_text())["per_class_iou"]["single-scale"]
    assert sum(iou > 5 for name, iou in per_class.items() if name != "background") >= 2, per_class

    # the closing lines: the report, predict with this run's model, the config to start from
    out = capsys.readouterr().out
    model = run_dir / "seg" / "model.pt"
    assert f"open {run_dir / 'report.html'}" in out and (run_dir / "report.html").exists()
    assert f"wsss predict --checkpoint {model} --input YOUR_PHOTOS/" in out
    assert "wsss import --images YOUR_PHOTOS/ --tags tags.csv --out data/mine" in out
    assert "wsss run --config configs/msrc.yaml --set data.root=data/mine" in out
    shipped = load_config(DEMO_CONFIG.parent / "msrc.yaml")  # ... a config whose every choice reads no mask
    assert (shipped.cam.bg_threshold, shipped.saliency.threshold, shipped.psa.walk_alpha) == ("auto", "auto", None)
    # ... and the predict line works as printed
    photos = tmp_path / "photos"
    photos.mkdir()
    data_root = Path(yaml.safe_load(config_path.read_text())["data"]["root"])
    shutil.copy(sorted(data_root.glob("JPEGImages/val_*.jpg"))[0], photos / "photo.jpg")
    assert main(["predict", "--checkpoint", str(model), "--input", str(photos), "--output",
                 str(run_dir / "predictions")]) == 0
    assert (run_dir / "predictions" / "photo.png").exists()
