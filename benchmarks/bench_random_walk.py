"""Time wsss.affinity.random_walk against the paper's dense random walk, and its peak memory.

    .venv/bin/python benchmarks/bench_random_walk.py            # PSA's setting, ~30 s on 2 idle cores
    .venv/bin/python benchmarks/bench_random_walk.py --kernels  # also the propagation kernels tried

Default grid: a 448 x 448 input at stride 8 (56 x 56), C = 21 classes, D = 448 features,
radius 5, beta 8, 256 steps, float32. Times are medians over repeats (one warm-up call first);
the load average is printed because the numbers mean little on a busy machine: a second
torch thread then waits for a core at every parallel region, which costs random_walk's many
small operations far more than the dense walk's few large matrix products.
Peak memory is the maximum resident set size of a fresh subprocess that imports torch, makes
one small call (libraries and thread pools load lazily), makes the inputs and makes one call;
the table gives that peak and its increase over the resident set size just before the call.
The peak is read as VmHWM from /proc/self/status rather than getrusage's ru_maxrss: Linux
carries ru_maxrss over an exec, so a child of this (large) process would report at least the
parent's own peak. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wsss import affinity  # noqa: E402

METHODS = {"random_walk": affinity.random_walk, "random_walk_dense_paper": affinity.random_walk_dense_paper}


def make_inputs(size: int, classes: int, depth: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """cam (C, size, size) softmax scores; features (D, size, size) giving affinities ~0.9."""
    generator = torch.Generator().manual_seed(seed)
    cam = torch.softmax(4 * torch.rand(classes, size, size, generator=generator), dim=0)
    features = 0.1 * torch.randn(depth, size, size, generator=generator)
    return cam, features


def median_time(fn, repeats: int) -> float:
    return median_times(fn, repeats)[0]


def median_times(fn, repeats: int) -> tuple[float, float]:
    """Median wall-clock and median process CPU time (all threads) of ``fn()``, in seconds."""
    fn()  # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def rss_mib(field: str) -> float:
    """A memory figure of this process from /proc/self/status (Linux), in MiB."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def measure_memory(method: str, args: argparse.Namespace, size: int) -> dict:
    """Run one call of ``method`` in a fresh interpreter; return its RSS figures (MiB)."""
    command = [
        sys.executable, __file__, "--child", method, "--size", str(size), "--classes", str(args.classes),
        "--depth", str(args.depth), "--radius", str(args.radius), "--beta", str(args.beta),
        "--steps", str(args.steps), "--threads", str(torch.get_num_threads()),
    ]  # fmt: skip
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def child(args: argparse.Namespace) -> None:
    method = METHODS[args.child]
    small_cam, small_features = make_inputs(8, args.classes, args.depth)
    method(small_cam, small_features, radius=args.radius, beta=args.beta, steps=args.steps)  # lazy init
    cam, features = make_inputs(args.size, args.classes, args.depth)
    before = rss_mib("VmRSS")
    method(cam, features, radius=args.radius, beta=args.beta, steps=args.steps)
    peak = rss_mib("VmHWM")  # = ru_maxrss of this process image, see the module docstring
    print(json.dumps({"before_mib": before, "peak_mib": peak}))


# --------------------------------------------------------------------------- kernels


