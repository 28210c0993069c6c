"""theta_M files: network weights plus metadata, saved and loaded safely.

A file is a ``torch.save`` of a plain dict ``{"format", "version", "metadata",
"state_dict"}`` where ``metadata`` is a JSON string. Loading

1. reads it with ``torch.load(weights_only=True)``, which refuses anything but tensors
   and plain containers, so a file can never run code on load (torch >= 2.6, which the
   package requires, defaults to that too);
2. checks every metadata field and the stored tensors' names and shapes against the
   network the metadata describe, before any network is built (a file cannot make the
   loader allocate more than it holds);
3. verifies the SHA-256 checksum of the tensors stored in the metadata, so a corrupted
   file is refused instead of loading with changed weights.

Versions. Version 2 holds the plain MZSR network. Version 3 adds the metadata fields
``architecture`` (:data:`ARCHITECTURES`) and ``adaptation_layers`` for the scale-aware
network (:mod:`napari_mzsr.core.scale_aware`); a version 2 reader would not know them,
so only files of a scale-aware network are written as version 3, and plain ones stay
version 2, readable by every release. Both versions are read.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from ..core import scale_aware
from ..core.network import MZSRNet, parameter_shapes
from ..core.resize import parse_scale
from ..core.schedules import learning_rate_schedule
from .atomic import atomic_path

FORMAT = "napari-mzsr-theta"
VERSION = 2
# Written for the scale-aware network only (see the module docstring).
VERSION_SCALE_AWARE = 3
VERSIONS = (VERSION, VERSION_SCALE_AWARE)
ARCHITECTURES = ("mzsr", "scale-aware")
SUFFIX = ".pt"
DEGRADATIONS = ("direct", "bicubic")
# Far above any network of this family (the paper's has 64 features and 8 layers), far
# below what would exhaust memory.
MAX_FEATURES = 1024
MAX_LAYERS = 64


class ModelFileError(ValueError):
    """A theta_M file is corrupt, unsafe, or does not match what it claims to be."""


@dataclass
class ModelInfo:
    """Metadata of a theta_M file; every field is checked on construction.

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
    architecture : {"mzsr", "scale-aware"}
        The plain network (:class:`~napari_mzsr.core.network.MZSRNet`) or the
        scale-aware one (:class:`~napari_mzsr.core.scale_aware.ScaleAwareNet`).
    adaptation_layers : list of int
        Layers followed by a scale-aware adaptation; empty for ``"mzsr"``.
    training : dict
        Provenance: recipe, data, iterations, device, wall time, validation PSNR.

    Raises
    ------
    ModelFileError
        A field has the wrong type or value; the message names it.
    """

    name: str
    scales: list[float]
    degradation: str
    channels: int
    lr_schedule: list[list[float]] = field(default_factory=lambda: [[0, 1e-2]])
    features: int = 64
    layers: int = 8
    training: dict[str, Any] = field(default_factory=dict)
    architecture: str = "mzsr"
    adaptation_layers: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise _field_error("name", "a non-empty string", self.name)
        scales = self.scales if isinstance(self.scales, list | tuple) else [None]
        if not scales or not all(_is_real(s) and math.isfinite(s) and s >= 1 for s in scales):
            raise _field_error("scales", "a list of numbers >= 1", self.scales)
        self.scales = [float(s) for s in scales]
        if self.degradation not in DEGRADATIONS:
            raise _field_error("degradation", f"one of {DEGRADATIONS}", self.degradation)
        if self.channels not in (1, 3) or isinstance(self.channels, bool):
            raise _field_error("channels", "1 or 3", self.channels)
        for key, low, high in (("features", 1, MAX_FEATURES), ("layers", 2, MAX_LAYERS)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise _field_error(key, f"an integer in [{low}, {high}]", value)
        try:
            schedule = learning_rate_schedule(self.lr_schedule, "'lr_schedule'")
        except ValueError as exc:
            raise ModelFileError(f"model metadata {exc}") from None
        self.lr_schedule = [[step, rate] for step, rate in schedule]
        if not isinstance(self.training, dict):
            raise _field_error("training", "a dict", type(self.training).__name__)
        if self.architecture not in ARCHITECTURES:
            raise _field_error("architecture", f"one of {ARCHITECTURES}", self.architecture)
        layers = self.adaptation_layers
        if not isinstance(layers, list | tuple) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in layers
        ):
            raise _field_error("adaptation_layers", "a list of layer indices", layers)
        if self.architecture == "mzsr" and layers:
            raise _field_error("adaptation_layers", "empty for architecture 'mzsr'", layers)
        if self.architecture == "scale-aware":
            try:
                scale_aware.check_adaptation_layers(layers, self.layers)
            except ValueError as exc:
                raise ModelFileError(f"model metadata {exc}") from None
            if not layers:
                raise _field_error("adaptation_layers", "non-empty for 'scale-aware'", layers)
        self.adaptation_layers = list(layers)

    def supports_scale(self, scale: float | tuple[float, float]) -> bool:
        """Whether the model was trained for the factor(s) ``scale`` (one, or ``(sy,
        sx)``): equal to its one scale, or within the range of a multi-scale model."""
        scale = parse_scale(scale)
        lo, hi = min(self.scales), max(self.scales)
        if len(self.scales) > 1:
            return all(lo - 1e-6 <= s <= hi + 1e-6 for s in scale)
        return all(abs(s - lo) < 1e-6 for s in scale)

    @property
    def radius(self) -> int:
        """Receptive radius of the network in output pixels (for tiling margins)."""
        return scale_aware.receptive_radius(self.layers, self.adaptation_layers)

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Names and shapes of the network's tensors, computed without building it."""
        if self.architecture == "scale-aware":
            return scale_aware.parameter_shapes(
                self.channels, self.features, self.layers, self.adaptation_layers
            )
        return parameter_shapes(self.channels, self.features, self.layers)

    def metadata(self) -> tuple[int, dict[str, Any]]:
        """The file version and metadata dict that describe this model (without the
        checksum): the plain network's files leave out the version 3 fields."""
        fields = asdict(self)
        if self.architecture == "mzsr":
            del fields["architecture"], fields["adaptation_layers"]
            return VERSION, fields
        return VERSION_SCALE_AWARE, fields

    def describe_scales(self) -> str:
        """``"x2"`` or ``"x2 to x4"``."""
        lo, hi = min(self.scales), max(self.scales)
        return f"x{lo:g}" if len(self.scales) == 1 else f"x{lo:g} to x{hi:g}"


