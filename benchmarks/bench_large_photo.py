"""Peak memory of `wsss predict` and `wsss make-cam` on one 6000x4000 photo (docs/notes/benchmarks-history.md).

    python benchmarks/bench_large_photo.py /tmp/bench14      # writes the data and models there, ~1 min
    OMP_NUM_THREADS=2 /usr/bin/time -v python -m wsss predict --checkpoint /tmp/bench14/seg.pt \\
        --input /tmp/bench14/photos/big.jpg --output /tmp/bench14/pred --device cpu --no-progress
    OMP_NUM_THREADS=2 /usr/bin/time -v python -m wsss make-cam --config /tmp/bench14/bench.yaml \\
        --run-dir /tmp/bench14/run --split big --no-progress --set 'cam.scales=[1.0,1.5]'

The photo: 1500x1000 px of smooth noise with twelve filled discs and squares, blurred, upscaled
4x (Lanczos) and given pixel noise, JPEG quality 90. It joins an 8-image demo dataset as split
``big``. The models have the demo's architecture (efficientnet_lite0, ImageNet backbone): an
untrained DeepLab (ASPP, output stride 8) for predict, and a classifier trained for one epoch
(train-cam, run here) for make-cam.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image, ImageDraw, ImageFilter

from wsss.data.demo import generate_demo_dataset
from wsss.models import build_model


def large_photo(seed: int = 14) -> np.ndarray:
    rng = np.random.default_rng(seed)
    height, width = 1000, 1500
    colour = rng.uniform(60, 200, 3)
    noise = Image.fromarray(rng.integers(0, 255, (height // 20, width // 20, 3), dtype=np.uint8))
    noise = np.asarray(noise.resize((width, height), Image.BICUBIC), np.float32)
    base = noise * 0.4 + colour * 0.6 + rng.normal(0, 8, (height, width, 3))
    image = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y, r = rng.integers(100, width - 100), rng.integers(100, height - 100), rng.integers(30, 160)
        fill = tuple(int(c) for c in rng.integers(0, 255, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x - r, y - r, x + r, y + r], fill=fill)
    large = image.filter(ImageFilter.GaussianBlur(1)).resize((6000, 4000), Image.LANCZOS)
    return (np.asarray(large, np.float32) + rng.normal(0, 4, (4000, 6000, 3))).clip(0, 255).astype(np.uint8)


def main(root: Path) -> None:
    data = generate_demo_dataset(root / "data", 8, 4, 64, 0)
    photo = Image.fromarray(large_photo())
    (root / "photos").mkdir(parents=True, exist_ok=True)
    photo.save(root / "photos" / "big.jpg", quality=90)
    photo.save(data / "JPEGImages" / "big.jpg", quality=90)
    (data / "ImageSets" / "Segmentation" / "big.txt").write_text("big\n")
    labels = json.loads((data / "image_labels.json").read_text())
    (data / "image_labels.json").write_text(json.dumps({**labels, "big": ["disc", "box"]}))

    config = {"name": "bench14", "seed": 0, "device": "cpu", "data": {"root": str(data)},
              "backbone": {"name": "efficientnet_lite0", "pretrained": True},
              "cam": {"output_stride": 16, "epochs": 1, "batch_size": 4, "resize_long": [56, 72], "crop_size": 56,
                      "scales": [1.0, 1.5], "flip": True}}
    (root / "bench.yaml").write_text(yaml.safe_dump(config))
    subprocess.run([sys.executable, "-m", "wsss", "train-cam", "--config", str(root / "bench.yaml"),
                    "--run-dir", str(root / "run"), "--no-progress"], check=True)

    names = (data / "class_names.txt").read_text().split()
    torch.manual_seed(0)
    model = build_model("segmentation", "efficientnet_lite0", 8, len(names), "aspp", [6, 12, 18, 24])
    torch.save({"kind": "segmentation", "fingerprint": "bench", "model": model.state_dict(),
                "meta": {"class_names": names, "backbone": "efficientnet_lite0", "output_stride": 8,
                         "head": "aspp", "rates": [6, 12, 18, 24]}}, root / "seg.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/bench14"))