def kernel_table(args: argparse.Namespace, cam: torch.Tensor, features: torch.Tensor) -> list[str]:
    """Per-step cost of the propagation kernels that were tried for random_walk."""
    channels, h, w = cam.shape
    n, r = h * w, args.radius
    with torch.no_grad():
        transition, conditioning = affinity._transition_matrix(features, r, args.beta)
        tolerance = torch.finfo(features.dtype).eps / conditioning  # as random_walk chooses it
        chebyshev_degree = len(affinity._power_chebyshev_coefficients(args.steps, tolerance)) - 1
        # Per-offset weight maps W[k, j] = A[j + o_k, j] / colsum[j] for the stencil incl. (0, 0).
        offsets = affinity.pair_offsets(r).tolist()
        stencil = sorted(offsets + [[0, 0]])
        aff, _ = affinity.affinity_from_features(features, torch.tensor(stencil))
        weights = aff.pow(args.beta)
        weights /= weights.sum(0)
        vectors = cam.reshape(channels, n).t().contiguous()

        # (a) shifted multiply-adds over a padded, flattened (C, h + 2p, w + 2p) buffer:
        #     one in-place addcmul per offset, every neighbour a contiguous slice.
        pad = r - 1
        wp = w + 2 * pad
        buffer = F.pad(cam, (pad, pad, pad, pad)).reshape(channels, -1)
        padded_weights = F.pad(weights, (pad, pad, pad, pad)).reshape(len(stencil), -1)
        lo, hi = pad * wp + pad, (pad + h - 1) * wp + pad + w  # first and one past the last pixel
        padded_weights = padded_weights[:, lo:hi].contiguous()
        shifts = [dy * wp + dx for dy, dx in stencil]
        out = torch.empty(channels, hi - lo)

        def stencil_step():
            out.zero_()
            for k, s in enumerate(shifts):
                out.addcmul_(buffer[:, lo + s : hi + s], padded_weights[k])
            buffer[:, lo:hi] = out

        # (b) sparse CSR (N, N) @ dense (N, C), int32 and int64 indices.
        csr_int64 = torch.sparse_csr_tensor(
            transition.crow_indices().long(),
            transition.col_indices().long(),
            transition.values(),
            (n, n),
            check_invariants=False,
        )

        # (c) unfold gather: (C * window, N) patches times a (window, N) weight map, summed.
        size = 2 * r - 1
        window = torch.zeros(size * size, h, w)
        for k, (dy, dx) in enumerate(stencil):
            window[(dy + pad) * size + dx + pad] = weights[k]
        window = window.reshape(size * size, n)
        grid = cam.unsqueeze(0)

        def unfold_step():
            patches = F.unfold(grid, size, padding=pad).view(channels, size * size, n)
            return (patches * window).sum(1)

        # All kernels compute one step v -> P v; check that before timing them.
        expected = (transition @ vectors).t()
        stencil_step()
        interior = buffer.view(channels, h + 2 * pad, wp)[:, pad : pad + h, pad : pad + w]
        torch.testing.assert_close(interior.reshape(channels, n), expected)
        torch.testing.assert_close((csr_int64 @ vectors).t(), expected)
        torch.testing.assert_close(unfold_step(), expected)

        kernels = [
            ("(a) shifted multiply-add stencil", stencil_step),
            ("(b) CSR SpMM, int64 indices", lambda: csr_int64 @ vectors),
            ("(b) CSR SpMM, int32 indices (chosen)", lambda: transition @ vectors),
            ("(c) unfold gather + weighted sum", unfold_step),
        ]
        lines = [
            f"| kernel | ms / step | {args.steps} direct steps (ms) | Chebyshev, {chebyshev_degree} products (ms) |",
            "|---|---:|---:|---:|",
        ]
        for name, step in kernels:
            per_step = median_time(lambda step=step: [step() for _ in range(10)], max(3, args.repeats)) / 10
            lines.append(
                f"| {name} | {per_step * 1e3:.3f} | {per_step * args.steps * 1e3:.1f} | "
                f"{per_step * chebyshev_degree * 1e3:.1f} |"
            )
    return lines


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=56, help="grid side h = w (default 56 = 448 px / 8)")
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--depth", type=int, default=448, help="feature channels D")
    parser.add_argument("--radius", type=int, default=5)
    parser.add_argument("--beta", type=float, default=8.0)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of random_walk (median)")
    parser.add_argument("--dense-repeats", type=int, default=3, help="timed calls of the dense walk")
    parser.add_argument("--memory-size", type=int, default=128, help="grid side for the memory run (1024 px / 8)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--kernels", action="store_true", help="also time the propagation kernels tried")
    parser.add_argument("--threads", type=int, help="torch threads (default: what torch gives)")
    parser.add_argument("--child", choices=sorted(METHODS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        child(args)
        return

    cam, features = make_inputs(args.size, args.classes, args.depth)
    kwargs = dict(radius=args.radius, beta=args.beta, steps=args.steps)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"grid {args.size}x{args.size}, C={args.classes}, D={args.depth}, radius {args.radius}, "
        f"beta {args.beta:g}, {args.steps} steps, float32; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load average {load}\n"
    )
    fast, fast_cpu = median_times(lambda: affinity.random_walk(cam, features, **kwargs), args.repeats)
    dense, dense_cpu = median_times(
        lambda: affinity.random_walk_dense_paper(cam, features, **kwargs), args.dense_repeats
    )
    difference = (affinity.random_walk(cam, features, **kwargs)
                  - affinity.random_walk_dense_paper(cam, features, **kwargs)).abs().max().item()  # fmt: skip

    grid = f"{args.size}x{args.size}"
    print("| method | grid | median time (ms) | speed-up | median CPU time, all threads (ms) |")
    print("|---|---|---:|---:|---:|")
    print(f"| random_walk_dense_paper | {grid} | {dense * 1e3:.1f} | 1.0x | {dense_cpu * 1e3:.1f} |")
    print(f"| random_walk | {grid} | {fast * 1e3:.1f} | {dense / fast:.1f}x | {fast_cpu * 1e3:.1f} |")
    print(f"\nmax |random_walk - random_walk_dense_paper| = {difference:.2e} (outputs lie in [0, 1])\n")

    if not args.no_memory:
        print("| method | grid | peak RSS of the process (MiB) | peak minus RSS before the call (MiB) |")
        print("|---|---|---:|---:|")
        runs = [("random_walk_dense_paper", args.size), ("random_walk", args.size), ("random_walk", args.memory_size)]
        for method, size in runs:
            memory = measure_memory(method, args, size)
            increase = memory["peak_mib"] - memory["before_mib"]
            print(f"| {method} | {size}x{size} | {memory['peak_mib']:.0f} | {increase:.0f} |")
        print()

    if args.kernels:
        print("\n".join(kernel_table(args, cam, features)))


if __name__ == "__main__":
    main()
