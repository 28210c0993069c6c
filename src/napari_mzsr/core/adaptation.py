"""MZSR meta-test (Algorithm 2) on tensors: adapt theta_M to one image, then infer.

The son ``I_son = degrade(I_LR, k, s)`` is upsampled back to the size of ``I_LR`` and the
network is fitted to map it onto ``I_LR`` with a few plain-SGD steps of the L1 loss on
the whole image, or on random patches of it (crop adaptation, for large images); the
adapted network then super-resolves ``I_LR`` itself.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
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


def patch_corners(
    shape: tuple[int, int],
    size: tuple[int, int],
    patches: int,
    steps: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Top-left corners of random patches for crop adaptation, uniform over the image.

    Parameters
    ----------
    shape : (int, int)
        Image height and width.
    size : (int, int)
        Patch height and width, at most ``shape``.
    patches : int
        Patches per step.
    steps : int
        Adaptation steps.
    rng : numpy.random.Generator
        Random source; the same seed gives the same corners.

    Returns
    -------
    ndarray of int64, shape (steps, patches, 2)
        ``(row, column)`` of each patch of each step.
    """
    if size[0] > shape[0] or size[1] > shape[1]:
        raise ValueError(f"patches of {size} do not fit in an image of {shape}")
    rows = rng.integers(0, shape[0] - size[0] + 1, size=(steps, patches))
    cols = rng.integers(0, shape[1] - size[1] + 1, size=(steps, patches))
    return np.stack([rows, cols], axis=-1)


def crop_patches(image: torch.Tensor, corners: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Patches of ``image`` (N, C, H, W) at ``corners`` (P, 2), stacked into one batch
    (P * N, C, size[0], size[1]), patch by patch."""
    return torch.cat([image[..., y : y + size[0], x : x + size[1]] for y, x in corners])


def adapt(
    net: MZSRNet,
    lr_image: torch.Tensor,
    kernel: torch.Tensor,
    scale: float,
    steps: int,
    lr_at: Callable[[int], float],
    degradation: str = "direct",
    autocast_dtype: torch.dtype | None = None,
    *,
    patch_size: int | None = None,
    patches: int = 4,
    rng: np.random.Generator | None = None,
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
    patch_size : int, optional
        Crop adaptation: each step fits ``patches`` random patches of this size
        (clipped to the image), each with its own son, instead of the whole image.
        Away from its border, a patch's son is the whole image's son of that area (up
        to the subsampling phase), so each step estimates the whole-image loss.
    patches : int
        Patches per step in crop adaptation.
    rng : numpy.random.Generator, optional
        Random source of the patch positions; required for crop adaptation.

    Yields
    ------
    StepReport
        After each update; stop iterating to cancel between steps.
    """
    if patch_size is None:
        son_up = _prepare(make_son(lr_image, kernel, scale, degradation))
        yield from _descend(
            net, itertools.repeat((son_up, _prepare(lr_image))), steps, lr_at, autocast_dtype
        )
        return
    if rng is None:
        raise ValueError("crop adaptation needs an explicit rng (numpy.random.Generator)")
    shape = (lr_image.shape[-2], lr_image.shape[-1])
    size = (min(patch_size, shape[0]), min(patch_size, shape[1]))
    corners = patch_corners(shape, size, patches, steps, rng)
    batches = (crop_patches(lr_image, step_corners, size) for step_corners in corners)
    yield from adapt_on_patches(
        net, batches, kernel, scale, steps, lr_at, degradation, autocast_dtype
    )


def adapt_on_patches(
    net: MZSRNet,
    batches: Iterable[torch.Tensor],
    kernel: torch.Tensor,
    scale: float,
    steps: int,
    lr_at: Callable[[int], float],
    degradation: str = "direct",
    autocast_dtype: torch.dtype | None = None,
) -> Iterator[StepReport]:
    """Adapt ``net`` in place with one batch of LR patches per step (crop adaptation).

    ``batches`` yields ``steps`` tensors (B, C, h, w), float32 in [0, 1], on the
    network's device; each step fits the sons of its batch (see :func:`adapt`). Read
    lazily, so that the patches of a huge or lazily loaded image are read step by step.
    """
    pairs = (
        (_prepare(make_son(batch, kernel, scale, degradation)), _prepare(batch))
        for batch in batches
    )
    yield from _descend(net, pairs, steps, lr_at, autocast_dtype)


def _descend(
    net: MZSRNet,
    pairs: Iterator[tuple[torch.Tensor, torch.Tensor]],
    steps: int,
    lr_at: Callable[[int], float],
    autocast_dtype: torch.dtype | None,
) -> Iterator[StepReport]:
    """Plain SGD on ``L1(net(son_up), target)``, one ``(son_up, target)`` pair per step."""
    _prepare_net(net)
    device = next(net.parameters()).device
    params = [p for p in net.parameters() if p.requires_grad]
    net.train()
    # Not strict: whole-image adaptation repeats one pair endlessly.
    for step, (son_up, target) in zip(range(steps), pairs, strict=False):
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
