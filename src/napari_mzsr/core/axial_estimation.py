"""Estimating the axial blur of a Z stack from the stack itself.

The sample is assumed statistically isotropic (no preferred direction), as tissue and
organoids are. The power spectrum of any 2-D plane through an isotropic volume is then
isotropic within that plane, ``Q(|k|)``. In an XZ or YZ plane of the stack, the Z axis
was blurred by the axial Gaussian ``g`` (standard deviation ``sigma`` in lateral pixels)
and subsampled by ``z_factor``; the lateral axis was not. In lateral pixels (``u``
along the lateral axis, ``w`` along Z, both in cycles per lateral pixel) the plane's
spectrum is therefore modelled as::

    P(u, w) = N + sum_n Q(sqrt(u^2 + w_n^2)) exp(-4 pi^2 sigma^2 w_n^2) |H(w_n)|^2

with ``w_n = (k_z + n) / z_factor`` for the plane's own Z frequency ``k_z`` (cycles per
slice) and the aliasing shifts ``n``, ``H`` the antialiasing filter of MATLAB's bicubic
downscale for a non-integer factor (1 for direct subsampling) and ``N`` a white noise
floor. The lateral direction (``w`` near 0) shows ``Q`` itself; the Z direction shows
it times the axial blur: comparing the two at equal frequency gives ``sigma``. ``Q`` is
left free (a piecewise-linear log power in log frequency, fitted together with
``sigma`` and ``N``), so the sample's own spectrum, its lateral PSF and noise are told
apart from the axial blur by direction, not by shape.

Why the lateral reference comes from the side planes and not from the XY slices: an XY
slice of the stack is a thick section (the axial blur integrates over Z), and its
spectrum is a weighted integral of the 3-D spectrum over the axial frequency, not
``Q``. Only within a plane that contains Z do both directions see the same ``Q``.

What it cannot see: an anisotropic sample (a flat cell layer, fibres running mostly in
XY) reads as axial blur or sharpness; sigma well below the slice spacing is blurred by
aliasing into the noise of the fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from .axial import FWHM_PER_SIGMA, axial_method, check_z_factor
from .checks import is_dask
from .resize import bicubic_response
from .tiling import centre_window

MIN_SLICES = 8
MIN_SIDE = 32
# Windows: up to MAX_Z_WINDOW slices along Z and `window` pixels laterally.
MAX_Z_WINDOW = 32
# Radial knots of the free log spectrum Q, log-spaced up to the lateral Nyquist limit.
KNOTS = 10
ALIASES = 2
START_SIGMAS = (0.5, 1.5, 3.0, 6.0)
# Fine Z frequency grid of the window leakage model, per Welch bin.
OVERSAMPLE = 4
MAX_PLANES = 48
# Planes are read through this central square of the lateral extent (a lazy stack is
# never read whole): 1024 pixels give thousands of Welch windows.
ESTIMATE_SIDE = 1024


@dataclass(frozen=True)
class AxialKernelEstimate:
    """An axial Gaussian blur estimated from a stack.

    Attributes
    ----------
    sigma : float
        Standard deviation along Z, in lateral pixels (the output voxels).
    residual : float
        Root-mean-square misfit of the log spectrum (natural log units); values well
        above about 0.5 mean the stack is far from the model.
    planes : int
        Side planes (XZ and YZ) the spectrum was measured on.
    """

    sigma: float
    residual: float
    planes: int

    @property
    def fwhm(self) -> float:
        """Full width at half maximum along Z, in lateral pixels."""
        return self.sigma * FWHM_PER_SIGMA

    def describe(self) -> str:
        return f"axial Gaussian, sigma {self.sigma:.2f} px (FWHM {self.fwhm:.2f} px)"


def side_plane_positions(length: int, count: int) -> np.ndarray:
    """``count`` evenly spaced plane indices in ``[0, length)`` (fewer if shorter)."""
    count = max(1, min(count, length))
    return np.unique(np.linspace(0, length - 1, count).round().astype(np.int64))


def estimate_axial_sigma(
    volume: object,
    z_factor: float,
    *,
    window: int = 64,
    planes: int = MAX_PLANES,
    max_sigma: float = 12.0,
) -> AxialKernelEstimate:
    """Estimate the axial Gaussian blur of an anisotropic stack from its side planes.

    Parameters
    ----------
    volume : array-like, shape (Z, Y, X)
        One channel, any real dtype and range (the fit does not depend on it); numpy,
        dask or any array that supports numpy indexing. Only ``planes`` XZ and as many
        YZ planes through the central :data:`ESTIMATE_SIDE` pixels are read. Never
        modified.
    z_factor : float
        Ratio of the Z step to the lateral pixel size (> 1).
    window : int
        Lateral side of the Welch windows (clipped to the stack, at least 16).
    planes : int
        XZ planes, and YZ planes, to read (evenly spaced).
    max_sigma : float
        Upper bound of the estimate, in lateral pixels.

    Returns
    -------
    AxialKernelEstimate

    Raises
    ------
    ValueError
        A stack that is not 3-D, has fewer than :data:`MIN_SLICES` slices or
        :data:`MIN_SIDE` pixels on a lateral side, is constant or not finite; or a bad
        option.
    """
    z_factor = check_z_factor(z_factor)
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 16:
        raise ValueError(f"window must be an integer of at least 16, got {window!r}")
    if isinstance(planes, bool) or not isinstance(planes, (int, np.integer)) or planes < 1:
        raise ValueError(f"planes must be a positive integer, got {planes!r}")
    shape = tuple(np.shape(volume))
    if len(shape) != 3:
        raise ValueError(f"volume must be (Z, Y, X), got shape {shape}")
    if shape[0] < MIN_SLICES or min(shape[1:]) < MIN_SIDE:
        raise ValueError(
            f"volume of shape {shape} is too small to estimate the axial blur: it needs "
            f"at least {MIN_SLICES} slices and {MIN_SIDE} pixels on each lateral side"
        )
    stack = [np.asarray(p, dtype=np.float64) for p in _read_planes(volume, shape, planes)]
    if not all(np.all(np.isfinite(p)) for p in stack):
        raise ValueError("volume contains NaN or infinite values")
    spread = max(float(np.ptp(p)) for p in stack)
    if spread == 0:
        raise ValueError("volume is constant: there is no detail to estimate a blur from")
    wz, wl = min(MAX_Z_WINDOW, shape[0]), min(int(window), *shape[1:])
    power, counts = _side_spectrum([p / spread for p in stack], wz, wl)
    sigma, residual = _fit(power, counts, wz, wl, z_factor, max_sigma)
    return AxialKernelEstimate(sigma, residual, len(stack))


def _read_planes(volume: object, shape: tuple[int, ...], count: int) -> list[np.ndarray]:
    """``count`` XZ and ``count`` YZ planes through the central :data:`ESTIMATE_SIDE`
    pixels square (all Z); a dask array is read in one computation, each chunk once."""
    rows, cols = centre_window(shape, ESTIMATE_SIDE)
    ys = rows.start + side_plane_positions(rows.stop - rows.start, count)
    xs = cols.start + side_plane_positions(cols.stop - cols.start, count)
    planes = [volume[:, int(y), cols] for y in ys] + [volume[:, rows, int(x)] for x in xs]
    if is_dask(volume):
        import dask

        planes = list(dask.compute(*planes))
    return [np.asarray(p) for p in planes]


def _side_spectrum(planes: list[np.ndarray], wz: int, wl: int) -> tuple[np.ndarray, np.ndarray]:
    """Welch spectrum of the planes (Hann windows of wz x wl, half overlap), folded onto
    non-negative frequencies: power (wz // 2 + 1, wl // 2 + 1) on the bins ``k / wz``
    (cycles per slice) by ``k / wl`` (cycles per pixel), and the number of bins folded
    onto each."""
    taper_z = np.hanning(wz + 2)[1:-1]
    taper = np.outer(taper_z, np.hanning(wl + 2)[1:-1])
    power = np.zeros((wz, wl))
    count = 0
    for plane in planes:
        rows = range(0, plane.shape[0] - wz + 1, max(1, wz // 2))
        cols = range(0, plane.shape[1] - wl + 1, max(1, wl // 2))
        windows = np.stack([plane[i : i + wz, j : j + wl] for i in rows for j in cols])
        windows = (windows - windows.mean(axis=(1, 2), keepdims=True)) * taper
        power += (np.abs(np.fft.fft2(windows)) ** 2).sum(axis=0)
        count += len(windows)
    power /= count * (taper**2).sum()
    # Fold the four quadrants: an isotropic sample has mirror-symmetric statistics.
    iz = np.minimum(np.arange(wz), wz - np.arange(wz))
    il = np.minimum(np.arange(wl), wl - np.arange(wl))
    folded = np.zeros((wz // 2 + 1, wl // 2 + 1))
    counts = np.zeros_like(folded)
    np.add.at(folded, (iz[:, None], il[None, :]), power)
    np.add.at(counts, (iz[:, None], il[None, :]), 1.0)
    return folded / counts, counts


def _leakage(wz: int, oversample: int) -> tuple[np.ndarray, np.ndarray]:
    """Z frequencies ``nu`` (cycles per slice, a fine periodic grid) and the weights
    with which the Hann window of ``wz`` slices mixes them into each Welch bin ``k / wz``
    (rows sum to 1): the bins of a short window are far from point samples."""
    taper = np.hanning(wz + 2)[1:-1]
    nu = np.arange(wz * oversample) / (wz * oversample) - 0.5
    bins = np.arange(wz // 2 + 1) / wz
    offsets = bins[:, None] - nu[None, :]
    response = np.exp(-2j * np.pi * offsets[..., None] * np.arange(wz)) @ taper
    weights = np.abs(response) ** 2
    return nu, weights / weights.sum(axis=1, keepdims=True)


def _fit(
    power: np.ndarray, counts: np.ndarray, wz: int, wl: int, z_factor: float, max_sigma: float
) -> tuple[float, float]:
    """Least-squares fit of the module's model; returns sigma and the rms misfit."""
    tiny = np.finfo(np.float64).tiny
    nu, leak = _leakage(wz, OVERSAMPLE)
    ku = np.arange(wl // 2 + 1) / wl
    kept = np.ones_like(power, dtype=bool)
    kept[0, 0] = False
    log_power = np.log(np.maximum(power[kept], tiny))
    weight = np.sqrt(counts[kept])
    low = 1.0 / max(wl, wz * z_factor)
    log_knots = np.linspace(math.log(low), math.log(0.5), KNOTS)
    w_n = [(nu[:, None] + n) / z_factor for n in range(-ALIASES, ALIASES + 1)]
    log_r = [0.5 * np.log(np.maximum(ku[None, :] ** 2 + w**2, low**2)) for w in w_n]
    if axial_method(z_factor) == "bicubic":
        extra = [np.log(np.maximum(bicubic_response(w, z_factor), tiny)) for w in w_n]
    else:
        extra = [np.zeros_like(w) for w in w_n]

    def log_q(values: np.ndarray, lr: np.ndarray) -> np.ndarray:
        # Linear in log radius between knots; the end segments extend beyond them.
        inner = np.interp(lr, log_knots, values)
        slope_lo = (values[1] - values[0]) / (log_knots[1] - log_knots[0])
        slope_hi = (values[-1] - values[-2]) / (log_knots[-1] - log_knots[-2])
        inner = np.where(lr < log_knots[0], values[0] + slope_lo * (lr - log_knots[0]), inner)
        return np.where(lr > log_knots[-1], values[-1] + slope_hi * (lr - log_knots[-1]), inner)

    def model(p: np.ndarray) -> np.ndarray:
        values, variance, log_noise = p[:KNOTS], p[KNOTS], p[KNOTS + 1]
        terms = [
            log_q(values, lr) - 4 * np.pi**2 * variance * w**2 + ex
            for lr, w, ex in zip(log_r, w_n, extra, strict=True)
        ]
        fine = np.exp(np.logaddexp.reduce(terms, axis=0))
        return np.log(np.maximum(leak @ fine, tiny) + math.exp(log_noise))[kept]

    def residuals(p: np.ndarray) -> np.ndarray:
        return weight * (model(p) - log_power)

    # Start Q from the lateral direction (the lowest Z frequency row).
    start_q = np.interp(log_knots, np.log(ku[1:]), np.log(np.maximum(power[0, 1:], tiny)))
    lower = np.r_[np.full(KNOTS, -np.inf), 0.0, -np.inf]
    upper = np.r_[np.full(KNOTS, np.inf), max_sigma**2, np.inf]
    solutions = []
    for sigma in START_SIGMAS:
        start = np.r_[start_q, min(sigma, max_sigma) ** 2 * 0.999, log_power.min() - 1.0]
        solutions.append(least_squares(residuals, start, bounds=(lower, upper)))
    best = min(solutions, key=lambda s: s.cost)
    misfit = model(best.x) - log_power
    rms = float(np.sqrt(np.sum(weight**2 * misfit**2) / np.sum(weight**2)))
    return float(math.sqrt(max(best.x[KNOTS], 0.0))), rms
