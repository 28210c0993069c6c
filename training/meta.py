"""Meta-transfer learning (REFERENCE section 5), written functionally.

For each task (a kernel from the paper's distribution, optionally widened to sharper
kernels by ``kernel_variance_min`` or, for a share ``identity_kernel_share`` of the
tasks, no blur at all, and a scale), support and query
sets of external HR patches are degraded with that kernel. The inner loop takes plain
SGD steps on the support L1 loss with fast weights passed through
``torch.func.functional_call``; the gradients are kept differentiable (second order)
unless ``first_order`` is set, or only the last one with ``second_order_last_only``
(about a quarter of the second-order cost at 5 steps). The outer loss is the query
L1 loss after every inner step, weighted by the annealed MAML++ schedule
(:func:`training.tasks.multi_step_weights`), and Adam updates the initial point
theta_M, with an optional warm-up and cosine decay of its learning rate
(:func:`meta_learning_rate`). Tasks are split across processes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.autograd.profiler import record_function
from torch.func import functional_call

from . import distributed, export
from .session import Session, open_session, restore, run_loop
from .tasks import make_pairs, multi_step_weights, task_kernel
from .transfer import start_from


@dataclass
class Task:
    """One meta-learning task's pairs, ready for the network: inputs (N, C, P, P)
    and their HR targets, for the support and the query set."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor


def sample_task(session: Session) -> Task:
    """Draw a task: a scale and a kernel from the recipe's distribution, and support
    and query sets of external HR patches degraded with that kernel."""
    cfg, recipe, rng = session.settings, session.recipe, session.rng
    scale = float(recipe["scales"][int(rng.integers(len(recipe["scales"])))])
    kernel = task_kernel(rng, scale, cfg["kernel_variance_min"], cfg["identity_kernel_share"])
    kernel = torch.from_numpy(kernel).float().to(session.device)
    count = cfg["support"] + cfg["query"]
    hr = torch.from_numpy(session.bank.sample(rng, count, cfg["patch"])).to(session.device)
    x = session.prepare(make_pairs(hr, scale, kernel, recipe["degradation"]))
    n = cfg["support"]
    return Task(x[:n], hr[:n], x[n:], hr[n:])


def task_loss(
    net: torch.nn.Module,
    task: Task,
    weights: torch.Tensor,
    cfg: dict[str, Any],
    autocast: Callable[[], AbstractContextManager] = nullcontext,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A task's weighted multi-step query loss (differentiable with respect to
    ``net``'s parameters) and its query loss after the last step (detached).

    ``cfg`` is the recipe's ``meta`` table; ``autocast`` a context for the forward
    passes; ``forward_kwargs`` extra arguments of ``net`` (a scale-aware net's scale).
    Inner gradients are differentiated (second order) unless ``first_order``, and only
    at the last inner step when ``second_order_last_only``.
    """
    steps = cfg["inner_steps"]
    fast = dict(net.named_parameters())
    total = torch.zeros((), device=weights.device)
    for j in range(steps):
        second = not cfg["first_order"] and (j == steps - 1 or not cfg["second_order_last_only"])
        with record_function("inner-forward"), autocast():
            out = functional_call(net, fast, (task.support_x,), forward_kwargs)
        support_loss = (out.float() - task.support_y).abs().mean()
        # Without create_graph the inner gradient is a constant: the query losses still
        # backpropagate through the update chain, but not through the support graph.
        with record_function("inner-grad"):
            grads = torch.autograd.grad(support_loss, tuple(fast.values()), create_graph=second)
        fast = {
            name: w - cfg["inner_lr"] * g for (name, w), g in zip(fast.items(), grads, strict=True)
        }
        with record_function("query-forward"), autocast():
            out = functional_call(net, fast, (task.query_x,), forward_kwargs)
        query_loss = (out.float() - task.query_y).abs().mean()
        total = total + weights[j] * query_loss
    return total, query_loss.detach()


def meta_learning_rate(step: int, cfg: dict[str, Any]) -> float:
    """Meta learning rate at ``step``: ``meta_lr``, reached linearly over the first
    ``meta_lr_warmup`` iterations, then constant or, with ``meta_lr_decay = "cosine"``,
    decayed along a half cosine to ``meta_lr_min`` at ``iterations``."""
    lr, warmup = cfg["meta_lr"], cfg["meta_lr_warmup"]
    if step < warmup:
        return lr * (step + 1) / warmup
    if cfg["meta_lr_decay"] == "none":
        return lr
    progress = min((step - warmup) / max(cfg["iterations"] - warmup, 1), 1.0)
    low = cfg["meta_lr_min"]
    return low + 0.5 * (lr - low) * (1.0 + math.cos(math.pi * progress))


def run(
    recipe: dict[str, Any],
    pretrained: str | Path,
    data_dir: str | Path | None = None,
    val_dir: str | Path | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    device: str | None = None,
) -> Path | None:
    """Meta-train from ``pretrained`` and write ``<out>/<name>.pt`` (theta_M).

    Parameters
    ----------
    recipe : dict
        From :func:`training.recipe.load_recipe`.
    pretrained : path
        A theta_M file from the pretraining stage (``pretrained.pt``), or any file
        :func:`napari_mzsr.load_model` accepts with the recipe's hidden shape; a colour
        file starts a one-channel recipe folded (see
        :func:`training.transfer.convert_channels`), e.g. a grey model from the longer
        meta-learned colour one.
    data_dir, val_dir, out, device : optional
        See :func:`training.session.open_session`.
    resume : path, optional
        A meta-learning checkpoint to continue exactly.

    Returns
    -------
    Path or None
        The written file on the main process, ``None`` on the others.
    """
    session = open_session(recipe, "meta", data_dir, val_dir, out, device)
    cfg, ctx = session.settings, session.ctx
    net, session.provenance["pretrained"] = start_from(
        pretrained, recipe["channels"], **recipe["network"]
    )
    net = session.prepare_net(net)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg["meta_lr"])
    resumed = restore(session, resume, net, optimizer) if resume else None
    distributed.broadcast_parameters(net, ctx)
    # Tasks are dealt round-robin; each rank's share of the loss is divided by the
    # total number of tasks, so the summed gradients are the meta-batch mean.
    my_tasks = len(range(ctx.rank, cfg["tasks"], ctx.world))

    def step(index: int) -> dict[str, float]:
        w = multi_step_weights(index, cfg["inner_steps"], cfg["anneal_iterations"])
        weights = torch.tensor(w, dtype=torch.float32, device=session.device)
        lr = meta_learning_rate(index, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        meta_loss = last_loss = 0.0
        for _ in range(my_tasks):
            loss, last = task_loss(net, sample_task(session), weights, cfg, session.autocast)
            # Backward per task frees its graph before the next task is built.
            (loss / cfg["tasks"]).backward()
            meta_loss += loss.item()
            last_loss += last.item()
        distributed.all_reduce_gradients(net, ctx, average=False)
        optimizer.step()
        return {
            "loss": distributed.all_reduce_mean(last_loss / max(my_tasks, 1), ctx, session.device),
            "meta_loss": distributed.all_reduce_mean(
                meta_loss / max(my_tasks, 1), ctx, session.device
            ),
            "last_weight": float(w[-1]),
            "meta_lr": lr,
        }

    payload = run_loop(session, net, optimizer, step, cfg["iterations"], resumed)
    return export.write(payload, session.out / f"{recipe['name']}.pt") if ctx.main else None
