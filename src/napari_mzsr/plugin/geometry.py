"""Where a super-resolved layer goes in napari's world coordinates, and what it is called.

Pure numpy, no napari import, so the arithmetic is unit-tested without a display.
napari puts pixel centres on integer data coordinates. Where the result's pixels sit
depends on the subsampling theta_M was trained with, because the network reproduces the
geometry of its training pairs:

- ``bicubic``: MATLAB's downscale puts each low-resolution pixel at the centre of the
  ``f x f`` block it stands for, so ``scale = input_scale / f`` and
  ``translate = input_translate - input_scale * (f - 1) / (2 f)`` (the first output
  centre sits a quarter of an input pixel before the input's first centre at ``f = 2``).
- ``direct``: the low-resolution pixel ``i`` *is* the high-resolution pixel ``f * i``
  (``[0::f]``), so output pixel ``f * i`` lies on input pixel ``i``:
  ``scale = input_scale / f`` and ``translate = input_translate``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# The quick preview adapts one step on the whole visible region, then infers it: time
# grows with its pixels. MZSR(1) of 256 x 256 pixels took 1.3 s on an idle 2-core
# AVX-512 CPU (benchmarks/results/meta_test_speed_cpu.md); 160 x 160 is 0.39 of that.
PREVIEW_MAX_SIDE = 160
SEPARATOR = " · "  # between what was done and the input's name, in a result's name


def output_scale_translate(
    scale: Sequence[float],
    translate: Sequence[float],
    factor: float | tuple[float, float],
    n_spatial: int = 2,
    linear: np.ndarray | None = None,
    slice_index: Sequence[int] | None = None,
    degradation: str = "bicubic",
    origin: Sequence[float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scale and translate of a layer super-resolved ``factor`` times on its last
    ``n_spatial`` axes, so that it overlays the input exactly.

    Parameters
    ----------
    scale, translate : sequence of float
        The input layer's ``scale`` and ``translate`` (one value per data axis,
        excluding an RGB colour axis).
    factor : float or (float, float)
        Super-resolution factor, or factors ``(sy, sx)`` of the last two spatial axes.
    n_spatial : int
        Number of trailing axes that were super-resolved.
    linear : ndarray, shape (ndim, ndim), optional
        The input's rotation and shear (napari's data-to-world linear part without
        the scale); the half-pixel offset is mapped through it so that rotated or
        sheared layers overlay too. Default: identity.
    slice_index : sequence of int, optional
        For a result holding one slice of a stack (length-1 leading axes): the index of
        that slice on the leading axes, so that it sits where the slice was.
    degradation : {"bicubic", "direct"}
        Subsampling of the model's training pairs (see the module docstring).
    origin : sequence of float, optional
        For a result of a crop of the input (a preview of the visible region): the
        data coordinates, on every axis, of the crop's first pixel. Generalises
        ``slice_index``; give one or the other.

    Returns
    -------
    scale, translate : ndarray of float64
        For the output layer.

    Examples
    --------
    >>> s, t = output_scale_translate([1.0, 0.5, 0.5], [0.0, 10.0, 0.0], 2)
    >>> s.tolist(), t.tolist()
    ([1.0, 0.25, 0.25], [0.0, 9.875, -0.125])
    """
    scale = np.asarray(scale, dtype=np.float64)
    translate = np.asarray(translate, dtype=np.float64)
    ndim = scale.size
    if translate.size != ndim or not 1 <= n_spatial <= ndim:
        raise ValueError(
            f"scale {scale.tolist()} and translate {translate.tolist()} do not fit "
            f"{n_spatial} spatial axes"
        )
    factors = np.ones(ndim)
    factors[ndim - n_spatial :] = factor[-1] if isinstance(factor, tuple | list) else factor
    if isinstance(factor, tuple | list) and n_spatial >= 2:
        factors[ndim - 2] = factor[0]
    if not np.all(factors >= 1):
        raise ValueError(f"super-resolution factor must be >= 1, got {factor!r}")
    spatial = np.zeros(ndim, dtype=bool)
    spatial[ndim - n_spatial :] = True
    new_scale = scale / factors
    if degradation not in ("bicubic", "direct"):
        raise ValueError(f"degradation must be 'bicubic' or 'direct', got {degradation!r}")
    decimated = (degradation == "direct") & (factors == np.round(factors))  # core.degradation
    centre_shift = np.where(decimated, 0.0, -(factors - 1) / (2 * factors))
    offset_data = np.where(spatial, centre_shift, 0.0)
    if origin is not None:
        if slice_index is not None:
            raise ValueError("give slice_index or origin, not both")
        start = np.asarray(origin, dtype=np.float64)
        if start.size != ndim:
            raise ValueError(f"origin {list(origin)} does not fit {ndim} axes")
        offset_data = offset_data + start
    if slice_index is not None:
        lead = np.asarray(slice_index, dtype=np.float64)
        if lead.size != ndim - n_spatial:
            raise ValueError(
                f"slice index {list(slice_index)} does not fit {ndim - n_spatial} slice axes"
            )
        offset_data[: lead.size] = lead
    # Offsets are in input pixels: scale them, then rotate/shear like the layer does.
    offset = offset_data * scale
    if linear is not None:
        offset = np.asarray(linear, dtype=np.float64) @ offset
    return new_scale, translate + offset


