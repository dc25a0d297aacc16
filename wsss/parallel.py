"""Run a per-image job over a list of images, in this process or in a pool of worker processes.

The job is built inside each worker from a picklable factory (models are loaded there, not
pickled), and each worker gets cores // workers torch threads. Per-image outputs do not depend
on which worker made them, so any number of workers gives the same files.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from typing import Callable, Iterable

import torch
from tqdm import tqdm

_JOB = None


def _init_worker(factory: Callable, args: tuple, threads: int) -> None:
    global _JOB
    torch.set_num_threads(threads)
    _JOB = factory(*args)


def _run_one(index: int):
    return _JOB(index)


def map_images(factory: Callable, args: tuple, indices: Iterable[int], workers: int = 1,
               desc: str = "", progress: bool = True) -> list:
    """Call ``factory(*args)(i)`` for every index; returns the results (in completion order)."""
    indices = list(indices)
    bar = tqdm(total=len(indices), desc=desc, unit="img", disable=not progress, dynamic_ncols=True, mininterval=1.0)
    results = []
    if workers <= 1 or len(indices) <= 1:
        job = factory(*args)
        for index in indices:
            results.append(job(index))
            bar.update(1)
    else:
        threads = max(1, (os.cpu_count() or 1) // workers)
        # spawn, not fork: a forked child of a process that already ran torch ops can deadlock
        with mp.get_context("spawn").Pool(workers, _init_worker, (factory, args, threads)) as pool:
            for result in pool.imap_unordered(_run_one, indices):
                results.append(result)
                bar.update(1)
    bar.close()
    return results
