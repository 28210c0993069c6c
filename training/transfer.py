"""Start a pretraining from another model's weights instead of random ones.

Fine-tuning converges in a fraction of the steps of a fresh start: the x2 network
is already a good x4 one up to the interpolated input, and a 3-channel network
becomes a 1-channel one exactly (on gray inputs) by folding its colour channels.
"""

from __future__ import annotations

from pathlib import Path

import torch

from napari_mzsr.core.network import MZSRNet
from napari_mzsr.io.model_file import load_model


def convert_channels(state: dict[str, torch.Tensor], channels: int) -> dict[str, torch.Tensor]:
    """Adapt a state dict of :class:`~napari_mzsr.core.network.MZSRNet` (or of the
    scale-aware network, whose adaptation modules work on features only and are
    copied) to ``channels``.

    3 -> 1: the first layer sums its colour filters and the last layer averages its
    colour outputs, so that the result on a gray image equals the mean of the
    colour network's output on that image replicated to RGB. 1 -> 3: the inverse
    (filters split evenly, the output replicated).

    Parameters
    ----------
    state : dict of str to Tensor
        Weights of an MZSRNet (``body.<i>.weight`` / ``body.<i>.bias``), other keys
        copied unchanged.
    channels : int
        Channels of the target network.

    Returns
    -------
    dict of str to Tensor
        New tensors; ``state`` is not modified.
    """
    weights = sorted(
        (k for k in state if k.startswith("body.") and k.endswith(".weight")),
        key=lambda k: int(k.split(".")[1]),
    )
    first, last = weights[0], weights[-1]
    have = state[first].shape[1]
    if have == channels:
        return {k: v.clone() for k, v in state.items()}
    if {have, channels} != {1, 3}:
        raise ValueError(f"cannot convert a {have}-channel network to {channels} channels")
    out = {k: v.clone() for k, v in state.items()}
    last_bias = last.replace(".weight", ".bias")
    if channels == 1:
        out[first] = state[first].sum(dim=1, keepdim=True)
        out[last] = state[last].mean(dim=0, keepdim=True)
        if last_bias in state:
            out[last_bias] = state[last_bias].mean(dim=0, keepdim=True)
    else:
        out[first] = state[first].repeat(1, 3, 1, 1) / 3
        out[last] = state[last].repeat(3, 1, 1, 1)
        if last_bias in state:
            out[last_bias] = state[last_bias].repeat(3)
    return out


def start_from(path: str | Path, channels: int, features: int, layers: int) -> tuple[MZSRNet, dict]:
    """A network of the given shape with the weights of the theta_M file ``path``
    (converted to ``channels``), and the record of where they came from for the run's
    provenance, ``{"file": ..., "training": ...}``.

    Raises
    ------
    ValueError
        If the file's hidden shape differs (only the channel count converts).
    """
    model = load_model(path)
    info = model.info
    if (info.features, info.layers) != (features, layers):
        raise ValueError(
            f"{path} has features={info.features}, layers={info.layers}; "
            f"the recipe needs features={features}, layers={layers}"
        )
    net = MZSRNet(channels, features=features, layers=layers)
    net.load_state_dict(convert_channels(model.state_dict, channels))
    return net, {"file": str(path), "training": info.training}
