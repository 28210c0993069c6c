"""A network and its input interpolation as one TorchScript module.

What :func:`~napari_mzsr.core.adaptation.infer` computes, ``clip(net(imresize(x, s)),
0, 1)``, as a module other tools can run without this package (BioImage.IO export,
:mod:`napari_mzsr.io.bioimageio`): the MATLAB-bicubic upscale (:mod:`~napari_mzsr.
core.resize`) is rewritten as strided convolutions, so that it takes any input size
and needs no index tables. For a factor ``s = p / q`` in lowest terms, every block of
``q`` input pixels gives ``p`` output pixels, each a 4-tap cubic of the input at a fixed
offset within the block; so an axis of ``n`` pixels, ``n`` a multiple of ``q``, becomes
exactly ``ceil(n s) = n p / q`` pixels, as :func:`~napari_mzsr.core.resize.imresize`
gives. Borders are mirrored half a sample out, as there.
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .resize import cubic, parse_scale

# Largest denominator q of a factor p / q: inputs must be multiples of q pixels.
MAX_DENOMINATOR = 8


def rational_factor(scale: float) -> tuple[int, int]:
    """``(p, q)`` with ``p / q == scale`` in lowest terms and ``q <= MAX_DENOMINATOR``.

    Raises
    ------
    ValueError
        ``scale`` is below 1 or not such a fraction (within 1e-9).

    Examples
    --------
    >>> rational_factor(2.5), rational_factor(3.0)
    ((5, 2), (3, 1))
    """
    fraction = Fraction(scale).limit_denominator(MAX_DENOMINATOR)
    if scale < 1 or abs(float(fraction) - scale) > 1e-9 * scale:
        raise ValueError(
            f"scale {scale:g} cannot be exported: factors must be >= 1 and fractions p/q "
            f"with q <= {MAX_DENOMINATOR} (e.g. 2, 2.5, 4/3), so that every input size "
            "that is a multiple of q gives a whole output size"
        )
    return fraction.numerator, fraction.denominator


def phase_weights(p: int, q: int) -> np.ndarray:
    """Cubic weights (p, q + 4), float64: row ``r`` gives output pixel ``r`` of a block
    from the block's input pixels at offsets ``-2 .. q + 1``."""
    weights = np.zeros((p, q + 4))
    for r in range(p):
        centre = (r + 0.5) * q / p - 0.5  # input position of the output pixel in the block
        base = math.floor(centre)
        taps = np.arange(base - 1, base + 3)
        values = cubic(centre - taps)
        weights[r, taps + 2] = values / values.sum()
    return weights


class Upsample(nn.Module):
    """MATLAB-bicubic upscale of (N, C, H, W) by ``(py / qy, px / qx)``; H must be a
    multiple of ``qy`` and W of ``qx``, both at least 2."""

    def __init__(self, scale: float | tuple[float, float]) -> None:
        super().__init__()
        (self.py, self.qy), (self.px, self.qx) = (rational_factor(s) for s in parse_scale(scale))
        for name, (p, q) in (("weight_y", (self.py, self.qy)), ("weight_x", (self.px, self.qx))):
            kernel = torch.from_numpy(phase_weights(p, q)).float()[:, None, :]
            self.register_buffer(name, kernel)

    @staticmethod
    def _last_axis(x: torch.Tensor, weight: torch.Tensor, p: int, q: int) -> torch.Tensor:
        lead = x.shape[:-1]
        rows = x.reshape(-1, 1, x.shape[-1])
        # Half-sample mirror: pixel -1 is pixel 0, pixel -2 is pixel 1.
        rows = torch.cat([rows[..., :2].flip(-1), rows, rows[..., -2:].flip(-1)], dim=-1)
        phases = F.conv1d(rows, weight.to(x.dtype), stride=q)  # (M, p, n / q)
        out = phases.permute(0, 2, 1).reshape(rows.shape[0], -1)
        return out.reshape(list(lead) + [out.shape[-1]])  # noqa: RUF005 (TorchScript: no [*a, b])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._last_axis(x, self.weight_x, self.px, self.qx)
        x = self._last_axis(x.transpose(-1, -2), self.weight_y, self.py, self.qy)
        return x.transpose(-1, -2).contiguous()


class SuperResolver(nn.Module):
    """``clip(network(upsample(x)), low, high)``: (N, C, H, W) in network units to the
    result (``low``/``high`` may be infinite)."""

    def __init__(self, upsample: nn.Module, network: nn.Module, low: float, high: float) -> None:
        super().__init__()
        self.upsample = upsample
        self.network = network
        self.low, self.high = float(low), float(high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(self.upsample(x)).clamp(self.low, self.high)


def script_network(
    net: nn.Module,
    scale: tuple[float, float],
    channels: int,
    clamp: tuple[float, float] = (0.0, 1.0),
) -> torch.jit.ScriptModule:
    """A TorchScript :class:`SuperResolver` of ``net`` (float32, CPU; a scale-aware
    network bound to ``scale``) for inputs of ``channels`` channels, its results
    clipped to ``clamp`` (as :func:`~napari_mzsr.core.adaptation.infer` does).

    Raises
    ------
    ValueError
        A factor that :func:`rational_factor` refuses.
    """
    upsample = Upsample(scale)
    net = net.float().cpu().eval()
    example = torch.rand(1, channels, 16, 16)
    with torch.no_grad(), warnings.catch_warnings():
        # A scale-aware network's factors become constants of the trace, as intended.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(net, example, check_trace=False)
    return torch.jit.script(SuperResolver(upsample, traced, *clamp))
