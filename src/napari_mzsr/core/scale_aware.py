"""The scale-aware MZSR network: the MZSR body with ArbSR's scale-aware feature
adaptation (REFERENCE section 11) after some of its layers.

One network serves any factor pair ``(sy, sx)``, equal or not. It works, like
:class:`~napari_mzsr.core.network.MZSRNet`, at the output size on the bicubically
resized input, with the same global residual. After the convolutions listed in
``adaptation_layers`` (and their ReLU) a :class:`ScaleAwareAdaptation` adds

    ``features + conv(features, W(sy, sx)) * mask(features)``

where ``W(sy, sx)`` is the sum of four expert 3x3 kernels weighted by a softmax over
a small perceptron of ``(1 / sy, 1 / sx)``, and ``mask`` a per-pixel gate in (0, 1)
from three small convolutions and a sigmoid.

Differences from ArbSR's module, and why: no batch normalisation (MZSR has none; the
meta-test adapts on a single image, where batch statistics mean nothing, and MAML's
inner loop on two patches would make them noise) and no pooling in the mask (it would
need even sizes and would break the exact seams of tiled inference). The experts start
at zero, so a network built from plain MZSR weights first computes exactly what they
computed; meta-learning then grows the scale-dependent part. ArbSR's scale-aware
upsampling is not used: the network runs on the interpolated image at the output size,
where the sub-pixel positions it predicts are already fixed by the interpolation.

The factors are an input of :meth:`ScaleAwareNet.forward`; :attr:`ScaleAwareNet.scale`
holds the pair used when none is passed, so that the meta-test, tiling, self-ensemble
and the other code that calls ``net(x)`` work unchanged (:func:`bind_scale`).
``torch.func.functional_call(net, params, (x,), {"scale": (sy, sx)})`` works for MAML.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import network
from .network import MZSRNet
from .resize import parse_scale

EXPERTS = 4
ROUTING_FEATURES = 64
MASK_FEATURES = 16
# Receptive radius (output pixels) one adaptation adds: the mask's three 3x3 convolutions.
ADAPTATION_RADIUS = 3
DEFAULT_ADAPTATION_LAYERS = (2, 5)


class ScaleAwareConv(nn.Module):
    """A 3x3 convolution whose kernel is a mix of ``experts`` kernels, weighted by a
    softmax over a two-layer perceptron of ``(1 / sy, 1 / sx)``. No bias.

    The experts are stored as (experts, out, in * 9): a 5-D tensor would not survive
    ``Module.to(memory_format=torch.channels_last)``, which the CPU path uses.
    """

    def __init__(self, features: int, experts: int = EXPERTS) -> None:
        super().__init__()
        self.features = features
        self.routing = nn.Sequential(
            nn.Linear(2, ROUTING_FEATURES), nn.ReLU(), nn.Linear(ROUTING_FEATURES, experts)
        )
        self.experts = nn.Parameter(torch.zeros(experts, features, features * 9))

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.routing(scale), dim=-1)
        kernel = torch.einsum("e,eok->ok", weights, self.experts)
        kernel = kernel.reshape(self.features, self.features, 3, 3)
        return F.conv2d(x, kernel.to(x.dtype), padding=1)


class ScaleAwareAdaptation(nn.Module):
    """``x + ScaleAwareConv(x) * mask(x)``, the mask a sigmoid of three convolutions."""

    def __init__(self, features: int, experts: int = EXPERTS) -> None:
        super().__init__()
        self.adapt = ScaleAwareConv(features, experts)
        self.mask = nn.Sequential(
            nn.Conv2d(features, MASK_FEATURES, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(MASK_FEATURES, MASK_FEATURES, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(MASK_FEATURES, 1, 3, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return x + self.adapt(x, scale) * self.mask(x)


class ScaleAwareNet(nn.Module):
    """MZSR's eight convolutions with scale-aware adaptations after some of them.

    Parameters
    ----------
    channels, features, layers, bias
        As :class:`~napari_mzsr.core.network.MZSRNet`; the body's tensors have the same
        names (``body.<i>.weight``), so plain MZSR weights load into it.
    adaptation_layers : sequence of int
        0-based indices of the convolutions (not the last) followed by an adaptation.
    scale : float or (float, float), optional
        The factors ``forward`` uses when it is given none.
    generator : torch.Generator, optional
        Random source of the initial weights.

    Examples
    --------
    >>> net = ScaleAwareNet(3)
    >>> sum(p.numel() for p in net.parameters())
    544301
    >>> net(torch.zeros(1, 3, 20, 30), scale=(1.5, 3.0)).shape
    torch.Size([1, 3, 20, 30])
    """

    def __init__(
        self,
        channels: int = 3,
        features: int = 64,
        layers: int = 8,
        bias: bool = True,
        adaptation_layers: Sequence[int] = DEFAULT_ADAPTATION_LAYERS,
        scale: float | Sequence[float] | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        check_adaptation_layers(adaptation_layers, layers)
        plain = MZSRNet(channels, features, layers, bias, generator)
        self.channels, self.features, self.layers = channels, features, layers
        self.adaptation_layers = tuple(int(i) for i in adaptation_layers)
        self.body = plain.body
        self.adaptations = nn.ModuleDict(
            {str(i): ScaleAwareAdaptation(features) for i in self.adaptation_layers}
        )
        self._reset_adaptations(generator)
        self.scale = None if scale is None else parse_scale(scale)

    def _reset_adaptations(self, generator: torch.Generator | None) -> None:
        # Routing and mask: PyTorch's default uniform fan-in init, drawn from `generator`;
        # the experts stay zero (see the module docstring).
        for module in self.adaptations.modules():
            if isinstance(module, nn.Linear | nn.Conv2d):
                fan_in = module.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in)
                with torch.no_grad():
                    module.weight.uniform_(-bound, bound, generator=generator)
                    module.bias.uniform_(-bound, bound, generator=generator)

    def forward(
        self, x: torch.Tensor, scale: float | Sequence[float] | torch.Tensor | None = None
    ) -> torch.Tensor:
        code = scale_code(self.scale if scale is None else scale, x)
        h = x
        convolution = -1
        for module in self.body:
            h = module(h)
            if isinstance(module, nn.Conv2d):
                convolution += 1
            elif str(convolution) in self.adaptations:
                h = self.adaptations[str(convolution)](h, code)
        return x + h


def scale_code(scale: float | Sequence[float] | torch.Tensor | None, like: torch.Tensor):
    """The routing input ``(1 / sy, 1 / sx)`` as a float32 tensor on ``like``'s device."""
    if scale is None:
        raise ValueError("a scale-aware network needs a scale: pass scale= or bind one")
    if isinstance(scale, torch.Tensor):
        return scale.to(device=like.device, dtype=torch.float32)
    sy, sx = parse_scale(scale)
    return torch.tensor([1.0 / sy, 1.0 / sx], device=like.device)


