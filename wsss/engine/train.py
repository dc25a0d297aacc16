"""The one training loop every stage uses (CAM classifier, AffinityNet, segmentation, SSNet).

What it does, the same for all of them:
* SGD with momentum; pretrained weights at the base rate, new layers at ``head_lr_mult`` x
  (PSA and DeepLab both train new layers 10x faster); poly decay
  lr = base * (1 - step / total)^power, stepped per iteration.
* Deterministic data order and augmentation from the seed: the order of epoch e is a
  permutation drawn from (seed, e), the augmentation of sample i in epoch e from (seed, e, i),
  so a resumed run sees exactly the batches an uninterrupted one would.
* Checkpoints (model, optimiser, step) written atomically every ``checkpoint_every`` steps and
  at each epoch's end; a re-run with the same command resumes from the last one.
* A progress bar with loss, rate and ETA; one JSON line per step in ``train_log.jsonl``.
* Under ``torchrun`` (see wsss.distributed): DistributedDataParallel, each rank taking its slice
  of every global batch of ``batch_size`` samples from the same seeded order, the loss weighted
  so that DDP's gradient average equals the single-process gradient of the whole batch; rank 0
  alone writes the log and checkpoints. Optional SyncBatchNorm (CUDA).
* Mixed precision (autocast bf16/fp16, GradScaler for fp16), see wsss.amp.
* A checkpoint also holds the RNG state (dropout) and the loss scaler, so a run killed at any
  moment and re-run with the same command ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from .. import distributed
from ..amp import autocast, autocast_dtype, dtype_name, needs_grad_scaler
from ..config import OptimConfig
from ..errors import WsssError
from ..io import atomic_path, remove_stale_temps, write_error
from ..run.layout import FINAL_MODEL, TRAINING_CHECKPOINT
from .checkpoint import finished_model, first_line, load_weights, read_wsss_file, save_checkpoint

log = logging.getLogger("wsss")

def epoch_order(num_samples: int, seed: int, epoch: int) -> list[int]:
    """The shuffled sample order of an epoch, a pure function of (seed, epoch)."""
    return np.random.default_rng([seed, epoch, 7919]).permutation(num_samples).tolist()


def poly_lr(base_lr: float, step: int, total_steps: int, power: float) -> float:
    """Poly schedule: base * (1 - step / total)^power."""
    return base_lr * (1 - min(step, total_steps) / max(total_steps, 1)) ** power


def set_bn_frozen(model: nn.Module) -> None:
    """Keep BatchNorm statistics and affine parameters fixed (PSA freezes them: batches are small)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
            for p in module.parameters():
                p.requires_grad_(False)


@dataclass
class TrainJob:
    """Everything one training stage hands to :func:`train`.

    ``loss_fn(model, batch) -> (loss, {name: float})`` computes the loss of a collated batch
    already on the device; ``dataset[i]`` must accept ``set_epoch`` (for augmentation seeds).

    Under torchrun ``model`` is the DistributedDataParallel wrapper: ``loss_fn`` must run the
    network by calling it (``model(x)``; DDP syncs gradients through that call) and reach other
    methods as ``unwrap(model).method``; the batch holds this rank's slice of the global batch
    and the loss must be its mean over those samples (per-sample means are then exact; a loss
    normalised over pixels or pairs pooled across the batch is averaged per rank instead).
    """

    kind: str
    model: nn.Module
    param_groups: dict[str, list[nn.Parameter]]
    dataset: Any
    loss_fn: Callable[[nn.Module, dict], tuple[torch.Tensor, dict[str, float]]]
    optim: OptimConfig
    out_dir: Path
    device: torch.device
    seed: int = 0
    fingerprint: str = ""
    meta: dict = field(default_factory=dict)
    collate_fn: Optional[Callable] = None
    num_workers: int = 0
    checkpoint_every: int = 0  # steps; 0 = at epoch ends only
    progress: bool = True
    max_steps: Optional[int] = None  # stop early (tests, benchmarks); the schedule still spans all epochs
    amp: str = "auto"  # autocast: auto|on|off|bf16|fp16 (wsss.amp); auto = bf16/fp16 on CUDA, off on CPU
    sync_bn: bool = False  # under torchrun on CUDA: BatchNorm statistics over the global batch
    find_unused_parameters: bool = False  # DDP: set when loss_fn leaves trainable parameters unused
    # the network's weights and its image batches in channels-last (NHWC) memory: oneDNN's faster
    # convolutions on CPU; it changes float rounding, not the model (BENCHMARKS.md, speed)
    channels_last: bool = False
    # SSNet's reference code uses Adam and a step schedule: "adam" here (no momentum term) and
    # lr_schedule(step, total_steps) -> factor of the base rate (default: poly with optim.poly_power).
    optimizer: str = "sgd"
    adam_betas: tuple[float, float] = (0.9, 0.999)
    lr_schedule: Optional[Callable[[int, int], float]] = None
    # called once, after the first optimiser step of this command: the run's record (config.yaml)
    # is written then, so a command that fails before doing any work leaves the run as it was
    started: Optional[Callable[[], None]] = None


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel wrapper (the model itself otherwise)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def default_collate(samples: list[dict]) -> dict:
    batch: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values)
        elif isinstance(values[0], np.ndarray):
            batch[key] = torch.from_numpy(np.stack(values))
        else:
            batch[key] = values
    return batch


