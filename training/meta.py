"""Meta-transfer learning (REFERENCE section 5), written functionally.

For each task (a kernel from the paper's distribution, optionally widened to sharper
kernels by ``kernel_variance_min``, and a scale), support and query
sets of external HR patches are degraded with that kernel. The inner loop takes plain
SGD steps on the support L1 loss with fast weights passed through
``torch.func.functional_call``; the gradients are kept differentiable (second order)
unless ``first_order`` is set. The outer loss is the query L1 loss after every inner
step, weighted by the annealed MAML++ schedule (:func:`training.tasks.multi_step_weights`),
and Adam updates the initial point theta_M. Tasks are split across processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.func import functional_call

from napari_mzsr.io.model_file import load_model

from . import distributed, export
from .session import Session, open_session, restore, run_loop
from .tasks import make_pairs, multi_step_weights, sample_kernel


def task_loss(
    session: Session, net: torch.nn.Module, weights: torch.Tensor
) -> tuple[torch.Tensor, float]:
    """Sample one task and return its weighted multi-step query loss (differentiable
    with respect to ``net``'s parameters) and its query loss after the last step."""
    cfg, recipe, rng = session.settings, session.recipe, session.rng
    scale = float(recipe["scales"][int(rng.integers(len(recipe["scales"])))])
    kernel = sample_kernel(rng, scale, cfg["kernel_variance_min"])
    kernel = torch.from_numpy(kernel).float().to(session.device)
    count = cfg["support"] + cfg["query"]
    hr = torch.from_numpy(session.bank.sample(rng, count, cfg["patch"])).to(session.device)
    x = session.prepare(make_pairs(hr, scale, kernel, recipe["degradation"]))
    xs, xq = x[: cfg["support"]], x[cfg["support"] :]
    ys, yq = hr[: cfg["support"]], hr[cfg["support"] :]

    fast = dict(net.named_parameters())
    total = torch.zeros((), device=session.device)
    for j in range(cfg["inner_steps"]):
        with session.autocast():
            out = functional_call(net, fast, (xs,))
        support_loss = (out.float() - ys).abs().mean()
        grads = torch.autograd.grad(
            support_loss,
            tuple(fast.values()),
            create_graph=not cfg["first_order"],
            # First order: the support graph is not differentiated through, but the
            # query losses still backpropagate through the fast weights' update chain.
            retain_graph=True,
        )
        fast = {
            name: w - cfg["inner_lr"] * g for (name, w), g in zip(fast.items(), grads, strict=True)
        }
        with session.autocast():
            out = functional_call(net, fast, (xq,))
        query_loss = (out.float() - yq).abs().mean()
        total = total + weights[j] * query_loss
    return total, query_loss.item()


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
        :func:`napari_mzsr.load_model` accepts with the recipe's network shape.
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
    model = load_model(pretrained)
    shape = (recipe["channels"], recipe["network"]["features"], recipe["network"]["layers"])
    if (model.info.channels, model.info.features, model.info.layers) != shape:
        raise ValueError(f"{pretrained} does not match the recipe's network {shape}")
    session.provenance["pretrained"] = {"file": str(pretrained), "training": model.info.training}
    net = session.prepare_net(model.network())
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg["meta_lr"])
    resumed = restore(session, resume, net, optimizer) if resume else None
    distributed.broadcast_parameters(net, ctx)
    # Tasks are dealt round-robin; each rank's share of the loss is divided by the
    # total number of tasks, so the summed gradients are the meta-batch mean.
    my_tasks = len(range(ctx.rank, cfg["tasks"], ctx.world))

    def step(index: int) -> dict[str, float]:
        w = multi_step_weights(index, cfg["inner_steps"], cfg["anneal_iterations"])
        weights = torch.tensor(w, dtype=torch.float32, device=session.device)
        optimizer.zero_grad(set_to_none=True)
        meta_loss = last_loss = 0.0
        for _ in range(my_tasks):
            loss, last = task_loss(session, net, weights)
            # Backward per task frees its graph before the next task is built.
            (loss / cfg["tasks"]).backward()
            meta_loss += loss.item()
            last_loss += last
        distributed.all_reduce_gradients(net, ctx, average=False)
        optimizer.step()
        return {
            "loss": distributed.all_reduce_mean(last_loss / max(my_tasks, 1), ctx, session.device),
            "meta_loss": distributed.all_reduce_mean(
                meta_loss / max(my_tasks, 1), ctx, session.device
            ),
            "last_weight": float(w[-1]),
        }

    payload = run_loop(session, net, optimizer, step, cfg["iterations"], resumed)
    return export.write(payload, session.out / f"{recipe['name']}.pt") if ctx.main else None
