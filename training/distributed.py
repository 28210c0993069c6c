"""Data parallelism across processes started by ``torchrun``.

Every rank holds the same weights and optimizer; each computes gradients on its own
share of the batch (pretraining) or of the tasks (meta-learning), and the gradients
are summed or averaged across ranks before every optimizer step. A plain all-reduce
is used instead of ``DistributedDataParallel`` because the meta-learning step calls
the network functionally (``torch.func.functional_call``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    """This process's place in the job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Whether this process writes logs, checkpoints and outputs."""
        return self.rank == 0


def init(device: torch.device) -> Context:
    """Join the process group described by torchrun's environment, if any.

    Uses NCCL for CUDA devices and gloo otherwise.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Context()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Context(dist.get_rank(), dist.get_world_size())


def local_device(device: torch.device) -> torch.device:
    """One CUDA device per process under torchrun (``LOCAL_RANK``)."""
    if device.type == "cuda" and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    return device


def broadcast_parameters(module: torch.nn.Module, ctx: Context) -> None:
    """Copy rank 0's parameters to every rank."""
    if ctx.world > 1:
        for p in module.parameters():
            dist.broadcast(p.data, 0)


def all_reduce_gradients(module: torch.nn.Module, ctx: Context, average: bool) -> None:
    """Sum (or average) the ``.grad`` of every parameter across ranks."""
    if ctx.world == 1:
        return
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            if average:
                p.grad.div_(ctx.world)


def all_reduce_mean(value: float, ctx: Context, device: torch.device) -> float:
    """Mean of a scalar across ranks."""
    if ctx.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t) / ctx.world


def digest(module: torch.nn.Module) -> str:
    """SHA-256 of the parameters' bytes (to prove that ranks agree)."""
    h = hashlib.sha256()
    for name, p in module.state_dict().items():
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def gather(obj: object, ctx: Context) -> list[object]:
    """``obj`` from every rank, in rank order."""
    if ctx.world == 1:
        return [obj]
    out: list[object] = [None] * ctx.world
    dist.all_gather_object(out, obj)
    return out


def shutdown() -> None:
    """Leave the process group (no-op when not distributed)."""
    if dist.is_initialized():
        # Leave together: a rank that tears gloo down while its peer is still in the
        # last collective can abort at exit ("terminate called without an active
        # exception"), seen once in CI.
        dist.barrier()
        dist.destroy_process_group()
