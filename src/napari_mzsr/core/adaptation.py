"""MZSR meta-test (Algorithm 2) on tensors: adapt theta_M to one image, then infer.

The son ``I_son = degrade(I_LR, k, s)`` is upsampled back to the size of ``I_LR`` and the
network is fitted to map it onto ``I_LR`` with a few plain-SGD steps of the L1 loss on
the whole image, or on random patches of it (crop adaptation); the adapted network then
super-resolves ``I_LR`` itself.

The son loss never rises by more than :data:`RISE_TOLERANCE`. The L1 loss's gradient
has the same size whatever the image's contrast, so on a smooth or low-contrast image a
step of the model's learning rate overshoots: the result's mean swings by about 1% of
the range from step to step. A step that raises the son loss more than that (measured
on the same pixels before and after) is therefore undone and the learning rate of the
following steps halved; after
:data:`MAX_REJECTIONS` refused steps in a row the adaptation stops early. On natural
images the loss falls at every step and nothing changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np
import torch

from .degradation import degrade_tensor
from .devices import memory_format
from .jpeg import jpeg_tensor
from .network import MZSRNet
from .noise import NoiseModel
from .resize import imresize_tensor

# Refused steps in a row after which adaptation stops: the loss is at a minimum that
# halving the rate this often does not get past.
MAX_REJECTIONS = 3
# Relative rise of the son loss that a step may cause and still be kept. Measured with
# direct-x2, x2, 10 steps (Set5 at g^d_2.0, g^d_ani, g^b_1.3; 13 Set14 crops of 96 px LR;
# a smooth 200 x 300 uint16 image; AMD EPYC, 2026-12-01): 0.05 and 0.01 were never below
# a strict rule (0) and up to 0.26 dB above it on one crop, with the same mean on the
# smooth image (+1.4 counts); no rule at all also gained (up to 0.47 dB) but let that
# mean drift to -8.2 counts.
RISE_TOLERANCE = 0.05
Clamp = tuple[float, float]


class Cancelled(RuntimeError):
    """Raised when a cancel check asks a run to stop."""


@dataclass
class StepReport:
    """Progress of one adaptation step (0-based ``step`` of ``steps``).

    Attributes
    ----------
    step, steps : int
        This step and the steps planned.
    learning_rate : float
        Rate the step was taken with.
    loss_tensor : Tensor
        Son L1 loss before the step (a 0-d tensor; :attr:`loss` reads it).
    accepted : bool
        False when the step raised the son loss and was undone.
    stopped : bool
        True on the last report of an adaptation that stopped early.
    """

    step: int
    steps: int
    learning_rate: float
    loss_tensor: torch.Tensor
    accepted: bool = True
    stopped: bool = False

    @property
    def loss(self) -> float:
        """Son L1 loss before this step (synchronises the device)."""
        return float(self.loss_tensor)


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast context for ``dtype`` on ``device``; a no-op for float32 (None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def prepare(x: torch.Tensor, *, training: bool = False) -> torch.Tensor:
    """``x`` in the layout the network runs fastest in on its device, for training
    (forward and backward) or inference (see :func:`~.devices.memory_format`)."""
    return x.contiguous(memory_format=memory_format(x.device, training=training))


def prepare_net(net: MZSRNet, *, training: bool = False) -> None:
    """Put ``net`` in the layout :func:`prepare` gives its inputs."""
    device = next(net.parameters()).device
    net.to(memory_format=memory_format(device, training=training))


def make_son(
    image: torch.Tensor,
    kernel: torch.Tensor,
    scale: float | tuple[float, float],
    degradation: str,
    *,
    clamp: Clamp = (0.0, 1.0),
    noise: NoiseModel | None = None,
    generator: torch.Generator | None = None,
    jpeg_quality: int | None = None,
) -> torch.Tensor:
    """The son ``degrade(image)``, with the noise of ``noise`` added on its own grid,
    clipped to ``clamp``, saved as JPEG at ``jpeg_quality`` if given, and upsampled back
    to the size of ``image`` (the network's input during adaptation).

    Parameters
    ----------
    image : Tensor, shape (N, C, h, w), float32
        Low-resolution image(s) in network units.
    kernel : Tensor, shape (k, k)
        Blur kernel in the project's convention.
    scale : float or (float, float)
        Super-resolution factor, per axis if a pair.
    degradation : {"direct", "bicubic", "area"}
        How the son is subsampled.
    clamp : (float, float)
        Range of valid values in network units.
    noise : NoiseModel, optional
        Noise added to the son (network units; its variance grows with the son's
        intensity): the noise the image has and its son lost by the downscale, so that
        the network learns to leave the image's noise alone instead of sharpening it
        (ZSSR adds noise to its sons for the same reason).
    generator : torch.Generator, optional
        Source of that noise (on the image's device).
    jpeg_quality : int, optional
        JPEG quality the son is saved at, on 8-bit levels of ``clamp`` (the image's own
        compression, :mod:`napari_mzsr.core.jpeg`); None: not compressed.
    """
    son = degrade_tensor(image, kernel, scale, degradation)
    if noise is not None:
        std = (noise.gain * son + noise.floor).clamp_min(0).sqrt()
        son = son + std * torch.randn(
            son.shape, generator=generator, device=son.device, dtype=son.dtype
        )
    son = son.clamp(*clamp)
    if jpeg_quality is not None:
        low, high = clamp
        son = jpeg_tensor((son - low) / (high - low), jpeg_quality) * (high - low) + low
    return imresize_tensor(son, scale, output_shape=image.shape[-2:])


def son_loss(
    net: MZSRNet, son_up: torch.Tensor, target: torch.Tensor, autocast_dtype: torch.dtype | None
) -> torch.Tensor:
    """``L1(net(son_up), target)`` without gradients."""
    with torch.no_grad(), autocast(son_up.device, autocast_dtype):
        out = net(son_up)
    return (out.float() - target).abs().mean()


def adapt(
    net: MZSRNet,
    batch_at: Callable[[int], torch.Tensor],
    kernel: torch.Tensor,
    scale: float | tuple[float, float],
    *,
    steps: int,
    learning_rate: Callable[[int], float],
    degradation: str = "direct",
    autocast_dtype: torch.dtype | None = None,
    whole_image: bool = True,
    clamp: Clamp = (0.0, 1.0),
    noise: NoiseModel | None = None,
    generator: torch.Generator | None = None,
    jpeg_quality: int | None = None,
) -> Generator[StepReport, None, int]:
    """Adapt ``net`` in place, yielding a :class:`StepReport` after every step and
    returning the number of steps kept (``StopIteration.value``).

    Parameters
    ----------
    net : MZSRNet
        Network holding theta_M (float32); updated in place.
    batch_at : callable(step) -> Tensor
        The low-resolution pixels of a step, (B, C, h, w) float32 in network units, on
        the network's device: the whole image (then called once) or that step's random
        patches, drawn when the step comes.
    kernel : Tensor, shape (k, k)
        Blur kernel in the project's convention.
    scale : float or (float, float)
        Super-resolution factor, per axis if a pair.
    steps : int
        Gradient steps planned (0 leaves ``net`` unchanged).
    learning_rate : callable(step) -> float
        The model's rate of each step; halved after each refused step.
    degradation : {"direct", "bicubic", "area"}
        How the son is subsampled.
    autocast_dtype : torch.dtype or None
        Autocast dtype of the forward passes; weights stay float32.
    whole_image : bool
        Whether ``batch_at`` returns the same pixels at every step: then each step's
        loss tells whether the step before helped, for free (one forward pass more
        after the last step). Otherwise the loss is measured again on the same patches
        after each step (one forward pass more per step).
    clamp : (float, float)
        Range of valid values in network units (see :func:`make_son`).
    noise : NoiseModel, optional
        Noise added to every son (see :func:`make_son`); drawn again for every new
        batch from ``generator``.
    generator : torch.Generator, optional
        Source of that noise (on the network's device).
    jpeg_quality : int, optional
        JPEG quality of every son (see :func:`make_son`).

    Yields
    ------
    StepReport
        After each step; stop iterating to cancel between steps.
    """
    prepare_net(net, training=True)
    net.train()
    params = [p for p in net.parameters() if p.requires_grad]
    pair = None
    rate_factor, rejected, kept = 1.0, 0, 0
    last_loss = saved = None
    for step in range(steps):
        if pair is None or not whole_image:
            image = batch_at(step)
            son_up = make_son(
                image, kernel, scale, degradation, clamp=clamp, noise=noise,
                generator=generator, jpeg_quality=jpeg_quality,
            )  # fmt: skip
            pair = (prepare(son_up, training=True), prepare(image, training=True))
        rate = learning_rate(step) * rate_factor
        with autocast(pair[0].device, autocast_dtype):
            out = net(pair[0])
        loss = (out.float() - pair[1]).abs().mean()
        if whole_image and saved is not None:
            if not _rose(loss, last_loss):
                rejected = 0
            else:
                # The last step raised the loss on these very pixels: undo it.
                _restore(params, saved)
                saved, kept = None, kept - 1
                rate_factor, rejected = rate_factor / 2, rejected + 1
                stop = rejected >= MAX_REJECTIONS
                yield StepReport(step, steps, rate, loss.detach(), accepted=False, stopped=stop)
                if stop:
                    return kept
                continue
        saved = [p.detach().clone() for p in params]
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            torch._foreach_add_(params, grads, alpha=-rate)
        last_loss, kept, accepted = loss.detach(), kept + 1, True
        if not whole_image:
            if not _rose(son_loss(net, *pair, autocast_dtype), last_loss):
                rejected = 0
            else:
                _restore(params, saved)
                kept, accepted = kept - 1, False
                rate_factor, rejected = rate_factor / 2, rejected + 1
        stop = rejected >= MAX_REJECTIONS
        yield StepReport(step, steps, rate, last_loss, accepted=accepted, stopped=stop)
        if stop:
            return kept
    if whole_image and saved is not None and _rose(son_loss(net, *pair, autocast_dtype), last_loss):
        _restore(params, saved)
        kept -= 1
    return kept


def _rose(loss: torch.Tensor, before: torch.Tensor) -> bool:
    # Written so that a NaN loss counts as a rise.
    return not bool(loss <= before * (1 + RISE_TOLERANCE))


def _restore(params: list[torch.Tensor], saved: list[torch.Tensor]) -> None:
    with torch.no_grad():
        torch._foreach_copy_(params, saved)


def patch_corner(
    shape: tuple[int, int], size: tuple[int, int], count: int, rng: np.random.Generator
) -> np.ndarray:
    """Top-left corners ``(row, column)`` of ``count`` random patches of ``size``,
    uniform over an image of ``shape``; int64 array of shape (count, 2)."""
    if size[0] > shape[0] or size[1] > shape[1]:
        raise ValueError(f"patches of {size} do not fit in an image of {shape}")
    rows = rng.integers(0, shape[0] - size[0] + 1, size=count)
    cols = rng.integers(0, shape[1] - size[1] + 1, size=count)
    return np.stack([rows, cols], axis=-1)


def infer(
    net: MZSRNet,
    image: torch.Tensor,
    scale: float | tuple[float, float],
    autocast_dtype: torch.dtype | None = None,
    *,
    clamp: Clamp = (0.0, 1.0),
    output_shape: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Super-resolve ``image`` (N, C, h, w) with ``net``: ``net(imresize(x, scale))``,
    clipped to ``clamp``, float32; ``output_shape`` overrides ``ceil(h * s)``."""
    device = image.device
    prepare_net(net)
    net.eval()
    with torch.no_grad(), autocast(device, autocast_dtype):
        up = prepare(imresize_tensor(image, scale, output_shape=output_shape))
        out = net(up)
    return out.float().clamp_(*clamp).contiguous()
