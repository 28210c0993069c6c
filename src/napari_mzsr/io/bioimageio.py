"""BioImage.IO model packages (spec 0.5) of adapted models, camera profiles and theta_M.

A package runs without this package: its TorchScript weights take the low-resolution
image in network units and give the super-resolved one
(:mod:`napari_mzsr.core.scripted`: the bicubic interpolation, the network, the clip),
its preprocessing maps the data to network units with the intensity map the run used
(``scale_linear``, fixed values, not per image) and its postprocessing maps the result
back, so that another tool computes the numbers this package computes. The output's
spatial axes are ``s`` times the input's (``SizeReference`` with axis scales 1 and
``1 / s``); for a factor ``p / q`` the input sides are multiples of ``q``.

The package also carries the weights as a theta_M file of this package
(``napari_mzsr_model.pt``), so that :func:`napari_mzsr.load_model` loads it back.

Needs the ``bioimageio.spec`` package (``pip install napari-mzsr[bioimageio]``); testing
a package (``bioimageio test``) needs ``bioimageio.core``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.intensity import IntensityMap, intensity_map
from ..core.resize import imresize, parse_scale
from ..core.scripted import rational_factor, script_network
from .atomic import atomic_path
from .model_file import MZSRModel, load_model, save_model

THETA_FILE = "napari_mzsr_model.pt"
CONFIG_KEY = "napari-mzsr"
# Side of the test tensors: a crop of the user's image, small enough for a light package.
TEST_SIDE = 64
CITATIONS = {
    "mzsr": (
        "Soh, Cho, Cho. Meta-Transfer Learning for Zero-Shot Super-Resolution. CVPR 2020.",
        "https://github.com/JWSoh/MZSR",
    ),
    "drtl": (
        "Li et al. Few-shot real image super-resolution via distortion-relation guided "
        "transfer learning. arXiv:2111.13078, 2021.",
        "https://arxiv.org/abs/2111.13078",
    ),
    "arbsr": (
        "Wang et al. Learning a Single Network for Scale-Arbitrary Super-Resolution. ICCV 2021.",
        "https://github.com/The-Learning-And-Vision-Atelier-LAVA/ArbSR",
    ),
}


@dataclass
class Exportable:
    """What a package is made of: the network (float32, CPU, bound to ``scale``), its
    factors, the intensity map of the data, the theta_M file to carry and what it is."""

    net: torch.nn.Module
    scale: tuple[float, float]
    intensity: IntensityMap
    model: MZSRModel
    kind: str  # "adapted model", "camera profile" or "theta_M"
    provenance: dict[str, Any]


def exportable(
    model: object, sample: np.ndarray, scale: float | tuple[float, float] | None
) -> Exportable:
    """An :class:`Exportable` of an :class:`~napari_mzsr.AdaptedModel`, or of a theta_M
    or camera profile (an :class:`~napari_mzsr.io.model_file.MZSRModel`, a shipped name
    or a file) applied without adaptation, with ``sample``'s intensity map.

    Raises
    ------
    ValueError
        A model the self-check replaced by interpolation, a scale the theta_M
        does not serve or cannot be exported at, or no scale for a multi-factor theta_M.
    """
    from ..pipeline.adapted import AdaptedModel

    if isinstance(model, AdaptedModel):
        if not model.uses_network:
            raise ValueError(
                "model: the self-check chose Lanczos interpolation for this image, so there "
                "is no network to export; run with self_check=False to export the network"
            )
        state = {
            k: v.detach().cpu().float().contiguous() for k, v in model.net.state_dict().items()
        }
        provenance = {
            "adapted_from": model.info.name,
            "scale": list(model.scale),
            "steps_taken": model.steps_taken,
            "kernel_size": None if model.kernel is None else int(model.kernel.shape[0]),
            "kernel_estimate": model.kernel_estimate is not None,
            "self_check": None if model.self_check is None else model.self_check.as_dict(),
        }
        training = {**model.info.training, "adapted": provenance}
        info = replace(model.info, name=f"{model.info.name}-adapted", training=training)
        theta = MZSRModel(info, state, source="adapted in memory")
        net = theta.network("cpu", model.scale)
        return Exportable(net, model.scale, model.intensity, theta, "adapted model", provenance)
    from ..pipeline.calibrate import Profile

    theta = load_model(model.model if isinstance(model, Profile) else model)  # type: ignore[arg-type]
    info = theta.info
    if scale is None:
        if len(info.scales) != 1:
            raise ValueError(
                f"scale: {info.name} serves {info.describe_scales()}; give the factor to export"
            )
        scale = info.scales[0]
    pair = parse_scale(scale, "scale")
    if not info.supports_scale(pair):
        raise ValueError(
            f"scale {pair[0]:g}x{pair[1]:g}: {info.name} serves {info.describe_scales()}"
        )
    profile = isinstance(info.training, dict) and info.training.get("stage") == "calibration"
    kind = "camera profile" if profile else "theta_M"
    provenance = {"model": info.name, "scale": list(pair), "adaptation_steps": 0}
    if profile:
        keep = ("method", "pairs", "steps", "held_out_psnr", "base_model")
        provenance["calibration"] = {k: info.training[k] for k in keep if k in info.training}
    intensity = intensity_map(np.asarray(sample), "auto")
    return Exportable(theta.network("cpu", pair), pair, intensity, theta, kind, provenance)


def _test_crop(image: np.ndarray, q: tuple[int, int]) -> np.ndarray:
    """The centre of ``image``, at most :data:`TEST_SIDE` square, sides multiples of q."""
    sides = []
    for axis in (0, 1):
        side = min(TEST_SIDE, image.shape[axis]) // q[axis] * q[axis]
        if side < 2 * q[axis] or side < 8:
            raise ValueError(
                f"sample: {image.shape[0]}x{image.shape[1]} pixels is too small for a test "
                f"tensor (sides of at least 8 pixels and two blocks of {q[axis]})"
            )
        sides.append(side)
    top, left = ((image.shape[a] - sides[a]) // 2 for a in (0, 1))
    return image[top : top + sides[0], left : left + sides[1]]


def _to_bcyx(image: np.ndarray) -> np.ndarray:
    return image[None, None] if image.ndim == 2 else image.transpose(2, 0, 1)[None]


def _display(unit: np.ndarray) -> np.ndarray:
    """8-bit view of a (C, H, W) unit-range array for the cover."""
    picture = np.clip(unit, 0, 1).transpose(1, 2, 0)
    picture = picture[..., 0] if picture.shape[-1] == 1 else picture
    return np.rint(picture * 255).astype(np.uint8)


def _documentation(item: Exportable, name: str, q: tuple[int, int]) -> str:
    sy, sx = item.scale
    lines = [
        f"# {name}",
        "",
        f"Super-resolution by {sy:g} x {sx:g} (rows x columns) with MZSR "
        f"(Meta-Transfer Learning for Zero-Shot Super-Resolution): a {item.kind} exported by "
        "napari-mzsr. The input is the low-resolution image; the output is the "
        f"super-resolved one, {sy:g} x {sx:g} times larger. Inputs need sides that are "
        f"multiples of {q[0]} (rows) and {q[1]} (columns).",
        "",
        "## What runs",
        "",
        "1. Preprocessing: the intensities are mapped to the network's range with the fixed "
        f"map the run used ({item.intensity.describe()}).",
        "2. TorchScript: MATLAB-bicubic interpolation to the output size, the network "
        "(8 convolutions and a global residual), the result clipped to the data type's range.",
        "3. Postprocessing: the inverse of the intensity map (the output is float32 in the "
        "input's units).",
        "",
        "The network is not adapted further here: MZSR adapts theta_M to each image in napari-"
        "mzsr; this package holds the weights after that adaptation"
        if item.kind == "adapted model"
        else "No adaptation runs here: these are the weights as they are (napari-mzsr adapts "
        "them to each image before use).",
        "",
        "## Provenance",
        "",
        "```json",
        json.dumps(item.provenance, indent=2, default=str),
        "```",
        "",
        "## Use it again in napari-mzsr",
        "",
        "`napari_mzsr.load_model('this-package.zip')` loads the weights as a theta_M.",
        "",
    ]
    return "\n".join(lines)


# The characters BioImage.IO allows in a model's name.
NAME_CHARACTERS = re.compile(r"[A-Za-z0-9_+\- ()]+")


def _package_name(name: str | None, item: Exportable) -> str:
    """``name``, checked, or one that says what the package holds."""
    if name is None:
        sy, sx = item.scale
        factors = f"{sy:g}" if sy == sx else f"{sy:g}x{sx:g}"
        model = re.sub(r"[^A-Za-z0-9_+\- ]", "-", item.model.info.name)
        name = f"MZSR x{factors} {item.kind} ({model})".replace(".", "_")
    if not NAME_CHARACTERS.fullmatch(name) or len(name) > 128:
        raise ValueError(
            f"name may hold up to 128 letters, digits, spaces and _+-() (BioImage.IO), got {name!r}"
        )
    return name


def export_bioimageio(
    model: object,
    path: str | os.PathLike,
    *,
    sample: np.ndarray,
    name: str | None = None,
    scale: float | tuple[float, float] | None = None,
    description: str | None = None,
    authors: tuple[str, ...] = ("napari-mzsr user",),
    overwrite: bool = False,
) -> Path:
    """Write a BioImage.IO model package (spec 0.5, a ``.zip``) of ``model``.

    Parameters
    ----------
    model : AdaptedModel, Profile, MZSRModel, str or path
        An adapted model (from :func:`napari_mzsr.iter_adapt`), a camera profile (from
        :func:`napari_mzsr.calibrate`) or a theta_M (shipped name or file), the last two
        exported as they are (no adaptation).
    path : path
        The ``.zip`` to write.
    sample : ndarray, shape (H, W) or (H, W, 3)
        An image of the user's data: its centre becomes the test tensors and the cover
        (for a theta_M or profile, its intensity map is the package's).
    name, description : str, optional
        The package's name and one-line description (defaults say what it is).
    scale : float or (float, float), optional
        The factor, for a theta_M or profile serving several; an adapted model's own
        otherwise. Factors must be fractions ``p / q`` with ``q <= 8``.
    authors : tuple of str
        Author names in the package.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
        The package written.

    Raises
    ------
    ValueError
        A bad argument (the message names it).
    ImportError
        ``bioimageio.spec`` is not installed.
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.suffix.lower() != ".zip":
        raise ValueError(f"path must end in .zip (a BioImage.IO package), got {path.name!r}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    sample = np.asarray(sample)
    if sample.ndim not in (2, 3) or (sample.ndim == 3 and sample.shape[-1] != 3):
        raise ValueError(
            f"sample must be a 2D grey or (H, W, 3) RGB image, got shape {sample.shape}"
        )
    if not (np.issubdtype(sample.dtype, np.integer) or np.issubdtype(sample.dtype, np.floating)):
        raise ValueError(f"sample must hold numbers, got dtype {sample.dtype}")
    item = exportable(model, sample, scale)
    name = _package_name(name, item)
    channels = 1 if sample.ndim == 2 else 3
    if item.model.info.channels != channels:
        raise ValueError(
            f"sample has {channels} channel(s) but the model takes {item.model.info.channels}"
        )
    (py, qy), (px, qx) = (rational_factor(s) for s in item.scale)
    crop = _test_crop(sample, (qy, qx))
    dtype = np.dtype(np.float32) if sample.dtype == np.float64 else sample.dtype
    test_input = _to_bcyx(crop.astype(dtype))
    scripted = script_network(item.net, item.scale, channels, item.intensity.unit_range)
    unit = item.intensity.forward(test_input)
    with torch.no_grad():
        out_unit = scripted(torch.from_numpy(unit)).numpy()
    low, high = item.intensity.low, item.intensity.high
    test_output = (out_unit.astype(np.float64) * (high - low) + low).astype(np.float32)
    sy, sx = item.scale
    description = description or (
        f"Zero-shot super-resolution (MZSR) by {sy:g} x {sx:g}: a {item.kind} exported by "
        "napari-mzsr."
    )
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        torch.jit.save(scripted, work / "weights.torchscript.pt")
        np.save(work / "test_input.npy", test_input)
        np.save(work / "test_output.npy", test_output)
        save_model(work / THETA_FILE, item.model.state_dict, item.model.info)
        before = imresize(unit[0].transpose(1, 2, 0).astype(np.float64), item.scale)
        before = before.reshape(before.shape[0], before.shape[1], -1).transpose(2, 0, 1)
        cover = np.concatenate([_display(before), _display(out_unit[0])], axis=1)
        from PIL import Image

        Image.fromarray(cover).save(work / "cover.png")
        (work / "README.md").write_text(_documentation(item, name, (qy, qx)), encoding="utf-8")
        descr = _description(item, work, name, description, authors, (py, qy, px, qx), test_input)
        from bioimageio.spec import save_bioimageio_package

        built = save_bioimageio_package(descr, output_path=work / "package.zip")
        with atomic_path(path, overwrite=overwrite) as tmp:
            shutil.copyfile(built, tmp)
    return path


def _description(
    item: Exportable,
    work: Path,
    name: str,
    description: str,
    authors: tuple[str, ...],
    factors: tuple[int, int, int, int],
    test_input: np.ndarray,
) -> Any:
    """The ModelDescr of the files in ``work``."""
    from bioimageio.spec.model import v0_5 as spec

    py, qy, px, qx = factors
    in_id = spec.TensorId("low_resolution")
    channels = test_input.shape[1]
    names = ["red", "green", "blue"] if channels == 3 else ["intensity"]
    channel = spec.ChannelAxis(channel_names=[spec.Identifier(n) for n in names])
    space_in = [
        spec.SpaceInputAxis(
            id=spec.AxisId(a), size=spec.ParameterizedSize(min=max(8, 2 * q), step=q)
        )
        for a, q in (("y", qy), ("x", qx))
    ]
    space_out = [
        spec.SpaceOutputAxis(
            id=spec.AxisId(a),
            size=spec.SizeReference(tensor_id=in_id, axis_id=spec.AxisId(a)),
            scale=q / p,
        )
        for a, p, q in (("y", py, qy), ("x", px, qx))
    ]
    low, high = item.intensity.low, item.intensity.high
    as_float = spec.EnsureDtypeDescr(kwargs=spec.EnsureDtypeKwargs(dtype="float32"))
    # Ends with a dtype, or the spec appends a cast back to the data type.
    preprocessing, postprocessing = [as_float], [as_float]
    if (low, high) != (0.0, 1.0):  # the spec refuses an identity scale_linear
        gain = 1.0 / (high - low)
        to_unit = spec.ScaleLinearDescr(
            kwargs=spec.ScaleLinearKwargs(gain=gain, offset=-low * gain)
        )
        to_data = spec.ScaleLinearDescr(kwargs=spec.ScaleLinearKwargs(gain=high - low, offset=low))
        preprocessing = [as_float, to_unit, as_float]
        postprocessing = [to_data, as_float]
    inputs = spec.InputTensorDescr(
        id=in_id,
        description="the low-resolution image",
        axes=[spec.BatchAxis(), channel, *space_in],
        test_tensor=spec.FileDescr(source=work / "test_input.npy"),
        data=spec.IntervalOrRatioDataDescr(type=str(test_input.dtype)),
        preprocessing=preprocessing,
    )
    outputs = spec.OutputTensorDescr(
        id=spec.TensorId("super_resolved"),
        description="the super-resolved image, in the input's units",
        axes=[spec.BatchAxis(), channel, *space_out],
        test_tensor=spec.FileDescr(source=work / "test_output.npy"),
        data=spec.IntervalOrRatioDataDescr(type="float32"),
        postprocessing=postprocessing,
    )
    cite_keys = ["mzsr"]
    if item.kind == "camera profile":
        cite_keys.append("drtl")
    if item.model.info.architecture == "scale-aware":
        cite_keys.append("arbsr")
    cite = [
        spec.CiteEntry(text=CITATIONS[k][0], url=spec.HttpUrl(CITATIONS[k][1])) for k in cite_keys
    ]
    from .. import __version__

    config = {
        CONFIG_KEY: {
            "version": __version__,
            "kind": item.kind,
            "scale": list(item.scale),
            "intensity": {
                "low": low,
                "high": high,
                "dtype": str(item.intensity.dtype),
                "mode": item.intensity.mode,
            },
            "theta_file": THETA_FILE,
            "provenance": json.loads(json.dumps(item.provenance, default=str)),
        }
    }
    return spec.ModelDescr(
        name=name,
        description=description,
        authors=[spec.Author(name=a) for a in authors],
        cite=cite,
        license=spec.LicenseId("MIT"),
        documentation=spec.FileDescr(source=work / "README.md"),
        covers=[spec.FileDescr(source=work / "cover.png")],
        tags=["super-resolution", "zero-shot", "mzsr", "napari-mzsr", "2d"],
        inputs=[inputs],
        outputs=[outputs],
        weights=spec.WeightsDescr(
            torchscript=spec.TorchscriptWeightsDescr(
                source=work / "weights.torchscript.pt",
                pytorch_version=spec.Version(torch.__version__.split("+")[0]),
            )
        ),
        attachments=[spec.FileDescr(source=work / THETA_FILE)],
        config=config,
    )


def is_package(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zip holding an ``rdf.yaml`` (a BioImage.IO package)."""
    path = Path(path)
    if path.suffix.lower() != ".zip" or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(
            n.endswith("rdf.yaml") or n.endswith("bioimageio.yaml") for n in archive.namelist()
        )


def theta_from_package(path: str | os.PathLike) -> MZSRModel:
    """The theta_M a package exported by :func:`export_bioimageio` carries.

    Raises
    ------
    ValueError
        A package this tool did not export (no theta_M file in it).
    """
    path = Path(path)
    with zipfile.ZipFile(path) as archive:
        members = [n for n in archive.namelist() if Path(n).name == THETA_FILE]
        if not members:
            raise ValueError(
                f"{path.name} is a BioImage.IO package without a napari-mzsr theta_M "
                f"({THETA_FILE}); only packages exported by napari-mzsr load as models"
            )
        with tempfile.TemporaryDirectory() as folder:
            target = Path(archive.extract(members[0], folder))
            model = load_model(target)
    return replace(model, source=str(path))
