"""Several training processes in one job: PyTorch's DistributedDataParallel (DDP) under ``torchrun``.

Codec pretraining and fine-tuning can run as ``torchrun --standalone --nnodes 1
--nproc-per-node <n> -m taskcodec.stages.<stage> …`` (the rules do so when
``resources.<stage>.tasks`` is above 1): one process per GPU of the node, or
several CPU processes. This is PyTorch's DDP (notes:
https://pytorch.org/docs/stable/notes/ddp.html; tutorial:
https://pytorch.org/tutorials/intermediate/ddp_tutorial.html): every process
holds the whole model and draws its share of the global batch (:func:`share`),
and DDP averages the gradients across the processes during the backward pass
(:func:`wrap`), so all take the same optimizer step and keep identical weights.

:func:`session` detects a torchrun launch (``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK`` in the environment), gives each process its share of the job's
CPU threads and its device (``cuda:LOCAL_RANK`` with the NCCL backend, the CPU
with gloo), and ends the process group afterwards. The other helpers keep the
processes of the one training loop in lockstep: the same stop decisions
(:func:`any_process`, :func:`job_seconds`), the logged terms of the global batch
(:func:`mean_over_processes`), every process's random-number generator states in
one resume checkpoint (:func:`gathered`, :func:`barrier`), and messages and
outputs from the main process (rank 0) only (:func:`is_main`, :func:`write`).
Without torchrun there is one process, rank 0, and they change nothing.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from taskcodec.device import resolve_device
from taskcodec.errors import UserError


def world_size() -> int:
    """The number of training processes (1 without torchrun)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    """This process's rank, 0 to :func:`world_size` − 1."""
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    """Whether this is the process that prints, logs and writes the outputs (rank 0)."""
    return rank() == 0


def write(text: str) -> None:
    """Print ``text`` (between progress bars) from the main process only."""
    if is_main():
        tqdm.write(text)


@contextlib.contextmanager
def session(threads: int, device_name: str, stage: str) -> Iterator[torch.device]:
    """The run settings of training stage ``stage`` (``--threads``, ``--device``), for one process or for each
    of the processes torchrun started; yields this process's device.

    Each of n processes gets ``threads`` // n CPU threads (at least 1). With
    several processes, ``auto``/``cuda`` means GPU ``LOCAL_RANK`` (one process per
    GPU of the job) and the process group (NCCL on GPUs, gloo on the CPU) lives
    while the block runs.
    """
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    torch.set_num_threads(max(1, threads // processes))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = _process_gpu(device, device_name, processes, stage)
    if processes == 1:
        yield device
        return
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield device
    finally:
        dist.destroy_process_group()


def _process_gpu(device: torch.device, device_name: str, processes: int, stage: str) -> torch.device:
    """The GPU of this process: ``device`` itself for one process, else GPU ``LOCAL_RANK``."""
    visible = torch.cuda.device_count()
    if processes == 1:
        if visible > 1 and device.index is None:
            tqdm.write(f"this job sees {visible} GPUs but trains on one; set resources.{stage}.tasks to {visible} "
                       "to train on all of them")
        return device
    if device.index is not None:
        raise UserError(f"device {device_name} names one GPU, but torchrun started {processes} processes (one per "
                        "GPU); use device auto or cuda")
    local = int(os.environ["LOCAL_RANK"])
    if local >= visible:
        raise UserError(f"resources.{stage}.tasks is {processes}, but the job sees {visible} GPU(s); set it to at "
                        f"most resources.{stage}.gpu (one process per GPU)")
    torch.cuda.set_device(local)
    return torch.device("cuda", local)


def share(batch_size: int, key: str) -> int:
    """This process's part of the global batch ``batch_size`` (params key ``key``), which must divide equally."""
    processes = world_size()
    if batch_size % processes:
        raise UserError(f"{key} is {batch_size}, which {processes} training processes cannot share equally; make it "
                        f"a multiple of {processes} or change the stage's tasks in the resources section")
    return batch_size // processes


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` as its training forward runs: in DDP with several processes (DDP broadcasts rank 0's weights
    and averages the gradients of every backward pass), else itself.

    ``find_unused_parameters``: the entropy bottleneck's quantiles get no
    gradient from the training loss, only from the auxiliary loss, which each
    process computes on the unwrapped model (the same value everywhere).
    """
    if world_size() == 1:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=True)


def _all_reduce(values: list[float], op: dist.ReduceOp) -> list[float]:
    if world_size() == 1:
        return values
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op)
    return tensor.tolist()


def any_process(flag: bool) -> bool:
    """Whether ``flag`` is set in any process (e.g. one got SIGTERM): the same answer in all of them."""
    return bool(_all_reduce([float(flag)], dist.ReduceOp.MAX)[0])


def job_seconds(seconds: float, device: torch.device) -> float:
    """The seconds of a step that count against the time budget, the same in every process: the sum of the
    processes' CPU times on the CPU (the job's CPU time, as one process's counts all its threads), the slowest
    process's wall time on a GPU."""
    return _all_reduce([seconds], dist.ReduceOp.SUM if device.type == "cpu" else dist.ReduceOp.MAX)[0]


def mean_over_processes(terms: dict[str, float]) -> dict[str, float]:
    """Every process's batch means ``terms`` (the same keys everywhere) averaged: the means of the global batch."""
    totals = _all_reduce(list(terms.values()), dist.ReduceOp.SUM)
    return {key: total / world_size() for key, total in zip(terms, totals)}


def gathered(value: Any) -> list[Any]:
    """``value`` of every process (picklable: plain types and CPU tensors), by rank."""
    if world_size() == 1:
        return [value]
    values: list[Any] = [None] * world_size()
    dist.all_gather_object(values, value)
    return values


def barrier() -> None:
    """Wait until every process gets here (e.g. until the main process has written a file)."""
    if world_size() > 1:
        dist.barrier()
