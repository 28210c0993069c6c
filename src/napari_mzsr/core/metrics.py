"""PSNR and SSIM with the paper's protocol (REFERENCE section 7).

Both images are rounded to uint8, converted to the Y channel of ITU-R BT.601
(``16 + (65.481 R + 128.553 G + 24.966 B) / 255``, rounded), shaved by ``shave`` pixels
on every border and compared with peak 255. Grayscale (2D) images are compared as they
are. Float inputs are taken to be in [0, 1] (overshoot up to :data:`FLOAT_SLACK` is
clipped; anything beyond is refused).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

# How far outside [0, 1] a float image may overshoot (a network's result does) and still
# be taken as [0, 1] data, clipped.
FLOAT_SLACK = 0.5


def _to_uint8(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        # Overshoot of a result is clipped; values far outside are another scale, whose
        # score would be meaningless (0..255 floats scored 4.4 dB).
        low, high = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if low < -FLOAT_SLACK or high > 1 + FLOAT_SLACK:
            raise ValueError(
                f"metrics take float images in [0, 1], got values from {low:.4g} to "
                f"{high:.4g}; for 0..255 data pass uint8 (np.rint, astype) or divide by 255"
            )
        return np.rint(np.clip(arr * 255.0, 0, 255)).astype(np.uint8)
    raise ValueError(f"metrics expect uint8 or float images in [0, 1], got {arr.dtype}")


def luminance(image: np.ndarray) -> np.ndarray:
    """Y channel (float64, rounded, 16..235) of an RGB image; 2D images pass through as
    float64. Input: uint8, or float in [0, 1]."""
    u8 = _to_uint8(image).astype(np.float64)
    if u8.ndim == 2:
        return u8
    if u8.ndim != 3 or u8.shape[2] < 3:
        raise ValueError(f"expected (H, W) or (H, W, 3) image, got shape {u8.shape}")
    r, g, b = u8[..., 0], u8[..., 1], u8[..., 2]
    return np.rint(16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0)


def _prepared(a: np.ndarray, b: np.ndarray, shave: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    ya, yb = luminance(a), luminance(b)
    if shave:
        if min(ya.shape) <= 2 * shave:
            raise ValueError(f"image of shape {ya.shape} is too small to shave {shave}")
        ya, yb = ya[shave:-shave, shave:-shave], yb[shave:-shave, shave:-shave]
    return ya, yb


def psnr(a: np.ndarray, b: np.ndarray, shave: int = 0) -> float:
    """PSNR in dB on the Y channel, paper protocol.

    Parameters
    ----------
    a, b : ndarray, shape (H, W) or (H, W, 3)
        uint8, or float in [0, 1] (rounded to uint8 first).
    shave : int
        Pixels removed from every border (the paper uses ``int(scale)``).

    Returns
    -------
    float
        ``inf`` for identical images (explicitly, not capped).

    Examples
    --------
    >>> gt = np.zeros((8, 8), np.uint8)
    >>> psnr(gt, gt)
    inf
    >>> round(psnr(gt, gt + 1), 2)
    48.13
    """
    ya, yb = _prepared(a, b, shave)
    mse = float(np.mean((ya - yb) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray, shave: int = 0) -> float:
    """SSIM on the Y channel, paper protocol: Gaussian window 11x11, sigma 1.5,
    K1 = 0.01, K2 = 0.03, L = 255, mean over the valid (unpadded) windows.

    Examples
    --------
    >>> img = np.random.default_rng(0).integers(0, 256, (32, 32)).astype(np.uint8)
    >>> ssim(img, img)
    1.0
    """
    ya, yb = _prepared(a, b, shave)
    if min(ya.shape) < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels after shaving, got {ya.shape}")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    r = np.arange(11) - 5
    g = np.exp(-(r**2) / (2 * 1.5**2))
    g /= g.sum()

    def filt(x: np.ndarray) -> np.ndarray:
        x = ndimage.correlate1d(ndimage.correlate1d(x, g, axis=0), g, axis=1)
        return x[5:-5, 5:-5]

    mu_a, mu_b = filt(ya), filt(yb)
    var_a = filt(ya * ya) - mu_a**2
    var_b = filt(yb * yb) - mu_b**2
    cov = filt(ya * yb) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float(np.mean(num / den))