@dataclass
class MZSRModel:
    """A loaded theta_M: metadata and float32 CPU weights."""

    info: ModelInfo
    state_dict: dict[str, torch.Tensor]
    source: str = ""

    def network(
        self, device: torch.device | str = "cpu", scale: float | tuple[float, float] | None = None
    ) -> torch.nn.Module:
        """A fresh network holding a copy of the weights (safe to adapt in place).

        A scale-aware network is bound to ``scale`` (:func:`~napari_mzsr.core.
        scale_aware.bind_scale`), which it then needs; a plain one ignores it.
        """
        info = self.info
        if info.architecture == "scale-aware":
            net = scale_aware.ScaleAwareNet(
                info.channels, info.features, info.layers, True, info.adaptation_layers, scale
            )
        else:
            net = MZSRNet(info.channels, info.features, info.layers)
        net.load_state_dict(self.state_dict)
        return net.to(device)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _field_error(name: str, accepted: str, value: object) -> ModelFileError:
    return ModelFileError(f"model metadata {name!r} must be {accepted}, got {value!r}")


def checksum(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of the tensors' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def save_model(
    path: str | os.PathLike,
    net: torch.nn.Module | Mapping[str, torch.Tensor],
    info: ModelInfo,
    *,
    overwrite: bool = False,
) -> Path:
    """Write a theta_M file atomically (temporary file, then rename), with the checksum
    of its tensors.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    ModelFileError
        The weights do not match ``info``'s network.

    Examples
    --------
    >>> info = ModelInfo("toy", [2.0], "direct", 3)
    >>> save_model("toy.pt", MZSRNet(3), info)  # doctest: +SKIP
    """
    path = Path(path)
    state = net.state_dict() if isinstance(net, torch.nn.Module) else dict(net)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()}
    _check_state(state, info, str(path))
    version, fields = info.metadata()
    metadata = {**fields, "checksum": checksum(state)}
    payload = {
        "format": FORMAT,
        "version": version,
        "metadata": json.dumps(metadata, sort_keys=True),
        "state_dict": state,
    }
    with atomic_path(path, overwrite=overwrite) as tmp:
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


