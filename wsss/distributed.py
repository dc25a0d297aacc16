"""torch.distributed for wsss: one process per GPU (or per CPU share) under ``torchrun``.

    torchrun --nproc_per_node=4 -m wsss train-cam --config configs/voc12.yaml
    torchrun --nnodes=2 --node_rank=0 --master_addr=HOST --nproc_per_node=8 -m wsss run ...

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; :func:`init_from_env`
joins the process group from them (NCCL on CUDA, gloo on CPU). Without torchrun every helper
here behaves as the single process of a world of one, so steps call them unconditionally:

* training (engine.train): each rank takes its slice of every global batch, DDP averages the
  gradients, rank 0 alone writes logs and checkpoints;
* per-image steps: :func:`shard` gives each rank a disjoint, balanced share of the images still
  to do, and :func:`barrier` waits for all shares before the step returns;
* everything else (scoring, summaries): :func:`on_main_process` runs it on rank 0 only.
"""

from __future__ import annotations

import datetime
import functools
import logging
import os
from typing import Callable, Sequence, TypeVar

import torch
import torch.distributed as dist

from .errors import WsssError

log = logging.getLogger("wsss")

T = TypeVar("T")

# Ranks wait at barriers while others finish their share; a resumed step can leave one rank far
# more to do than another, so the wait allowed is long (seconds; override with the variable).
DEFAULT_TIMEOUT_S = 3 * 3600


def launched_by_torchrun() -> bool:
    """True when the environment describes a world of more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if is_distributed() else 0


def is_main() -> bool:
    """True in the process that writes logs, checkpoints and summaries (rank 0)."""
    return rank() == 0


def init_from_env(device: torch.device) -> torch.device:
    """Join torchrun's process group (once); returns the device this process should use.

    On CUDA each process takes GPU ``LOCAL_RANK`` and NCCL; on CPU gloo. Without torchrun
    (WORLD_SIZE unset or 1) nothing happens and ``device`` is returned as is.
    """
    if not launched_by_torchrun():
        return device
    if device.type == "cuda":
        index = int(os.environ.get("LOCAL_RANK", "0"))
        if index >= torch.cuda.device_count():
            raise WsssError(f"LOCAL_RANK {index} but only {torch.cuda.device_count()} GPU(s) are visible; "
                            "use --nproc_per_node <= the number of GPUs")
        torch.cuda.set_device(index)
        device = torch.device("cuda", index)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = datetime.timedelta(seconds=float(os.environ.get("WSSS_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S)))
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, timeout=timeout, **kwargs)
        log.debug("rank %d of %d joined the %s process group", dist.get_rank(), dist.get_world_size(), backend)
    return device


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def broadcast_object(obj: T) -> T:
    """Rank 0's ``obj`` on every rank (a picklable object)."""
    if not is_distributed():
        return obj
    holder = [obj if is_main() else None]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def all_gather(obj: T) -> list[T]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if not is_distributed():
        return [obj]
    gathered: list = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def shard(todo: Sequence[T]) -> list[T]:
    """This rank's share of ``todo``: rank 0's list, every world_size-th item from ``rank``.

    Rank 0's list is broadcast first, so every rank splits the same list even when ranks
    computed it from files another rank was already writing; the shares are disjoint, cover
    the list and differ in length by at most one.
    """
    items = list(broadcast_object(list(todo)))
    return items[rank()::world_size()]


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over ranks (in place; returned for convenience)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def on_main_process(fn: Callable[..., T]) -> Callable[..., T]:
    """Run ``fn`` on rank 0 alone; the other ranks wait and get its return value.

    For steps whose work is not worth sharding (scoring, summaries): without it every rank would
    compute and write the same files.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if not is_distributed():
            return fn(*args, **kwargs)
        result = fn(*args, **kwargs) if is_main() else None
        return broadcast_object(result)

    return wrapper
