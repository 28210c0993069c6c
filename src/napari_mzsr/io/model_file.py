"""theta_M files: network weights plus metadata, saved and loaded safely.

A file is a ``torch.save`` of a plain dict ``{"format", "version", "metadata",
"state_dict"}`` where ``metadata`` is a JSON string. It is read with
``torch.load(weights_only=True)``, which refuses anything but tensors and plain
containers, so a file can never run code on load.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from ..core.network import MZSRNet
from .atomic import atomic_path

FORMAT = "napari-mzsr-theta"
VERSION = 1
SUFFIX = ".pt"


class ModelFileError(ValueError):
    """A theta_M file is corrupt, unsafe, or does not match what it claims to be."""


@dataclass
class ModelInfo:
    """Metadata of a theta_M file.

    Attributes
    ----------
    name : str
        Short name, e.g. ``"direct-x2"``.
    scales : list of float
        Scale factors the model was meta-trained for. Two or more entries that span a
        range (``multiscale``) allow any factor between their minimum and maximum.
    degradation : {"direct", "bicubic"}
        Subsampling used in meta-training; the son image is made the same way.
    channels : int
        1 (grayscale / single channel) or 3 (RGB).
    lr_schedule : list of [int, float]
        Meta-test step learning rates as ``[first_step, lr]`` pairs, piecewise constant.
    features, layers : int
        Network shape (64 and 8 for the paper's network).
    training : dict
        Provenance: recipe, data, iterations, device, wall time, validation PSNR.
    """

    name: str
    scales: list[float]
    degradation: str
    channels: int
    lr_schedule: list[list[float]] = field(default_factory=lambda: [[0, 1e-2]])
    features: int = 64
    layers: int = 8
    training: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.degradation not in ("direct", "bicubic"):
            raise ModelFileError(f"unknown degradation {self.degradation!r} in model metadata")
        if self.channels not in (1, 3):
            raise ModelFileError(f"model must have 1 or 3 channels, got {self.channels}")
        if not self.scales or any(float(s) < 1 for s in self.scales):
            raise ModelFileError(f"invalid model scales {self.scales!r}")
        self.scales = [float(s) for s in self.scales]
        if not self.lr_schedule or int(self.lr_schedule[0][0]) != 0:
            raise ModelFileError("lr_schedule must start at step 0")
        self.lr_schedule = [[int(step), float(lr)] for step, lr in self.lr_schedule]

    def lr_at(self, step: int) -> float:
        """Learning rate of adaptation step ``step`` (0-based)."""
        return schedule_lr(self.lr_schedule, step)

    def supports_scale(self, scale: float) -> bool:
        if len(self.scales) > 1:
            return min(self.scales) - 1e-6 <= scale <= max(self.scales) + 1e-6
        return abs(scale - self.scales[0]) < 1e-6


@dataclass
class MZSRModel:
    """A loaded theta_M: metadata and float32 CPU weights."""

    info: ModelInfo
    state_dict: dict[str, torch.Tensor]
    source: str = ""

    def network(self, device: torch.device | str = "cpu") -> MZSRNet:
        """A fresh network holding a copy of the weights (safe to adapt in place)."""
        net = MZSRNet(self.info.channels, self.info.features, self.info.layers)
        net.load_state_dict(self.state_dict)
        return net.to(device)


def save_model(
    path: str | os.PathLike,
    net: MZSRNet | Mapping[str, torch.Tensor],
    info: ModelInfo,
    overwrite: bool = False,
) -> Path:
    """Write a theta_M file atomically (temporary file, then rename).

    Examples
    --------
    >>> info = ModelInfo("toy", [2.0], "direct", 3)
    >>> save_model("toy.pt", MZSRNet(3), info)  # doctest: +SKIP
    """
    path = Path(path)
    state = net.state_dict() if isinstance(net, torch.nn.Module) else dict(net)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()}
    _check_state(state, info, str(path))
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "metadata": json.dumps(asdict(info), sort_keys=True),
        "state_dict": state,
    }
    with atomic_path(path, overwrite) as tmp:
        torch.save(payload, tmp)
    return path


def shipped_models() -> dict[str, Path]:
    """Names and paths of the theta_M files shipped inside the package."""
    folder = resources.files("napari_mzsr") / "weights"
    return {
        Path(entry.name).stem: Path(str(entry))
        for entry in folder.iterdir()
        if entry.name.endswith(SUFFIX)
    }


def default_model(scale: float, rgb: bool) -> str:
    """The shipped model for ``scale``: the 1-channel one for greyscale data if shipped."""
    base = f"direct-x{scale:g}"
    shipped = shipped_models()
    if not rgb and f"{base}-gray" in shipped:
        return f"{base}-gray"
    if base in shipped:
        return base
    if "multiscale" in shipped:
        return "multiscale"
    raise ValueError(f"no shipped model for x{scale:g}; give a theta_M file (--model PATH)")


def load_model(name_or_path: str | os.PathLike | MZSRModel) -> MZSRModel:
    """Load a theta_M by shipped name (e.g. ``"direct-x2"``) or from a file path.

    Raises
    ------
    FileNotFoundError
        No shipped model of that name and no such file.
    ModelFileError
        The file is corrupt, unsafe (holds anything but tensors and plain data), or its
        weights do not match its metadata.

    Examples
    --------
    >>> model = load_model("direct-x2")  # doctest: +SKIP
    >>> model.info.scales, model.info.degradation  # doctest: +SKIP
    ([2.0], 'direct')
    """
    if isinstance(name_or_path, MZSRModel):
        return name_or_path
    shipped = shipped_models()
    key = str(name_or_path)
    if key in shipped:
        path = shipped[key]
    else:
        path = Path(name_or_path)
        if not path.is_file():
            available = ", ".join(sorted(shipped)) or "none"
            raise FileNotFoundError(
                f"no model file {str(path)!r} and no shipped model of that name "
                f"(shipped: {available})"
            )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelFileError(
            f"{path} is not a readable theta_M file (corrupt, or holds objects other "
            f"than tensors, which are refused for safety): {exc}"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a napari-mzsr theta_M file")
    if payload.get("version") != VERSION:
        raise ModelFileError(
            f"{path} has format version {payload.get('version')!r}; this napari-mzsr "
            f"reads version {VERSION}"
        )
    try:
        info = ModelInfo(**json.loads(payload["metadata"]))
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path} has invalid metadata: {exc}") from exc
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise ModelFileError(f"{path} holds no state_dict")
    _check_state(state, info, str(path))
    return MZSRModel(info, {k: v.float() for k, v in state.items()}, str(path))


def _check_state(state: Mapping[str, Any], info: ModelInfo, where: str) -> None:
    expected = MZSRNet(info.channels, info.features, info.layers).state_dict()
    if set(state) != set(expected):
        raise ModelFileError(
            f"{where}: weights do not match a {info.channels}-channel network with "
            f"{info.layers} layers of {info.features} features"
        )
    for key, ref in expected.items():
        value = state[key]
        if not isinstance(value, torch.Tensor) or value.shape != ref.shape:
            raise ModelFileError(f"{where}: tensor {key} has the wrong shape")
        if not torch.isfinite(value).all():
            raise ModelFileError(f"{where}: tensor {key} holds NaN or infinite values")


def schedule_lr(schedule: Sequence[Sequence[float]], step: int) -> float:
    """Learning rate at ``step`` of a piecewise-constant ``[[first_step, lr], ...]``."""
    lr = schedule[0][1]
    for first, value in schedule:
        if step >= first:
            lr = value
    return float(lr)


def lr_schedule_from(value: float | Sequence[Sequence[float]]) -> list[list[float]]:
    """Normalise a constant learning rate or ``[[step, lr], ...]`` to a schedule."""
    if isinstance(value, (int, float)):
        return [[0, float(value)]]
    return [[int(step), float(lr)] for step, lr in value]