def bind_scale(net: nn.Module, scale: float | Sequence[float]) -> nn.Module:
    """Set the factors a :class:`ScaleAwareNet` uses by default; a plain network is
    returned as it is. Returns ``net``."""
    if isinstance(net, ScaleAwareNet):
        net.scale = parse_scale(scale)
    return net


def check_adaptation_layers(adaptation_layers: Sequence[int], layers: int) -> None:
    """Raise ValueError unless the indices are distinct convolutions before the last."""
    try:
        indices = [int(i) for i in adaptation_layers]
    except (TypeError, ValueError):
        raise ValueError(
            f"adaptation_layers must be a list of layer indices, got {adaptation_layers!r}"
        ) from None
    if len(set(indices)) != len(indices) or not all(0 <= i < layers - 1 for i in indices):
        raise ValueError(
            f"adaptation_layers must be distinct indices in [0, {layers - 2}], "
            f"got {adaptation_layers!r}"
        )


def parameter_shapes(
    channels: int,
    features: int = 64,
    layers: int = 8,
    adaptation_layers: Sequence[int] = DEFAULT_ADAPTATION_LAYERS,
    bias: bool = True,
) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the tensors of :class:`ScaleAwareNet`, without building it.

    Examples
    --------
    >>> parameter_shapes(1, 4, 3, [0])["adaptations.0.adapt.experts"]
    (4, 4, 36)
    """
    check_adaptation_layers(adaptation_layers, layers)
    shapes = network.parameter_shapes(channels, features, layers, bias)
    for i in adaptation_layers:
        p = f"adaptations.{int(i)}"
        shapes[f"{p}.adapt.routing.0.weight"] = (ROUTING_FEATURES, 2)
        shapes[f"{p}.adapt.routing.0.bias"] = (ROUTING_FEATURES,)
        shapes[f"{p}.adapt.routing.2.weight"] = (EXPERTS, ROUTING_FEATURES)
        shapes[f"{p}.adapt.routing.2.bias"] = (EXPERTS,)
        shapes[f"{p}.adapt.experts"] = (EXPERTS, features, features * 9)
        for j, (cin, cout) in enumerate(
            ((features, MASK_FEATURES), (MASK_FEATURES, MASK_FEATURES), (MASK_FEATURES, 1))
        ):
            shapes[f"{p}.mask.{2 * j}.weight"] = (cout, cin, 3, 3)
            shapes[f"{p}.mask.{2 * j}.bias"] = (cout,)
    return shapes


def receptive_radius(layers: int, adaptation_layers: Sequence[int] = ()) -> int:
    """Output pixels an output pixel depends on, on each side: one per 3x3 convolution
    of the body, :data:`ADAPTATION_RADIUS` more per adaptation."""
    return layers + ADAPTATION_RADIUS * len(adaptation_layers)