class _EpochSlice(torch.utils.data.Sampler):
    """Batches of one epoch in its seeded order, starting at batch ``start``."""

    def __init__(self, batches: list[list[int]], start: int):
        self.batches = batches[start:]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


def _to_device(batch: dict, device: torch.device, channels_last: bool = False) -> dict:
    """The batch on ``device``; with ``channels_last`` its image batches (4-D float) in NHWC memory."""
    def moved(value):
        if not isinstance(value, torch.Tensor):
            return value
        value = value.to(device, non_blocking=True)
        if channels_last and value.dim() == 4 and value.is_floating_point():
            value = value.contiguous(memory_format=torch.channels_last)
        return value
    return {key: moved(value) for key, value in batch.items()}


def _truncate_log(log_path: Path, step: int) -> None:
    """Keep the log lines of steps <= ``step`` (a killed run may have logged past its checkpoint,
    or died mid-line), so a resumed run's log equals an uninterrupted one's."""
    if not log_path.exists():
        return
    kept = []
    for line in log_path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break
        if record.get("step", 0) > step:
            break
        kept.append(line)
    with atomic_path(log_path) as tmp:
        tmp.write_text("".join(f"{line}\n" for line in kept))


def _global_mean(values: torch.Tensor, count: int, batch_size: int) -> torch.Tensor:
    """Per-rank means of ``count`` samples -> the means over the global batch (all ranks)."""
    if not distributed.is_distributed():
        return values
    return distributed.all_reduce_sum(values * count) / batch_size


def _prepare_model(job: TrainJob, world: int) -> nn.Module:
    """The network on its device: SyncBatchNorm under torchrun when asked (and BN is trained),
    BatchNorm frozen when ``freeze_bn`` (before DDP is built: DDP registers the parameters that
    need gradients once, at construction)."""
    model = job.model.to(job.device)
    if job.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if world > 1 and job.sync_bn and not job.optim.freeze_bn:
        if job.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # keeps the same Parameter objects
        else:
            log.warning("%s: sync_bn needs CUDA; BatchNorm statistics stay per process on CPU", job.kind)
    return model


def build_optimizer(job: TrainJob, model: nn.Module) -> tuple[torch.optim.Optimizer, list[float]]:
    """The optimiser over the trainable parameters, pretrained ones at the base rate and new layers
    at ``head_lr_mult`` x; returns it with each parameter group's rate multiplier."""
    optim = job.optim
    groups = [(job.param_groups["pretrained"], 1.0), (job.param_groups["new"], optim.head_lr_mult)]
    groups = [([p for p in params if p.requires_grad], mult) for params, mult in groups]
    groups = [(params, mult) for params, mult in groups if params]
    specs = [{"params": params, "lr": optim.lr * mult} for params, mult in groups]
    if job.optimizer == "adam":
        optimizer = torch.optim.Adam(specs, lr=optim.lr, betas=job.adam_betas, weight_decay=optim.weight_decay)
    elif job.optimizer == "sgd":
        optimizer = torch.optim.SGD(specs, lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay)
    else:
        raise WsssError(f"{job.kind}: unknown optimizer {job.optimizer!r}; use sgd or adam")
    if optim.freeze_bn:
        # the optimiser keeps the (gradient-less) BN parameters, as before, so older checkpoints load
        set_bn_frozen(model)
    return optimizer, [mult for _, mult in groups]


