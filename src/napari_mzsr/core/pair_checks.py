"""Checks and measurements of real (LR, HR) pairs: registration, scale and scores.

A pair is registered at ``scale`` when the HR image equals the LR image magnified by
``scale`` with MATLAB's sample positions (:mod:`napari_mzsr.core.resize`): HR pixel ``i``
lies at LR position ``(i + 0.5) / scale - 0.5``. :func:`measure_pair` compares the HR
image, downscaled onto the LR grid, with the LR image in a 3 x 3 grid of tiles; each
tile's shift (phase correlation) is fitted by one translation and one isotropic
magnification. The magnification gives the pair's real ratio, and the two give the
largest misplacement of any pixel, the number the check compares with its tolerance.

Some data sets store the LR image already interpolated onto the HR grid (City100: the
short-focal shot resized to the long-focal one). Interpolation leaves a trace of the
original grid: the size of the second derivative oscillates with the grid's period.
:func:`interpolation_period` reads that period off the spectrum; reading the stored
image at that spacing (:func:`native_grid`) recovers the LR image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .metrics import psnr, ssim
from .resize import imresize, output_size

# BT.601 luma weights (full range): the checks only need relative intensities.
LUMA = np.array([0.299, 0.587, 0.114])
TILES = 3
MIN_LR_SIDE = 32
# Periods 2.05-6.5 px: below 2 the oscillation folds onto 1 - f and reads as p / (p - 1).
PERIOD_RANGE = (2.05, 6.5)
PERIOD_PADDING = 16
UPSAMPLE = 20


@dataclass(frozen=True)
class PairRegistration:
    """How an (LR, HR) pair deviates from registration at ``scale``.

    Attributes
    ----------
    scale : float
        The factor the pair was checked against.
    shift : (float, float)
        ``(dy, dx)`` in HR pixels by which the HR image is displaced from the LR image
        magnified by ``scale`` (at the image centre).
    ratio : float
        Measured magnification from LR to HR content (equals ``scale`` for a
        registered pair).
    error : float
        Largest misplacement in HR pixels of any image corner that the shift and the
        ratio imply.
    correlation : float
        Normalised correlation of the HR image on the LR grid with the LR image after
        the fit (1 for identical content; low values mean different scenes).
    """

    scale: float
    shift: tuple[float, float]
    ratio: float
    error: float
    correlation: float

    def describe(self) -> str:
        """One line: the measured shift, ratio and misplacement."""
        dy, dx = self.shift
        return (
            f"measured shift ({dy:+.2f}, {dx:+.2f}) HR px, ratio {self.ratio:.3f} "
            f"(scale {self.scale:g}), misplacement up to {self.error:.2f} px"
        )


def to_luma(image: np.ndarray) -> np.ndarray:
    """Float64 (H, W) luma of a grey (H, W) or colour (H, W, C>=3) image."""
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim == 3 and arr.shape[-1] >= 3:
        return arr[..., :3] @ LUMA
    if arr.ndim == 3 and arr.shape[-1] == 1:
        return arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {arr.shape}")
    return arr


def phase_correlation(reference: np.ndarray, moving: np.ndarray) -> tuple[np.ndarray, float]:
    """Translation between two same-sized 2D images by phase correlation.

    Parameters
    ----------
    reference, moving : ndarray, shape (H, W)
        Real images; each is windowed (Hann) after removing its mean.

    Returns
    -------
    shift : ndarray of float64, shape (2,)
        ``(dy, dx)`` such that ``reference(p) ~ moving(p - shift)``, refined to a
        fraction of a pixel by a parabola through the peak and its neighbours; within
        half the image size.
    peak : float
        Height of the correlation peak (1 for a pure translation, near 0 for unrelated
        images).
    """
    if reference.shape != moving.shape or reference.ndim != 2:
        raise ValueError(f"images must be 2D of one shape, got {reference.shape}, {moving.shape}")
    window = np.outer(np.hanning(reference.shape[0]), np.hanning(reference.shape[1]))
    fa = np.fft.fft2((reference - reference.mean()) * window)
    fb = np.fft.fft2((moving - moving.mean()) * window)
    cross = fa * np.conj(fb)
    cross /= np.maximum(np.abs(cross), 1e-12)
    surface = np.fft.ifft2(cross).real
    peak_index = np.unravel_index(int(np.argmax(surface)), surface.shape)
    coarse = np.array(
        [i - n if i >= n / 2 else i for i, n in zip(peak_index, surface.shape, strict=True)],
        dtype=np.float64,
    )
    shift = _refine_peak(cross, coarse)
    return shift, float(surface[peak_index])


def _refine_peak(cross: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """Position of the correlation maximum near ``coarse``, on a grid of 1 / UPSAMPLE px."""
    h, w = cross.shape
    offsets = (np.arange(2 * UPSAMPLE + 1) - UPSAMPLE) / UPSAMPLE  # +-1 px around the peak
    ky, kx = np.fft.fftfreq(h) * h, np.fft.fftfreq(w) * w
    rows = np.exp(2j * np.pi * np.outer(coarse[0] + offsets, ky) / h)
    cols = np.exp(2j * np.pi * np.outer(kx, coarse[1] + offsets) / w)
    fine = (rows @ cross @ cols).real
    iy, ix = np.unravel_index(int(np.argmax(fine)), fine.shape)
    return coarse + np.array([offsets[iy], offsets[ix]])


def measure_pair(lr: np.ndarray, hr: np.ndarray, scale: float) -> PairRegistration:
    """Measure the registration of an (LR, HR) pair at ``scale``.

    Parameters
    ----------
    lr : ndarray, shape (h, w) or (h, w, C)
        Low-resolution image, any real dtype (only relative intensities matter).
    hr : ndarray, shape (H, W) or (H, W, C)
        High-resolution image of the same scene, about ``scale`` times larger.
    scale : float
        Claimed magnification (> 1).

    Returns
    -------
    PairRegistration

    Raises
    ------
    ValueError
        If ``scale`` is not a number above 1, the LR image is smaller than
        ``MIN_LR_SIDE`` on a side, or either image is constant.

    Examples
    --------
    >>> from napari_mzsr.core.resize import imresize
    >>> hr = imresize(np.random.default_rng(0).random((24, 24)), 8)
    >>> reg = measure_pair(imresize(hr, 1 / 2), hr, 2.0)
    >>> abs(reg.ratio - 2.0) < 0.01 and reg.error < 0.3
    True
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)):
        raise ValueError(f"scale must be a number above 1, got {scale!r}")
    scale = float(scale)
    if not (math.isfinite(scale) and scale > 1):
        raise ValueError(f"scale must be a number above 1, got {scale!r}")
    small, large = to_luma(lr), to_luma(hr)
    if min(small.shape) < MIN_LR_SIDE:
        raise ValueError(f"LR image of shape {small.shape} is too small: needs {MIN_LR_SIDE} px")
    if np.ptp(small) == 0 or np.ptp(large) == 0:
        raise ValueError("a constant image cannot be registered")
    # Compare on the LR grid, where both images hold the same band of frequencies.
    on_lr = imresize(large, 1.0 / scale, output_shape=small.shape)
    h, w = small.shape
    side = max(MIN_LR_SIDE // 2, min(h, w) // 2)
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    rows, weights, shifts = [], [], []
    for ty in np.linspace(0, h - side, TILES).astype(int):
        for tx in np.linspace(0, w - side, TILES).astype(int):
            tile = (slice(ty, ty + side), slice(tx, tx + side))
            shift, peak = phase_correlation(on_lr[tile], small[tile])
            rows.append(np.array([ty, tx]) + (side - 1) / 2 - centre)
            shifts.append(shift)
            weights.append(max(peak, 1e-6))
    # shift(p) = t + a (p - c) in both axes: unknowns (t_y, t_x, a).
    offsets, shifts_arr, wts = np.array(rows), np.array(shifts), np.sqrt(np.array(weights))
    n = len(rows)
    design = np.zeros((2 * n, 3))
    design[0::2, 0], design[1::2, 1] = 1, 1
    design[0::2, 2], design[1::2, 2] = offsets[:, 0], offsets[:, 1]
    target = shifts_arr.reshape(-1)
    w2 = np.repeat(wts, 2)
    (t_y, t_x, a), *_ = np.linalg.lstsq(design * w2[:, None], target * w2, rcond=None)
    ratio = scale / (1.0 - a) if a < 1 else math.inf
    corners = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]]) * centre
    error_lr = np.max(np.hypot(t_y + a * corners[:, 0], t_x + a * corners[:, 1]))
    correlation = _fitted_correlation(on_lr, small, (t_y, t_x))
    return PairRegistration(
        scale=scale,
        shift=(float(t_y * scale), float(t_x * scale)),
        ratio=float(ratio),
        error=float(error_lr * scale),
        correlation=correlation,
    )


