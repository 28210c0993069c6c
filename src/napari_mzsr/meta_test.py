"""MZSR meta-test (Algorithm 2) on tensors: adapt theta_M to one image, then infer.

The son ``I_son = degrade(I_LR, k, s)`` is upsampled back to the size of ``I_LR`` and the
network is fitted to map it onto ``I_LR`` with a few plain-SGD steps of the L1 loss on
the whole image; the adapted network then super-resolves ``I_LR`` itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from .degradation import degrade_tensor
from .network import MZSRNet
from .resize import imresize_tensor


class Cancelled(RuntimeError):
    """Raised when a cancel check asks the meta-test to stop."""


@dataclass
class StepReport:
    """Progress of one adaptation step (0-based ``step`` of ``steps``)."""

    step: int
    steps: int
    lr: float
    loss_tensor: torch.Tensor

    @property
    def loss(self) -> float:
        """Self-supervised L1 loss before this step's update (synchronises the device)."""
        return float(self.loss_tensor)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _prepare(x: torch.Tensor) -> torch.Tensor:
    # oneDNN's convolutions are faster in channels-last layout on CPU, in every precision.
    if x.device.type == "cpu":
        return x.contiguous(memory_format=torch.channels_last)
    return x


def _prepare_net(net: MZSRNet) -> None:
    if next(net.parameters()).device.type == "cpu":
        net.to(memory_format=torch.channels_last)


def make_son(
    lr_image: torch.Tensor, kernel: torch.Tensor, scale: float, degradation: str
) -> torch.Tensor:
    """The son ``degrade(I_LR)``, clipped to [0, 1] and upsampled back to the size of
    ``I_LR`` (the network's training input)."""
    son = degrade_tensor(lr_image, kernel, scale, degradation).clamp(0, 1)
    return imresize_tensor(son, scale, output_shape=lr_image.shape[-2:])


def adapt(
    net: MZSRNet,
    lr_image: torch.Tensor,
    kernel: torch.Tensor,
    scale: float,
    steps: int,
    lr_at: Callable[[int], float],
    degradation: str = "direct",
    autocast_dtype: torch.dtype | None = None,
) -> Iterator[StepReport]:
    """Adapt ``net`` in place to ``lr_image``, yielding after every SGD step.

    Parameters
    ----------
    net : MZSRNet
        Network holding theta_M (float32); it is updated in place.
    lr_image : Tensor, shape (N, C, h, w), float32 in [0, 1]
        The low-resolution input(s), on the network's device. All N images share one
        adaptation (one loss over the batch).
    kernel : Tensor, shape (k, k)
        Blur kernel in the project's convention.
    scale : float
        Super-resolution factor.
    steps : int
        Number of gradient steps (0 leaves ``net`` unchanged).
    lr_at : callable
        Learning rate of each step.
    degradation : {"direct", "bicubic"}
        How the son is subsampled.
    autocast_dtype : torch.dtype or None
        Autocast dtype for the forward pass; master weights stay float32.

    Yields
    ------
    StepReport
        After each update; stop iterating to cancel between steps.
    """
    device = lr_image.device
    son_up = _prepare(make_son(lr_image, kernel, scale, degradation))
    target = _prepare(lr_image)
    _prepare_net(net)
    params = [p for p in net.parameters() if p.requires_grad]
    net.train()
    for step in range(steps):
        with _autocast(device, autocast_dtype):
            out = net(son_up)
        loss = (out.float() - target).abs().mean()
        grads = torch.autograd.grad(loss, params)
        lr = lr_at(step)
        with torch.no_grad():
            torch._foreach_add_(params, grads, alpha=-lr)
        yield StepReport(step, steps, lr, loss.detach())


def infer(
    net: MZSRNet,
    lr_image: torch.Tensor,
    scale: float | tuple[float, float],
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Super-resolve ``lr_image`` (N, C, h, w) with ``net``: ``net(imresize(x, scale))``,
    clipped to [0, 1], float32."""
    device = lr_image.device
    _prepare_net(net)
    net.eval()
    with torch.no_grad(), _autocast(device, autocast_dtype):
        up = _prepare(imresize_tensor(lr_image, scale))
        out = net(up)
    return out.float().clamp_(0, 1).contiguous()