def layer_look(
    layer: Any,
    *,
    scale: Sequence[float],
    translate: Sequence[float],
    settings: Mapping[str, Any],
) -> dict[str, Any]:
    """Keyword arguments (all but the name) of a result layer that looks like its input
    ``layer`` (a napari Image, read only) and sits at ``scale``/``translate``.

    The result keeps the input's rotation, shear, affine, units, axis labels,
    blending, opacity, contrast limits, gamma and, for grey data, colormap. Its metadata
    are the input's with ``"mzsr"`` replaced by the run's ``settings`` and the source's
    name and id (``"source"``, ``"source_id"``, which the widget uses to find a result's
    input). Use it as ``napari.layers.Image(data, name=..., **look)``.
    """
    metadata = {k: v for k, v in layer.metadata.items() if k != "mzsr"}
    metadata["mzsr"] = {"source": layer.name, "source_id": str(layer.unique_id), **settings}
    look: dict[str, Any] = {
        "rgb": layer.rgb,
        "scale": scale,
        "translate": translate,
        "rotate": layer.rotate,
        "shear": layer.shear,
        "affine": layer.affine.affine_matrix,
        "units": layer.units,
        "axis_labels": layer.axis_labels,
        "blending": layer.blending,
        "opacity": layer.opacity,
        "contrast_limits": layer.contrast_limits,
        "gamma": layer.gamma,
        "metadata": metadata,
    }
    if not layer.rgb:
        look["colormap"] = layer.colormap
    return look


def format_factor(factor: float | tuple[float, float]) -> str:
    """``2`` -> ``"x2"``, ``2.5`` -> ``"x2.5"``, ``(2, 3)`` -> ``"x2x3"``."""
    if isinstance(factor, tuple | list):
        sy, sx = factor
        return f"x{sy:g}" if sy == sx else f"x{sy:g}x{sx:g}"
    return f"x{factor:g}"


def output_name(
    input_name: str,
    factor: float | tuple[float, float],
    preview: bool = False,
    *,
    details: Sequence[str] = (),
) -> str:
    """Name of the result layer: the factor and what was done, then the input's name.

    What differs between two results of one layer comes first and the name stays short:
    napari elides the middle of a long name in the layer list.

    Examples
    --------
    >>> output_name("cells", 2)
    'x2 · cells'
    >>> output_name("cells", 2, preview=True)
    'x2 current slice · cells'
    >>> output_name("cells", (2, 3), details=["10 steps", "per slice"])
    'x2x3 10 steps, per slice · cells'
    """
    parts = [*(["current slice"] if preview else []), *details]
    done = f" {', '.join(parts)}" if parts else ""
    return f"{format_factor(factor)}{done}{SEPARATOR}{input_name}"


