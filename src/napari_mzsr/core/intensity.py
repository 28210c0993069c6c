"""Mapping image intensities to the network's [0, 1] range and back.

The network was trained on images in [0, 1]. By default (``"dtype"``) integers are
divided by their dtype's maximum (uint8 by 255, uint16 by 65535) and floats are taken
as already in [0, 1]. Microscopy data often fill only a fraction of the uint16 range;
``"percentile"`` maps the given low/high percentiles to 0 and 1 and ``"minmax"`` the
image's minimum and maximum. The inverse map restores the input's units exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODES = ("dtype", "percentile", "minmax")


@dataclass(frozen=True)
class IntensityMap:
    """Affine map ``unit = (value - low) / (high - low)`` and its inverse."""

    low: float
    high: float
    dtype: np.dtype

    def forward(self, image: np.ndarray) -> np.ndarray:
        """Input units to float32 unit range (not clipped)."""
        return ((image.astype(np.float64) - self.low) / (self.high - self.low)).astype(np.float32)

    def inverse(self, unit: np.ndarray, dtype: np.dtype | None = None) -> np.ndarray:
        """Unit range back to input units, rounded and clipped for integer dtypes."""
        dtype = np.dtype(self.dtype if dtype is None else dtype)
        values = unit.astype(np.float64) * (self.high - self.low) + self.low
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            return np.clip(np.rint(values), info.min, info.max).astype(dtype)
        return values.astype(dtype)


def intensity_map(
    image: np.ndarray,
    mode: str = "dtype",
    percentiles: tuple[float, float] = (0.1, 99.9),
) -> IntensityMap:
    """Choose the map from ``image`` to [0, 1].

    Parameters
    ----------
    image : ndarray
        Real numeric image, any shape.
    mode : {"dtype", "percentile", "minmax"}
        See the module docstring.
    percentiles : (float, float)
        Low and high percentiles for ``"percentile"``.

    Raises
    ------
    ValueError
        For an unknown mode, bad percentiles, float data outside [0, 1] under
        ``"dtype"``, or a constant image under ``"percentile"``/``"minmax"``.
    """
    dtype = image.dtype
    if mode == "dtype":
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            # Signed data keep 0 as black: only the positive range is mapped.
            return IntensityMap(0.0 if info.min >= 0 else float(info.min), float(info.max), dtype)
        lo, hi = float(image.min()), float(image.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(
                f"float image values span [{lo:g}, {hi:g}], outside [0, 1]; pass "
                "normalization='minmax' or 'percentile', or scale the data to [0, 1]"
            )
        return IntensityMap(0.0, 1.0, dtype)
    if mode == "percentile":
        p_lo, p_hi = percentiles
        if not 0 <= p_lo < p_hi <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
        lo, hi = (float(v) for v in np.percentile(image, [p_lo, p_hi]))
    elif mode == "minmax":
        lo, hi = float(image.min()), float(image.max())
    else:
        raise ValueError(f"normalization must be one of {MODES}, got {mode!r}")
    if not hi > lo:
        raise ValueError(
            f"image intensities are constant ({lo:g}) within the {mode} range; nothing to normalise"
        )
    return IntensityMap(lo, hi, dtype)