def shipped_infos() -> dict[str, ModelInfo]:
    """Names and metadata of the shipped theta_M files (:func:`shipped_models`).

    Each file is read and checked once per process and again only when it changes
    (cached by path, size and modification time): model choice and gradual planning
    ask for them on every run. The infos are copies, safe to modify.
    """
    infos = {}
    for name, path in shipped_models().items():
        stat = path.stat()
        infos[name] = copy.deepcopy(_shipped_info(path, stat.st_size, stat.st_mtime_ns))
    return infos


@lru_cache(maxsize=64)
def _shipped_info(path: Path, size: int, mtime_ns: int) -> ModelInfo:
    return load_model(path).info


def load_model(name_or_path: str | os.PathLike | MZSRModel) -> MZSRModel:
    """Load a theta_M by shipped name (e.g. ``"direct-x2"``), from a file path, or from a
    BioImage.IO package (``.zip``) written by :func:`napari_mzsr.export_bioimageio`.

    Raises
    ------
    FileNotFoundError
        No shipped model of that name and no such file.
    ModelFileError
        The file is corrupt, unsafe (holds anything but tensors and plain data), its
        metadata are malformed (the message names the field), its weights do not match
        its metadata, or their checksum does not match.

    Examples
    --------
    >>> model = load_model("direct-x2")  # doctest: +SKIP
    >>> model.info.scales, model.info.degradation  # doctest: +SKIP
    ([2.0], 'direct')
    """
    if isinstance(name_or_path, MZSRModel):
        return name_or_path
    if not isinstance(name_or_path, str | os.PathLike):
        raise ValueError(
            f"model must be a shipped model name, a theta_M file path or a loaded model, "
            f"got {type(name_or_path).__name__}"
        )
    shipped = shipped_models()
    key = str(name_or_path)
    if key not in shipped and str(key).lower().endswith(".zip") and Path(key).is_file():
        from .bioimageio import is_package, theta_from_package

        if is_package(key):
            return theta_from_package(key)
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
    version = payload.get("version")
    if version not in VERSIONS:
        raise ModelFileError(
            f"{path} has format version {version!r}; this napari-mzsr reads versions "
            f"{', '.join(map(str, VERSIONS))}"
        )
    try:
        metadata = json.loads(payload["metadata"])
        stored_sum = metadata.pop("checksum")
        if version == VERSION and metadata.get("architecture", "mzsr") != "mzsr":
            raise ModelFileError("version 2 files hold the plain MZSR network only")
        if version == VERSION_SCALE_AWARE and "architecture" not in metadata:
            raise ModelFileError("version 3 metadata must name its architecture")
        info = ModelInfo(**metadata)
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"{path} has invalid metadata: {exc}") from None
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise ModelFileError(f"{path} holds no state_dict")
    _check_state(state, info, str(path))
    if checksum(state) != stored_sum:
        raise ModelFileError(
            f"{path}: the weights do not match their checksum (the file is corrupt)"
        )
    return MZSRModel(info, {k: v.float() for k, v in state.items()}, str(path))


def _check_state(state: Mapping[str, Any], info: ModelInfo, where: str) -> None:
    """The tensors' names and shapes against the network ``info`` describes, without
    building it."""
    expected = info.parameter_shapes()
    if set(state) != set(expected):
        kind = "scale-aware " if info.architecture == "scale-aware" else ""
        raise ModelFileError(
            f"{where}: weights do not match a {info.channels}-channel {kind}network with "
            f"{info.layers} layers of {info.features} features"
        )
    for key, shape in expected.items():
        value = state[key]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
            raise ModelFileError(f"{where}: tensor {key} has the wrong shape")
        if not value.is_floating_point() or not torch.isfinite(value).all():
            raise ModelFileError(f"{where}: tensor {key} holds NaN, infinite or non-float values")