def result_placement(
    layer: object,
    scale: float | Sequence[float],
    *,
    model: object = None,
    kernel: object = None,
    degradation: str | None = None,
) -> dict[str, object]:
    """Keyword arguments for ``viewer.add_image`` that make a result of
    :func:`~napari_mzsr.super_resolve` (or :func:`~napari_mzsr.super_resolve_stack`)
    of ``layer.data`` overlay ``layer``.

    Parameters
    ----------
    layer : napari.layers.Image
        The input layer (anything with its ``scale``, ``translate``, ``rotate``,
        ``shear`` and ``affine``; only ``scale`` and ``translate`` are required).
    scale : float or (float, float)
        The factor(s) given to the super-resolution call.
    model : str, path or loaded model, optional
        The model given to that call; where the result's pixels sit depends on its
        subsampling (see the module docstring).
    kernel : optional
        The kernel given to that call: with no ``model``, the model is the one the
        call chose from the scale, the layer's channels and the kernel
        (:func:`~napari_mzsr.pipeline.options.choose_model`).
    degradation : {"direct", "bicubic"}, optional
        The model's subsampling, if known; then ``model`` and ``kernel`` are not needed
        (and torch is never imported).

    Returns
    -------
    dict
        ``scale`` and ``translate`` (and ``rotate``, ``shear``, ``affine`` copied from
        the layer where it has them): ``viewer.add_image(sr, **placement)``.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> layer = SimpleNamespace(scale=[0.5, 0.5], translate=[0.0, 0.0])
    >>> result_placement(layer, 2, degradation="direct")["scale"].tolist()
    [0.25, 0.25]
    """
    pair = _pair(scale)
    rgb = bool(getattr(layer, "rgb", False))
    if degradation is None:
        degradation = _model_degradation(model, kernel, pair, rgb)
    rotate, shear = getattr(layer, "rotate", None), getattr(layer, "shear", None)
    linear = None
    if rotate is not None and shear is not None:
        from napari.utils.transforms import Affine

        ndim = len(layer.scale)
        linear = Affine(rotate=rotate, shear=shear, ndim=ndim).linear_matrix
    new_scale, new_translate = output_scale_translate(
        layer.scale, layer.translate, pair, 2, linear=linear, degradation=degradation
    )
    out: dict[str, object] = {"scale": new_scale, "translate": new_translate}
    if linear is not None:
        out["rotate"], out["shear"] = rotate, shear
    affine = getattr(layer, "affine", None)
    if affine is not None:
        out["affine"] = getattr(affine, "affine_matrix", affine)
    return out


def _pair(scale: float | Sequence[float]) -> tuple[float, float]:
    if isinstance(scale, tuple | list | np.ndarray):
        if len(scale) != 2:
            raise ValueError(f"scale must be a factor or (sy, sx), got {scale!r}")
        return float(scale[0]), float(scale[1])
    return float(scale), float(scale)


def _model_degradation(model: object, kernel: object, scale: tuple[float, float], rgb: bool) -> str:
    """The subsampling of ``model``, or of the model the pipeline chooses without one."""
    info = getattr(model, "info", model)
    if hasattr(info, "degradation"):
        return info.degradation
    from ..pipeline.options import choose_model, preferred_degradation

    if model is None:
        model = choose_model(scale, rgb, preferred_degradation(kernel))
    from ..io.model_file import load_model

    return load_model(model).info.degradation


def visible_region(
    corners: np.ndarray, shape: Sequence[int], *, max_side: int, min_side: int = 1
) -> tuple[slice, slice]:
    """The input rows and columns of a 2-D image seen in the viewer, for a preview.

    Parameters
    ----------
    corners : ndarray, shape (N, 2)
        Data coordinates (row, column) of the corners of the visible area.
    shape : (int, int)
        Height and width of the image.
    max_side : int
        Longest side of the region: a larger view is cut to its centre.
    min_side : int
        Shortest side (the kernel size): a smaller view is widened around its centre.

    Returns
    -------
    (slice, slice)
        Within the image; the whole image if the view does not overlap it.

    Examples
    --------
    >>> visible_region(np.array([[10.2, -5.0], [40.7, 300.0]]), (64, 128), max_side=256)
    (slice(10, 42, None), slice(0, 128, None))
    """
    corners = np.asarray(corners, dtype=np.float64)
    region = []
    for axis, n in enumerate(shape):
        lo = int(np.floor(corners[:, axis].min() + 0.5))
        hi = int(np.ceil(corners[:, axis].max() + 0.5))
        lo, hi = max(lo, 0), min(hi, int(n))
        if hi <= lo:  # the view misses the image along this axis: take all of it
            lo, hi = 0, int(n)
        want = min(max(hi - lo, min_side), max_side, int(n))
        centre = (lo + hi) // 2
        lo = min(max(centre - want // 2, 0), int(n) - want)
        region.append(slice(lo, lo + want))
    return region[0], region[1]
