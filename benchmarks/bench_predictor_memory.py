"""The predictor's network on channels_last (NHWC, as wsss runs it) against plain NCHW memory.

    python benchmarks/bench_predictor_memory.py --checkpoint runs/recipe/seg/model.pt \\
        --data-root ../shared/data/msrc-objects [--split val] [--limit 40] [--rounds 2]

Times ``Predictor.probabilities`` (multi-scale + flip, no CRF) on the first ``--limit`` images,
the two memory formats alternating for ``--rounds`` rounds in this process (NCHW first, so its
first pass also warms the allocator up), and prints each pass and the largest difference of the
probabilities.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from wsss.data.voc import VocDataset
from wsss.inference.predictor import Predictor


class PlainPredictor(Predictor):
    """The predictor as it ran before: the network on NCHW memory."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model = self.model.to(memory_format=torch.contiguous_format)

    def _outputs(self, batch: torch.Tensor):
        return self.model(batch.contiguous())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--scales", type=float, nargs="+", default=[0.75, 1.0, 1.25, 1.5])
    args = parser.parse_args()
    voc = VocDataset(args.data_root, args.split)
    images = [voc.load_image(i) for i in range(min(args.limit, len(voc)))]
    options = dict(device="cpu", scales=args.scales, flip=True, max_side=None)
    predictors = {"nchw": PlainPredictor(args.checkpoint, **options), "nhwc": Predictor(args.checkpoint, **options)}
    outputs = {}
    print(f"{len(images)} images of {voc.root.name}/{args.split}, scales {args.scales} + flip, "
          f"{torch.get_num_threads()} threads")
    for round_ in range(args.rounds):
        for name, predictor in predictors.items():
            start = time.perf_counter()
            with torch.inference_mode():
                outputs[name] = [predictor.probabilities(image) for image in images]
            print(f"round {round_ + 1}: {name} {time.perf_counter() - start:.1f} s")
    diff = max(float(np.abs(a - b).max()) for a, b in zip(outputs["nchw"], outputs["nhwc"]))
    print(f"max abs difference of the probabilities: {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
