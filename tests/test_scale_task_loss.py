"""training/scale_tasks.task_loss is training/meta.task_loss with the task's factors
passed to the scale-aware network: the same gradients as its former own inner loop."""

from __future__ import annotations

from contextlib import nullcontext
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.func import functional_call

from napari_mzsr.core.scale_aware import ScaleAwareNet
from training import scale_tasks

pytestmark = pytest.mark.usefixtures("one_thread")


class _Bank:
    def __init__(self, patches: np.ndarray) -> None:
        self.patches = patches

    def sample(self, rng: np.random.Generator, count: int, size: int) -> np.ndarray:
        return self.patches[:count]


def _session(first_order: bool, seen: list) -> SimpleNamespace:
    patches = np.random.default_rng(1).random((4, 3, 16, 16)).astype(np.float32)
    cfg = {"inner_steps": 2, "inner_lr": 0.3, "first_order": first_order, "support": 2,
           "query": 2, "patch": 16, "kernel_variance_min": 0.2,
           "second_order_last_only": False}  # fmt: skip
    recipe = {"scales": [], "scale_tasks": {"pairs": [[2.0, 3.0]], "plain_share": 0.0},
              "degradation": "bicubic"}  # fmt: skip
    return SimpleNamespace(
        settings=cfg,
        recipe=recipe,
        rng=np.random.default_rng(0),
        bank=_Bank(patches),
        device=torch.device("cpu"),
        prepare=lambda x: seen.append(x) or x,
        autocast=nullcontext,
    )


def _former_loop(net, x, hr, pair, weights, cfg):
    """scale_tasks' own inner loop before it reused meta.task_loss."""
    xs, xq, ys, yq = x[:2], x[2:], hr[:2], hr[2:]
    fast = dict(net.named_parameters())
    total = torch.zeros(())
    for j in range(cfg["inner_steps"]):
        out = functional_call(net, fast, (xs,), {"scale": pair})
        support = (out.float() - ys).abs().mean()
        grads = torch.autograd.grad(
            support, tuple(fast.values()), create_graph=not cfg["first_order"], retain_graph=True
        )
        fast = {k: w - cfg["inner_lr"] * g for (k, w), g in zip(fast.items(), grads, strict=True)}
        query = (functional_call(net, fast, (xq,), {"scale": pair}).float() - yq).abs().mean()
        total = total + weights[j] * query
    return total, query.item()


@pytest.mark.parametrize("first_order", [False, True])
def test_scale_task_loss_has_the_former_gradients(first_order):
    net = ScaleAwareNet(3, 4, 3, adaptation_layers=[1], generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for name, value in net.named_parameters():
            if name.endswith("experts"):
                value.normal_(0, 0.1, generator=torch.Generator().manual_seed(3))
    weights = torch.tensor([0.3, 0.7])
    params = list(net.parameters())
    seen: list = []
    session = _session(first_order, seen)
    loss, last, pair = scale_tasks.task_loss(session, net, weights)
    grads = torch.autograd.grad(loss, params)
    hr = torch.from_numpy(session.bank.patches)
    expected_loss, expected_last = _former_loop(net, seen[0], hr, pair, weights, session.settings)
    expected = torch.autograd.grad(expected_loss, params)
    assert pair == (2.0, 3.0) and last == pytest.approx(expected_last, rel=1e-6)
    torch.testing.assert_close(loss, expected_loss, rtol=1e-6, atol=0)
    for g, e in zip(grads, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-7)
