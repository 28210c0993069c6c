"""Comparing results that two code paths reach by different float summation orders.

Bit-for-bit equality holds only for the same computation on the same CPU: a tile size,
a batch shape or a SIMD width changes the order in which a convolution sums, and the
result rounded to an integer dtype can then flip by one level where it sits on a .5.
These helpers allow exactly that and nothing a real bug would produce (a seam, a shift,
a wrong kernel moves many pixels by many levels).
"""

import numpy as np

# Pixels that may sit within rounding of a .5 boundary: a handful in a test image.
MAX_FLIPPED_FRACTION = 1e-3


def assert_same_rounded(actual: np.ndarray, expected: np.ndarray) -> None:
    """Integer images equal up to one level on at most :data:`MAX_FLIPPED_FRACTION` of
    their values; float images equal to float32 rounding."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    if np.issubdtype(actual.dtype, np.integer):
        diff = np.abs(actual.astype(np.int64) - expected.astype(np.int64))
        assert diff.max(initial=0) <= 1, f"values differ by up to {diff.max()} levels"
        flipped = np.count_nonzero(diff) / diff.size
        assert flipped <= MAX_FLIPPED_FRACTION, f"{flipped:.2%} of the values differ"
    else:
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