def _fitted_correlation(on_lr: np.ndarray, small: np.ndarray, shift: tuple[float, float]) -> float:
    """Correlation of the two LR-grid images after moving by the rounded shift."""
    dy, dx = (round(s) for s in shift)
    h, w = small.shape
    m = max(abs(dy), abs(dx))
    if 2 * m >= min(h, w) - 4:
        return 0.0
    a = on_lr[m : h - m, m : w - m]
    b = small[m - dy : h - m - dy, m - dx : w - m - dx]
    a, b = a - a.mean(), b - b.mean()
    denominator = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


def check_pair(
    lr: np.ndarray,
    hr: np.ndarray,
    scale: float,
    *,
    max_error: float = 1.0,
    min_correlation: float = 0.5,
    name: str = "pair",
) -> PairRegistration:
    """Measure a pair (:func:`measure_pair`) and refuse it unless registered at ``scale``.

    Parameters
    ----------
    lr, hr : ndarray
        As in :func:`measure_pair`.
    scale : float
        Claimed magnification.
    max_error : float
        Largest misplacement of any pixel allowed, in HR pixels.
    min_correlation : float
        Smallest normalised correlation of the registered images; below it the two
        images are taken to show different scenes.
    name : str
        How the pair is called in the message (``"pair 3"``).

    Returns
    -------
    PairRegistration
        Of an accepted pair.

    Raises
    ------
    ValueError
        One line naming the pair and giving the measured shift and ratio, when the HR
        size does not fit ``scale``, the pair is misregistered or mismatched.
    """
    lr_shape, hr_shape = tuple(np.shape(lr)[:2]), tuple(np.shape(hr)[:2])
    # An LR side of n covers HR sides from about (n - 1) * scale to n * scale.
    expected = tuple(output_size(n, 1.0 / scale) for n in hr_shape)
    if any(abs(e - n) > 1 for e, n in zip(expected, lr_shape, strict=True)):
        raise ValueError(
            f"{name}: LR shape {lr_shape} does not match HR shape {hr_shape} / scale {scale:g} "
            f"(expected about {expected}); crop both to the same field of view"
        )
    reg = measure_pair(lr, hr, scale)
    if reg.correlation < min_correlation:
        raise ValueError(
            f"{name}: LR and HR do not show the same scene (correlation {reg.correlation:.2f} "
            f"after registration; {reg.describe()})"
        )
    if reg.error > max_error:
        raise ValueError(
            f"{name}: misregistered: {reg.describe()}, more than {max_error:g} px allowed; "
            "register the pair or pass its measured ratio as the scale"
        )
    return reg


