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

from collections.abc import Sequence

import numpy as np

SUFFIX = "(MZSR)"


def output_scale_translate(
    scale: Sequence[float],
    translate: Sequence[float],
    factor: float | tuple[float, float],
    n_spatial: int = 2,
    linear: np.ndarray | None = None,
    slice_index: Sequence[int] | None = None,
    degradation: str = "bicubic",
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


def format_factor(factor: float | tuple[float, float]) -> str:
    """``2`` -> ``"x2"``, ``2.5`` -> ``"x2.5"``, ``(2, 3)`` -> ``"x2x3"``."""
    if isinstance(factor, tuple | list):
        sy, sx = factor
        return f"x{sy:g}" if sy == sx else f"x{sy:g}x{sx:g}"
    return f"x{factor:g}"


def output_name(input_name: str, factor: float | tuple[float, float], preview: bool = False) -> str:
    """Name of the result layer, e.g. ``"cells x2 (MZSR)"``.

    Examples
    --------
    >>> output_name("cells", 2)
    'cells x2 (MZSR)'
    >>> output_name("cells", 2, preview=True)
    'cells x2 (MZSR, current slice)'
    """
    suffix = "(MZSR, current slice)" if preview else SUFFIX
    return f"{input_name} {format_factor(factor)} {suffix}"