def resume(job: TrainJob, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> int:
    """Load ``checkpoint.pt`` of ``job.out_dir`` when there is one; returns the step to continue at."""
    out_dir = Path(job.out_dir)
    path = out_dir / TRAINING_CHECKPOINT
    if not path.exists():
        return 0
    state = read_wsss_file(path, training=True)
    stale = state.get("fingerprint") != job.fingerprint or state.get("kind", job.kind) != job.kind
    if stale and state.get("fingerprint") and finished_model(out_dir / FINAL_MODEL, state["fingerprint"]):
        # the checkpoint of a finished training whose inputs or settings have changed since (new
        # seeds, a retrained classifier): nothing to resume, the stage trains afresh
        log.info("%s: from a finished training of other settings; training anew", path)
        return 0
    if stale:
        raise WsssError(f"{path}: checkpoint was made with other settings or another model; delete {out_dir} "
                        "or restore the config it was trained with")
    load_weights(model, state["model"], path, f"delete {out_dir}")
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise WsssError(f"{path}: checkpoint does not fit this model ({first_line(exc)}); delete {out_dir}") from None
    if "scaler" in state and scaler.is_enabled():
        scaler.load_state_dict(state["scaler"])
    if "rng_cpu" in state:
        torch.set_rng_state(state["rng_cpu"])
    if "rng_cuda" in state and job.device.type == "cuda":
        torch.cuda.set_rng_state(state["rng_cuda"], job.device)
    return int(state["step"])


def save_training_checkpoint(job: TrainJob, model: nn.Module, optimizer: torch.optim.Optimizer,
                             scaler: torch.amp.GradScaler, step: int) -> None:
    """``checkpoint.pt``: weights, optimiser, step, RNG and loss scaler (rank 0 writes it)."""
    if not distributed.is_main():
        return
    payload = {"kind": job.kind, "fingerprint": job.fingerprint, "step": step,
               "model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng_cpu": torch.get_rng_state()}
    if job.device.type == "cuda":
        payload["rng_cuda"] = torch.cuda.get_rng_state(job.device)
    if scaler.is_enabled():
        payload["scaler"] = scaler.state_dict()
    save_checkpoint(Path(job.out_dir) / TRAINING_CHECKPOINT, payload)


def save_final_model(job: TrainJob, model: nn.Module, step: int, total_steps: int) -> Path:
    """``model.pt``: weights, kind, settings fingerprint and metadata (rank 0 writes it)."""
    path = Path(job.out_dir) / FINAL_MODEL
    if distributed.is_main():
        save_checkpoint(path, {"kind": job.kind, "fingerprint": job.fingerprint, "model": model.state_dict(),
                               "meta": {**job.meta, "steps": step, "total_steps": total_steps}})
    return path


def _open_log(job: TrainJob, step: int) -> Path:
    """Prepare ``train_log.jsonl`` for a run starting (or resuming) at ``step`` (rank 0)."""
    out_dir = Path(job.out_dir)
    log_path = out_dir / "train_log.jsonl"
    if distributed.is_main():
        out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out_dir)
        if step == 0 and log_path.exists():
            log_path.unlink()
        _truncate_log(log_path, step)
    return log_path


def _epoch_loader(job: TrainJob, batches: list[list[int]], epoch: int, offset: int) -> torch.utils.data.DataLoader:
    if hasattr(job.dataset, "set_epoch"):
        job.dataset.set_epoch(epoch)
    return torch.utils.data.DataLoader(
        job.dataset, batch_sampler=_EpochSlice(batches, offset), collate_fn=job.collate_fn or default_collate,
        num_workers=job.num_workers, persistent_workers=False,
        # its own generator: the loader's seed draw must not consume the global RNG (dropout),
        # or a run resumed mid-epoch would draw other masks
        generator=torch.Generator().manual_seed(job.seed * 100003 + epoch),
    )


