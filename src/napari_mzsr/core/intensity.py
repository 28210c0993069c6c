"""Mapping image intensities to the network's [0, 1] range and back.

The network was trained on natural 8-bit images scaled to [0, 1]. Modes:

``"auto"`` (default)
    uint8 images and float images within [0, 1] are used as they are (``"dtype"``):
    that is the papers' protocol. Everything else (uint16, 12-bit data stored as
    uint16, any other integer type, float data outside [0, 1]) maps its 0.1 and 99.9
    percentiles to 0 and 1 (``"percentile"``): such data rarely fill their type, and a
    dim image in the network's range adapts badly (the L1 loss's gradient does not
    shrink with the contrast, so each step is too large for it).
``"dtype"``
    Integers divided by their type's maximum, 0 staying black (uint8 by 255, uint16 by
    65535, int16 by 32767; negative values are refused); floats taken as already in
    [0, 1]. 32- and 64-bit integer types are refused: their range is far wider than
    any data, so every pixel would map to about the same value.
``"percentile"``
    The given low/high percentiles of the data map to 0 and 1.
``"minmax"``
    The data's minimum and maximum map to 0 and 1.

Only the range of the input's own type is clipped: values beyond the percentiles stay
above 1 (or below 0) in the network's range instead of being cut off, so bright spots
keep their intensity. :meth:`IntensityMap.inverse` restores the input's units; for
integer types ``inverse(forward(x)) == x`` exactly whenever the mapped range spans at
most 2**23 values (float32 carries 24 bits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .checks import is_dask, one_of

MODES = ("auto", "dtype", "percentile", "minmax")
DEFAULT_PERCENTILES = (0.1, 99.9)
# Percentiles of bigger images are taken on an evenly strided sample of about this many
# pixels: as good for a contrast stretch, and a lazy image is never read whole.
PERCENTILE_SAMPLE = 1 << 22


@dataclass(frozen=True)
class IntensityMap:
    """Affine map ``unit = (value - low) / (high - low)``, its inverse, and the range
    the network's results are clipped to.

    Attributes
    ----------
    low, high : float
        Input values that map to 0 and 1.
    dtype : numpy.dtype
        The input's dtype (the default output dtype).
    mode : str
        The rule that chose ``low`` and ``high`` (see the module docstring).
    """

    low: float
    high: float
    dtype: np.dtype
    mode: str = "dtype"

    def forward(self, image: np.ndarray) -> np.ndarray:
        """Input units to float32 network units (not clipped)."""
        # Halves keep (high - low) finite for data spanning most of float64's range.
        half = self.high / 2 - self.low / 2
        return ((np.asarray(image, np.float64) / 2 - self.low / 2) / half).astype(np.float32)

    def inverse(self, unit: np.ndarray, dtype: np.dtype | str | None = None) -> np.ndarray:
        """Network units back to input units as ``dtype`` (default: the input's).

        Integer outputs are rounded to the nearest integer and clipped to the type's
        range; float outputs are clipped to the type's finite range.
        """
        dtype = np.dtype(self.dtype if dtype is None else dtype)
        half = self.high / 2 - self.low / 2
        values = np.asarray(unit, np.float64) * half * 2 + self.low
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            return np.clip(np.rint(values), info.min, info.max).astype(dtype)
        finite = np.finfo(dtype)
        return np.clip(values, finite.min, finite.max).astype(dtype)

    @property
    def unit_range(self) -> tuple[float, float]:
        """The input type's range in network units: results are clipped to it. Float
        data used as they are ([0, 1]) are clipped to [0, 1]; other float data not."""
        if np.issubdtype(self.dtype, np.integer):
            info = np.iinfo(self.dtype)
            low, high = self.forward(np.array([info.min, info.max], np.float64))
            return float(low), float(high)
        if self.mode == "dtype":
            return 0.0, 1.0
        return -math.inf, math.inf

    def describe(self) -> str:
        """One line for status messages, e.g. ``"percentiles: 103..3987 -> 0..1"``."""
        return f"{self.mode}: {self.low:.6g}..{self.high:.6g} -> 0..1"


def intensity_map(
    image: np.ndarray,
    mode: str = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
) -> IntensityMap:
    """Choose the map from ``image`` to the network's range.

    Parameters
    ----------
    image : ndarray or dask array
        Real numeric image data, any shape (a whole stack for one map across slices).
        Percentiles are taken on a strided sample of at most
        :data:`PERCENTILE_SAMPLE` pixels.
    mode : {"auto", "dtype", "percentile", "minmax"}
        See the module docstring.
    percentiles : (float, float)
        Low and high percentiles for ``"percentile"`` (and ``"auto"``).

    Raises
    ------
    ValueError
        For an unknown mode, bad percentiles, data ``"dtype"`` cannot map (float data
        outside [0, 1], negative values, 32/64-bit integers), or constant data under
        ``"percentile"``/``"minmax"``.
    """
    one_of(mode, "normalization", MODES)
    p_lo, p_hi = _check_percentiles(percentiles)
    dtype = np.dtype(image.dtype)
    if mode == "auto":
        mode = "dtype" if dtype == np.uint8 else "percentile"
        if mode == "percentile" and np.issubdtype(dtype, np.floating):
            lo, hi = _min_max(image)
            mode = "dtype" if lo >= 0 and hi <= 1 else "percentile"
        if mode == "percentile":
            lo, hi = _percentiles(image, p_lo, p_hi)
            if not hi > lo:  # (nearly) constant data: any invertible map will do
                lo, hi = _min_max(image)
                if not hi > lo:
                    return IntensityMap(lo - 0.5, lo + 0.5, dtype, "constant")
            return IntensityMap(lo, hi, dtype, f"percentiles {p_lo:g}-{p_hi:g}")
    if mode == "dtype":
        return _dtype_map(image, dtype)
    if mode == "percentile":
        lo, hi = _percentiles(image, p_lo, p_hi)
        label = f"percentiles {p_lo:g}-{p_hi:g}"
    else:
        lo, hi = _min_max(image)
        label = "minmax"
    if not hi > lo:
        raise ValueError(
            f"image intensities are constant ({lo:g}) within the {mode} range; use "
            "normalization 'auto' or 'dtype'"
        )
    return IntensityMap(lo, hi, dtype, label)


def _check_percentiles(percentiles: object) -> tuple[float, float]:
    try:
        lo, hi = (float(p) for p in percentiles)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(
            f"percentiles must be two numbers (low, high), got {percentiles!r}"
        ) from None
    if not 0 <= lo < hi <= 100:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles!r}")
    return lo, hi


def _dtype_map(image: np.ndarray, dtype: np.dtype) -> IntensityMap:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if info.bits > 16:
            raise ValueError(
                f"normalization 'dtype' cannot map {dtype} data (its range is far wider than "
                "any image); use normalization 'auto', 'percentile' or 'minmax'"
            )
        if info.min < 0:
            lo, _ = _min_max(image)
            if lo < 0:
                raise ValueError(
                    f"{dtype} image has negative values ({lo:g}); normalization 'dtype' maps "
                    f"0..{info.max}; use normalization 'auto', 'percentile' or 'minmax'"
                )
        return IntensityMap(0.0, float(info.max), dtype, "dtype")
    lo, hi = _min_max(image)
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(
            f"float image values span [{lo:g}, {hi:g}], outside [0, 1]; use normalization "
            "'auto', 'percentile' or 'minmax', or scale the data to [0, 1]"
        )
    return IntensityMap(0.0, 1.0, dtype, "dtype")


def _sample(image: np.ndarray) -> np.ndarray:
    """At most about :data:`PERCENTILE_SAMPLE` values of ``image``, evenly strided on
    every axis, as a numpy array (a dask array computes only that sample)."""
    shape = image.shape
    stride = max(1, math.ceil((image.size / PERCENTILE_SAMPLE) ** (1 / max(len(shape), 1))))
    index = tuple(slice(None, None, stride if n > stride else 1) for n in shape)
    sample = image[index]
    return np.asarray(sample.compute() if is_dask(sample) else sample)


def _percentiles(image: np.ndarray, low: float, high: float) -> tuple[float, float]:
    lo, hi = np.percentile(_sample(image), [low, high])
    return float(lo), float(hi)


def _min_max(image: np.ndarray) -> tuple[float, float]:
    if is_dask(image):
        import dask

        lo, hi = dask.compute(image.min(), image.max())
        return float(lo), float(hi)
    return float(np.min(image)), float(np.max(image))
