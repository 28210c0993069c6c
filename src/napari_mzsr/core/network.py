"""The MZSR / ZSSR network (REFERENCE section 1)."""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn


class MZSRNet(nn.Module):
    """Eight 3x3 convolutions with ReLU between them and a global residual.

    ``forward(x) = x + body(x)`` where ``x`` is the low-resolution image already
    bicubically resized to the output size: the network never changes the image size.

    Parameters
    ----------
    channels : int
        Image channels (3 for RGB, 1 for grayscale or single fluorescence channels).
    features : int
        Width of the hidden layers (64 in the paper; smaller only for tests).
    layers : int
        Number of convolutions (8 in the paper).
    bias : bool
        Whether the convolutions have biases (MZSR: yes; ZSSR: no).
    generator : torch.Generator, optional
        Random source of the initial weights (default: torch's global one).

    Examples
    --------
    >>> net = MZSRNet(3)
    >>> sum(p.numel() for p in net.parameters())
    225091
    """

    def __init__(
        self,
        channels: int = 3,
        features: int = 64,
        layers: int = 8,
        bias: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if channels < 1 or features < 1 or layers < 2:
            raise ValueError(
                f"invalid network shape: channels={channels}, features={features}, layers={layers}"
            )
        self.channels, self.features, self.layers = channels, features, layers
        widths = [channels] + [features] * (layers - 1) + [channels]
        modules: list[nn.Module] = []
        for i, (cin, cout) in enumerate(itertools.pairwise(widths)):
            modules.append(nn.Conv2d(cin, cout, 3, padding=1, bias=bias))
            if i < layers - 1:
                modules.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*modules)
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Variance-scaling (fan-in) truncated-normal weights and zero biases, as the
        original TensorFlow code."""
        for module in self.body:
            if isinstance(module, nn.Conv2d):
                fan_in = module.in_channels * 9
                # 0.8796 is the std of a unit normal truncated at +-2, as in TF.
                std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
                with torch.no_grad():
                    module.weight.copy_(_truncated_normal(module.weight.shape, std, generator))
                    if module.bias is not None:
                        module.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def parameter_shapes(
    channels: int, features: int = 64, layers: int = 8, bias: bool = True
) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the tensors of :class:`MZSRNet` (its ``state_dict``),
    computed without building it.

    Examples
    --------
    >>> parameter_shapes(1, 4, 2)["body.2.weight"]
    (1, 4, 3, 3)
    """
    widths = [channels] + [features] * (layers - 1) + [channels]
    shapes: dict[str, tuple[int, ...]] = {}
    for i, (cin, cout) in enumerate(itertools.pairwise(widths)):
        # Convolution i sits at index 2 i of the body: a ReLU follows every one but the last.
        shapes[f"body.{2 * i}.weight"] = (cout, cin, 3, 3)
        if bias:
            shapes[f"body.{2 * i}.bias"] = (cout,)
    return shapes


def _truncated_normal(
    shape: torch.Size, std: float, generator: torch.Generator | None
) -> torch.Tensor:
    values = torch.randn(shape, generator=generator)
    while True:
        outside = values.abs() > 2
        if not outside.any():
            return values * std
        values[outside] = torch.randn(int(outside.sum()), generator=generator)