def train(job: TrainJob) -> Path:
    """Run (or resume) a training job; returns the path of the final ``model.pt``."""
    optim = job.optim
    n = len(job.dataset)
    batch_size = min(optim.batch_size, n)
    # Drop the last partial batch: a batch of one breaks BatchNorm and skews the loss.
    steps_per_epoch = n // batch_size
    total_steps = steps_per_epoch * optim.epochs
    world, rank = distributed.world_size(), distributed.rank()
    main = distributed.is_main()
    if batch_size < world:
        raise WsssError(f"{job.kind}: batch_size {batch_size} is smaller than the {world} processes; "
                        "raise batch_size or start fewer processes")

    model = _prepare_model(job, world)
    amp_dtype = autocast_dtype(job.amp, job.device)
    scaler = torch.amp.GradScaler(job.device.type, enabled=needs_grad_scaler(job.device, amp_dtype))
    optimizer, lr_mults = build_optimizer(job, model)
    step = resume(job, model, optimizer, scaler)
    if step:
        log.info("resuming %s from step %d/%d", job.kind, step, total_steps)
    net = model
    if world > 1:  # wrapped after loading: DDP starts from (and broadcasts) rank 0's resumed weights
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[job.device.index] if job.device.type == "cuda" else None,
            find_unused_parameters=job.find_unused_parameters)

    log_path = _open_log(job, step)
    if world > 1:
        log.info("%s: %d processes, global batch %d (%s per process)", job.kind, world, batch_size,
                 "/".join(str(len(range(r, batch_size, world))) for r in range(world)))
    if amp_dtype is not None:
        log.info("%s: mixed precision %s%s", job.kind, dtype_name(amp_dtype), " with loss scaling" if scaler.is_enabled() else "")
    stop_at = total_steps if job.max_steps is None else min(total_steps, job.max_steps)
    bar = tqdm(total=stop_at, initial=min(step, stop_at), desc=f"train {job.kind}", unit="it",
               disable=not (job.progress and main), dynamic_ncols=True, mininterval=1.0)
    with (open(log_path, "a") if main else contextlib.nullcontext()) as log_file:
        while step < stop_at:
            epoch, offset = divmod(step, steps_per_epoch)
            order = epoch_order(n, job.seed, epoch)
            # the global batches of one process, each rank's slice of them under torchrun
            batches = [order[i * batch_size:(i + 1) * batch_size][rank::world] for i in range(steps_per_epoch)]
            loader = _epoch_loader(job, batches, epoch, offset)
            net.train()
            if optim.freeze_bn:  # train() switched BatchNorm back to batch statistics
                set_bn_frozen(model)
            tick = time.perf_counter()
            for index, batch in enumerate(loader, start=offset):
                lr = (optim.lr * job.lr_schedule(step, total_steps) if job.lr_schedule is not None
                      else poly_lr(optim.lr, step, total_steps, optim.poly_power))
                for group, mult in zip(optimizer.param_groups, lr_mults):
                    group["lr"] = lr * mult
                local = len(batches[index])  # this rank's samples of the global batch
                global_loss, stats = _step(job, net, optimizer, scaler, amp_dtype, batch, local, batch_size, step)
                step += 1
                now = time.perf_counter()
                rate = batch_size / max(now - tick, 1e-9)
                tick = now
                if main:
                    record = {"step": step, "epoch": epoch, "lr": lr, "loss": global_loss, "images_per_s": rate, **stats}
                    try:
                        log_file.write(json.dumps(record) + "\n")
                        log_file.flush()
                    except OSError as exc:  # a full disk
                        raise write_error(log_path, exc) from None
                    bar.set_postfix(loss=f"{global_loss:.4f}", img_s=f"{rate:.1f}", refresh=False)
                    bar.update(1)
                if job.started is not None:
                    job.started()
                    job.started = None
                if job.checkpoint_every and step % job.checkpoint_every == 0:
                    save_training_checkpoint(job, model, optimizer, scaler, step)
                if step >= stop_at:
                    break
            save_training_checkpoint(job, model, optimizer, scaler, step)
    bar.close()
    final_path = save_final_model(job, model, step, total_steps)
    distributed.barrier()  # the other ranks return once model.pt exists
    return final_path


def _step(job: TrainJob, net: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
          amp_dtype, batch: dict, local: int, batch_size: int, step: int) -> tuple[float, dict[str, float]]:
    """One optimisation step on this rank's ``local`` samples of a global batch; returns the global
    batch's mean loss and statistics (the same on every rank, so all stop together)."""
    world = distributed.world_size()
    batch = _to_device(batch, job.device, job.channels_last)
    with autocast(job.device, amp_dtype):
        loss, stats = job.loss_fn(net, batch)
    loss = loss.float()
    names = sorted(stats)
    reported = _global_mean(torch.tensor([float(loss.detach())] + [float(stats[k]) for k in names],
                                         dtype=torch.float64, device=job.device), local, batch_size)
    global_loss = float(reported[0])
    if not np.isfinite(global_loss):
        raise WsssError(f"{job.kind}: loss became {global_loss} at step {step}; lower the learning rate")
    optimizer.zero_grad(set_to_none=True)
    # DDP averages gradients over ranks: weight each rank's mean by its share of the global batch
    # so the average is the gradient of the global batch's mean loss
    scaler.scale(loss * (local * world / batch_size) if world > 1 else loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return global_loss, {k: float(v) for k, v in zip(names, reported[1:].tolist())}
