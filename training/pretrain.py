"""Large-scale pretraining (REFERENCE section 5): MATLAB-bicubic LR/HR pairs at the
model's scale(s), L1 loss, Adam with the learning rate halved at fixed intervals
down to a floor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from napari_mzsr.core.network import MZSRNet
from napari_mzsr.io.model_file import load_model

from . import distributed, export
from .session import open_session, restore, run_loop
from .tasks import make_pairs
from .transfer import initial_state


def learning_rate(step: int, cfg: dict[str, Any]) -> float:
    """``lr / 2^(step // lr_halve_every)``, not below ``lr_min``."""
    return max(cfg["lr"] * 0.5 ** (step // cfg["lr_halve_every"]), cfg["lr_min"])


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
    instead of random weights (see :func:`training.transfer.initial_state`).

    Returns
    -------
    Path or None
        The written file on the main process, ``None`` on the others.
    """
    session = open_session(recipe, "pretrain", data_dir, val_dir, out, device)
    cfg, ctx = session.settings, session.ctx
    if cfg["batch"] % ctx.world:
        raise ValueError(f"batch {cfg['batch']} does not split over {ctx.world} processes")
    net = MZSRNet(recipe["channels"], **recipe["network"])
    if init and not resume:
        net.load_state_dict(initial_state(init, recipe["channels"], **recipe["network"]))
        session.provenance["init"] = {"file": str(init), "training": load_model(init).info.training}
    net = session.prepare_net(net)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    resumed = restore(session, resume, net, optimizer) if resume else None
    distributed.broadcast_parameters(net, ctx)
    scales = recipe["scales"]

    def step(index: int) -> dict[str, float]:
        lr = learning_rate(index, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        scale = float(scales[int(session.rng.integers(len(scales)))])
        patches = session.bank.sample(session.rng, cfg["batch"] // ctx.world, cfg["patch"])
        hr = torch.from_numpy(patches).to(session.device)
        x = session.prepare(make_pairs(hr, scale))
        with session.autocast():
            out = net(x)
        loss = (out.float() - hr).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        distributed.all_reduce_gradients(net, ctx, average=True)
        optimizer.step()
        return {"loss": distributed.all_reduce_mean(loss.item(), ctx, session.device), "lr": lr}

    payload = run_loop(session, net, optimizer, step, cfg["steps"], resumed)
    return export.write(payload, session.out / "pretrained.pt") if ctx.main else None
