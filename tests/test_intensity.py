"""Intensity mapping (napari_mzsr.core.intensity): exact round trips for every integer
type and mode, the auto rule, and what each mode refuses."""

from __future__ import annotations

import numpy as np
import pytest

from napari_mzsr.core.intensity import MODES, IntensityMap, intensity_map

INTEGER_TYPES = [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64, np.int64]


def _values(dtype) -> np.ndarray:
    """Values that fill a realistic part of ``dtype`` (at most 2**20 levels for the wide
    types: camera data, not the type's whole range)."""
    info = np.iinfo(dtype)
    lo = max(info.min, -(2**19))
    hi = min(info.max, 2**20)
    rng = np.random.default_rng(0)
    values = rng.integers(lo, hi, size=(37, 41), endpoint=True, dtype=np.int64)
    values[0, :2] = lo, hi
    if info.min >= 0 or lo >= 0:
        values = np.abs(values)
    return values.astype(dtype)


@pytest.mark.parametrize("dtype", INTEGER_TYPES)
@pytest.mark.parametrize("mode", MODES)
def test_inverse_of_forward_is_exact(dtype, mode):
    data = _values(dtype)
    if mode == "dtype" and (np.iinfo(dtype).bits > 16 or data.min() < 0):
        with pytest.raises(ValueError, match="normalization"):
            intensity_map(data, mode)
        return
    imap = intensity_map(data, mode)
    unit = imap.forward(data)
    assert unit.dtype == np.float32
    np.testing.assert_array_equal(imap.inverse(unit), data)


def test_auto_rule():
    u8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert intensity_map(u8).mode == "dtype"
    assert (intensity_map(u8).low, intensity_map(u8).high) == (0.0, 255.0)
    floats = np.linspace(0.1, 0.9, 100).reshape(10, 10)
    assert intensity_map(floats).mode == "dtype"
    twelve_bit = (np.arange(4096, dtype=np.uint16) + 0).reshape(64, 64)
    imap = intensity_map(twelve_bit)
    assert imap.mode.startswith("percentiles")
    assert 0 < imap.low < 10 and 4080 < imap.high < 4095
    wide = np.arange(100, dtype=np.int64).reshape(10, 10)
    assert intensity_map(wide).high < 100  # mapped by its data, not by int64's range
    assert intensity_map(np.full((8, 8), 7, np.uint16)).mode == "constant"


def test_nothing_but_the_types_range_is_clipped():
    data = np.array([[0, 100, 200, 4000]], np.uint16)
    imap = IntensityMap(100.0, 200.0, np.dtype(np.uint16), "percentiles")
    assert imap.unit_range == pytest.approx((-1.0, (65535 - 100) / 100))
    # A bright spot beyond the high percentile keeps its value.
    np.testing.assert_array_equal(imap.inverse(imap.forward(data)), data)


def test_integer_output_is_rounded_not_truncated():
    imap = IntensityMap(0.0, 255.0, np.dtype(np.uint8))
    unit = np.array([0.7 / 255, 1.49 / 255, 254.6 / 255, 1.2], np.float32)
    np.testing.assert_array_equal(imap.inverse(unit), [1, 1, 255, 255])


def test_huge_float_ranges_stay_finite():
    data = np.array([[-1e308, 0.0, 1e308]])
    imap = intensity_map(data, "minmax")
    unit = imap.forward(data)
    assert np.all(np.isfinite(unit)) and unit.min() == 0 and unit.max() == 1
    back = imap.inverse(np.array([[0.0, 0.5, 1.0, 2.0]]))
    assert np.all(np.isfinite(back))


@pytest.mark.parametrize(
    ("data", "mode", "match"),
    [
        (np.zeros((4, 4), np.int64), "dtype", "cannot map int64"),
        (np.full((4, 4), -3, np.int16), "dtype", "negative"),
        (np.full((4, 4), 2.0), "dtype", "outside"),
        (np.ones((4, 4)), "minmax", "constant"),
        (np.ones((4, 4)), "sideways", "normalization must be one of"),
    ],
)
def test_refusals_name_the_problem(data, mode, match):
    with pytest.raises(ValueError, match=match):
        intensity_map(data, mode)


def test_bad_percentiles():
    with pytest.raises(ValueError, match="percentiles"):
        intensity_map(np.arange(16.0).reshape(4, 4), "percentile", (50, 10))
