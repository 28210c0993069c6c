"""Large-scale pretraining (REFERENCE section 5): MATLAB-bicubic LR/HR pairs at the
model's scale(s), L1 loss, Adam with the learning rate halved at fixed intervals
down to a floor.

With ``kernels = "meta"`` the pairs are degraded instead like the meta-learning tasks,
each patch with its own kernel from the meta stage's distribution: a cheap, first-order
way to learn the kernel distribution before meta-learning.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch.autograd.profiler import record_function

from napari_mzsr.core.network import MZSRNet

from . import distributed, export
from .session import Session, open_session, restore, run_loop
from .tasks import make_pairs, sample_kernel
from .transfer import start_from


def learning_rate(step: int, cfg: dict[str, Any]) -> float:
    """``lr / 2^(step // lr_halve_every)``, not below ``lr_min``."""
    return max(cfg["lr"] * 0.5 ** (step // cfg["lr_halve_every"]), cfg["lr_min"])


def sample_batch(session: Session, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` training pairs at one random scale of the recipe: network inputs
    (count, C, P, P), prepared for the device, and their HR targets."""
    cfg, recipe, rng = session.settings, session.recipe, session.rng
    scale = float(recipe["scales"][int(rng.integers(len(recipe["scales"])))])
    patches = session.bank.sample(rng, count, cfg["patch"])
    hr = torch.from_numpy(patches).to(session.device)
    if cfg["kernels"] == "none":
        return session.prepare(make_pairs(hr, scale)), hr
    low = recipe["meta"]["kernel_variance_min"]
    pairs = []
    for patch in hr.split(1):
        kernel = torch.from_numpy(sample_kernel(rng, scale, low)).float().to(session.device)
        pairs.append(make_pairs(patch, scale, kernel, recipe["degradation"]))
    return session.prepare(torch.cat(pairs)), hr


def train_step(
    net: torch.nn.Module,
    x: torch.Tensor,
    hr: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
    reduce: Callable[[], None] = lambda: None,
) -> torch.Tensor:
    """One Adam step on the L1 loss of ``net(x)`` against ``hr``; returns the loss
    (detached). ``reduce`` runs between backward and the update (gradient all-reduce)."""
    with record_function("forward"), autocast():
        out = net(x)
    loss = (out.float() - hr).abs().mean()
    optimizer.zero_grad(set_to_none=True)
    with record_function("backward"):
        loss.backward()
    reduce()
    with record_function("optimizer"):
        optimizer.step()
    return loss.detach()


def run(
    recipe: dict[str, Any],
    data_dir: str | Path | None = None,
    val_dir: str | Path | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    device: str | None = None,
    init: str | Path | None = None,
) -> Path | None:
    """Pretrain and write ``<out>/pretrained.pt`` (a theta_M file).

    Parameters are those of :func:`training.session.open_session`; ``resume`` is a
    pretraining checkpoint to continue exactly; ``init`` a theta_M file to start from
    instead of random weights (see :func:`training.transfer.start_from`).

    Returns
    -------
    Path or None
        The written file on the main process, ``None`` on the others.
    """
    session = open_session(recipe, "pretrain", data_dir, val_dir, out, device)
    cfg, ctx = session.settings, session.ctx
    if cfg["batch"] % ctx.world:
        raise ValueError(f"batch {cfg['batch']} does not split over {ctx.world} processes")
    if init and not resume:
        net, session.provenance["init"] = start_from(init, recipe["channels"], **recipe["network"])
    else:
        net = MZSRNet(recipe["channels"], **recipe["network"])
    net = session.prepare_net(net)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    resumed = restore(session, resume, net, optimizer) if resume else None
    distributed.broadcast_parameters(net, ctx)

    def step(index: int) -> dict[str, float]:
        lr = learning_rate(index, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, hr = sample_batch(session, cfg["batch"] // ctx.world)
        loss = train_step(
            net,
            x,
            hr,
            optimizer,
            session.autocast,
            lambda: distributed.all_reduce_gradients(net, ctx, average=True),
        )
        return {"loss": distributed.all_reduce_mean(loss.item(), ctx, session.device), "lr": lr}

    payload = run_loop(session, net, optimizer, step, cfg["steps"], resumed)
    return export.write(payload, session.out / "pretrained.pt") if ctx.main else None