def interpolation_period(image: np.ndarray) -> tuple[float, float]:
    """Period (rows, columns) of the interpolation grid of an image stored upsampled.

    An image interpolated from a coarser grid has a second derivative whose size
    oscillates with the spacing of that grid; the period is read off the spectrum of
    the mean absolute second difference along each axis (zero-padded
    ``PERIOD_PADDING`` times, refined by a parabola).

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        Any real dtype.

    Returns
    -------
    (float, float)
        Grid spacing in pixels along rows and columns, within ``PERIOD_RANGE``
        (2.05-6.5 px; a spacing below 2 would read as ``p / (p - 1)``).

    Examples
    --------
    >>> from napari_mzsr.core.resize import imresize
    >>> coarse = np.random.default_rng(0).random((100, 120))
    >>> [round(p, 2) for p in interpolation_period(imresize(coarse, 2.5))]
    [2.5, 2.5]
    """
    luma = to_luma(image)
    periods = []
    for axis in (0, 1):
        signal = np.abs(np.diff(luma, 2, axis=axis)).mean(axis=1 - axis)
        if signal.size < 16:
            raise ValueError(f"image of shape {luma.shape} is too small to find a period")
        signal = (signal - signal.mean()) * np.hanning(signal.size)
        n = signal.size * PERIOD_PADDING
        power = np.abs(np.fft.rfft(signal, n)) ** 2
        freq = np.fft.rfftfreq(n)
        band = (freq > 1 / PERIOD_RANGE[1]) & (freq < 1 / PERIOD_RANGE[0])
        k = int(np.flatnonzero(band)[np.argmax(power[band])])
        lo, mid, hi = np.log(power[k - 1 : k + 2] + 1e-300)
        curvature = lo - 2 * mid + hi
        offset = 0.5 * (lo - hi) / curvature if curvature < 0 else 0.0
        periods.append(float(n / (k + offset)))
    return periods[0], periods[1]


