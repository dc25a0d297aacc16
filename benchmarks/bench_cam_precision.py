"""make-cam's network in float32, bf16 autocast and channels_last memory: speed and CAM quality.

    python benchmarks/bench_cam_precision.py --run-dir runs/msrc --data-root ../shared/data/msrc-objects \\
        [--split train] [--limit 120]

Computes the multi-scale + flip CAMs (the config's cam.scales) of the first ``--limit`` images of
the split with the run's CAM classifier, once per variant, one variant after another in this
process (``--variants`` sets the order; the first pass also warms the allocator up); times the
network passes and their upsampling (reading images excluded) and scores each variant's CAMs
against the masks at every background threshold of the config (the best is shown), so the scores
compare variants on the same images. Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from wsss.amp import autocast
from wsss.cam.algorithm import cam_from_features, multiscale_cam, normalize_cam
from wsss.cam.make import load_cam_model
from wsss.config import load_config
from wsss.cues.cam import cam_to_label
from wsss.data.voc import VocDataset
from wsss.inference import image_tensor
from wsss.metrics import confusion_matrix, mean_iou
from wsss.run.context import RunContext

# name: (autocast dtype, channels_last memory)
VARIANTS = {"fp32": (None, False), "fp32-nhwc": (None, True), "bf16": (torch.bfloat16, False),
            "bf16-nhwc": (torch.bfloat16, True)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--limit", type=int, default=120)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                        help="in this order; a name given twice runs twice (the first variant also warms "
                             "up the allocator: repeat it, or put another first, to compare fairly)")
    args = parser.parse_args()
    cfg = load_config(args.run_dir / "config.yaml")
    ctx = RunContext(args.run_dir, cfg, progress=False)
    voc = VocDataset(args.data_root, args.split, require_masks=True)
    model = load_cam_model(ctx, None, voc.class_names)
    images = [image_tensor(voc.load_image(i), ctx.device) for i in range(min(args.limit, len(voc)))]
    masks = [voc.load_mask(i) for i in range(len(images))]
    thresholds = cfg.cam.thresholds.values()
    reference, rows = None, []
    for name in args.variants:
        dtype, channels_last = VARIANTS[name]
        net = model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)

        def cam_fn(batch, net=net, dtype=dtype, channels_last=channels_last):
            if channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with autocast(ctx.device, dtype):
                return cam_from_features(net.features(batch), net.classifier.weight).float()

        cams, seconds = [], 0.0
        with torch.inference_mode():
            cam_fn(images[0][None])  # warm-up: oneDNN builds its kernels for the first shapes
            for image, label in zip(images, voc.labels):
                start = time.perf_counter()
                cam = multiscale_cam(cam_fn, image, cfg.cam.scales, cfg.cam.flip)
                seconds += time.perf_counter() - start
                cams.append(normalize_cam(cam, label))
        confusions = np.zeros((len(thresholds), voc.num_classes, voc.num_classes), dtype=np.int64)
        for (normalised, keys), mask in zip(cams, masks):
            for t, threshold in enumerate(thresholds):
                confusions[t] += confusion_matrix(cam_to_label(normalised.cpu().numpy(), keys, threshold), mask,
                                                  voc.num_classes)
        mious = [100 * mean_iou(c) for c in confusions]
        best = int(np.nanargmax(mious))
        if reference is None:  # the differences are to the first variant run
            reference = cams
        diff = max(float((c - r).abs().max()) for (c, _), (r, _) in zip(cams, reference))
        rows.append((name, seconds, mious[best], thresholds[best], diff))
    fp32 = [seconds for name, seconds, *_ in rows if name == "fp32"]
    base = fp32[-1] if fp32 else rows[0][1]
    print(f"{len(images)} images of {voc.root.name}/{args.split}, scales {cfg.cam.scales}, flip {cfg.cam.flip}, "
          f"{torch.get_num_threads()} threads\n")
    print("| variant | network s | speed vs fp32 | CAM mIoU (best threshold) | max abs diff of CAMs |")
    print("|---|---:|---:|---:|---:|")
    for name, seconds, miou, threshold, diff in rows:
        print(f"| {name} | {seconds:.1f} | {base / seconds:.2f}x | {miou:.2f} ({threshold:.2f}) | {diff:.4f} |")
    print("\nspeed: against the last fp32 pass; max abs diff: against the first variant")
    return 0


if __name__ == "__main__":
    sys.exit(main())
