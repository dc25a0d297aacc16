"""Run a per-image job over a list of images, in this process or in a pool of worker processes.

The job is built inside each worker from a picklable factory (models are loaded there, not
pickled), and each worker gets cores // workers torch threads (at most OMP_NUM_THREADS when
that is set). ``workers=0`` means one per core (of this process's share under torchrun).

Per-image outputs do not depend on which process made them or in which order: any number of
workers (or torchrun ranks) gives the same files as one process *computing with the same number
of torch threads*. Across thread counts oneDNN may sum in another order, which moves float
outputs by rounding (CAMs saved as float16: the last bit of ~0.4% of values); set
OMP_NUM_THREADS=1 (torchrun's default) for files that are bit-identical across layouts.

When a job fails, the pool is terminated: its workers get SIGTERM, which they turn into
SystemExit so that a write in progress (``wsss.io.atomic_path``) removes its temporary file.
When every job is done, the pool is closed and its workers exit on their own.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from typing import Callable, Iterable

import torch
from tqdm import tqdm

_JOB = None


def usable_cores() -> int:
    """CPU cores this process may use: its affinity mask, split among torchrun's local ranks."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def resolve_workers(workers: int) -> int:
    """The number of worker processes for a ``workers`` setting (0 = one per usable core; more
    than the usable cores only queue and take memory, so never more than those)."""
    return usable_cores() if workers == 0 else min(workers, usable_cores())


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)  # unwinds: ``finally`` blocks (temporary files) run


def _init_worker(factory: Callable, args: tuple, threads: int) -> None:
    global _JOB
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # Pool.terminate() after another job failed
    torch.set_num_threads(threads)
    _JOB = factory(*args)


def _run_one(index: int):
    return _JOB(index)


def map_images(factory: Callable, args: tuple, indices: Iterable[int], workers: int = 1,
               desc: str = "", progress: bool = True) -> list:
    """Call ``factory(*args)(i)`` for every index; returns the results (in completion order)."""
    indices = list(indices)
    if not indices:
        return []
    workers = resolve_workers(workers)
    bar = tqdm(total=len(indices), desc=desc, unit="img", disable=not progress, dynamic_ncols=True, mininterval=1.0)
    results = []
    if workers <= 1 or len(indices) <= 1:
        job = factory(*args)
        for index in indices:
            results.append(job(index))
            bar.update(1)
    else:
        threads = max(1, usable_cores() // workers)
        if os.environ.get("OMP_NUM_THREADS", "").isdigit():  # the user's cap on threads per process
            threads = max(1, min(threads, int(os.environ["OMP_NUM_THREADS"])))
        # spawn, not fork: a forked child of a process that already ran torch ops can deadlock
        pool = mp.get_context("spawn").Pool(workers, _init_worker, (factory, args, threads))
        try:
            for result in pool.imap_unordered(_run_one, indices):
                results.append(result)
                bar.update(1)
            # done: the workers exit by themselves. Terminating them instead (what ``with Pool``
            # does) could land SIGTERM in their interpreter's exit handlers, which then printed
            # "Exception ignored in atexit callback" tracebacks after a successful stage.
            pool.close()
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.join()
    bar.close()
    return results