def native_grid(image: np.ndarray, period: float) -> np.ndarray:
    """Read an upsampled image back at the spacing of its interpolation grid.

    Point sampling (MATLAB bicubic without antialiasing) at positions ``(i + 0.5) *
    period - 0.5``: the stored image is already band-limited to that grid, so an
    antialiasing filter would only blur it a second time. The result is registered
    with the stored image at ``scale = period``.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        Float or integer image; computed in float64 (float32 stays float32).
    period : float
        Grid spacing, e.g. from :func:`interpolation_period`.

    Returns
    -------
    ndarray of float, shape (ceil(H / period), ceil(W / period)[, C])
    """
    return imresize(image, 1.0 / period, antialias=False)


@dataclass(frozen=True)
class AlignedScore:
    """PSNR/SSIM of a result at its best integer shift against the reference."""

    psnr: float
    ssim: float
    shift: tuple[int, int]


def aligned_scores(
    result: np.ndarray, reference: np.ndarray, *, shave: int, search: int = 1
) -> AlignedScore:
    """PSNR and SSIM on Y (paper protocol) after the best integer shift.

    Real pairs are registered to a fraction of a pixel at best; the result is
    compared with the reference at every integer shift within ``search`` pixels and
    the best PSNR kept (SSIM at the same shift). Every shift is scored on the same
    reference pixels: ``shave + search`` pixels off every border.

    Parameters
    ----------
    result, reference : ndarray, shape (H, W) or (H, W, 3)
        uint8, or float in [0, 1]; same shape.
    shave : int
        Border ignored as in the paper protocol (``ceil(scale)`` for real pairs).
    search : int
        Largest shift tried along each axis.

    Returns
    -------
    AlignedScore
    """
    if np.shape(result) != np.shape(reference):
        raise ValueError(f"shapes differ: {np.shape(result)} vs {np.shape(reference)}")
    m = shave + search
    h, w = np.shape(reference)[:2]
    ref = reference[m : h - m, m : w - m]
    best: AlignedScore | None = None
    for dy in range(-search, search + 1):
        for dx in range(-search, search + 1):
            moved = result[m + dy : h - m + dy, m + dx : w - m + dx]
            value = psnr(moved, ref)
            if best is None or value > best.psnr:
                best = AlignedScore(value, math.nan, (dy, dx))
    assert best is not None
    dy, dx = best.shift
    value = ssim(result[m + dy : h - m + dy, m + dx : w - m + dx], ref)
    return AlignedScore(best.psnr, value, best.shift)
