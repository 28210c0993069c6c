"""Estimating the blur kernel of a low-resolution image from the image alone.

The estimate is a Gaussian in the project's convention (:mod:`napari_mzsr.kernels`),
fitted to the image's own power spectrum. Natural images have a power spectrum close to
a power law ``A |u|^-alpha`` whatever the scale; a Gaussian blur of covariance ``Sigma``
multiplies it by ``exp(-4 pi^2 u^T Sigma u)`` and subsampling by ``s`` folds the
frequencies beyond the new Nyquist limit back in. In cycles per LR pixel ``g`` the
spectrum of the LR image is therefore modelled as::

    P(g) = N + sum_n A |g + n|^-alpha exp(-4 pi^2 (g + n)^T T (g + n)) |H((g + n) / s)|^2

with ``T = S^-1 Sigma S^-1`` (``S = diag(sx, sy)``, the factors of the two axes), ``n``
the integer aliasing shifts, ``H`` the antialiasing filter of MATLAB's bicubic
downscale along each resized axis (1 along a decimated one, see
:func:`~napari_mzsr.core.degradation.decimated_axes`) and ``N`` a white noise floor
(quantisation). The power law's slope ``alpha`` is fitted per image, so the blur
is told apart from the image's own smoothness by the shape of the fall-off, not its
level. The fit is a least-squares fit of the log of a Welch estimate of the spectrum,
averaged in polar cells; it takes well under a second.

Why not the self-supervised loss of theta_M: searching the Gaussian family for the
kernel whose son theta_M adapts to best (the L1 loss after 1, 3 or 5 steps, on the
adaptation crops or held-out ones) finds the kernel theta_M inverts best, whatever
the image's kernel: on the first four Set14 images it chose the same variance for true
kernels of variance 0.2 and 2.0 and for g^d_ani, had a covariance error of 0.58 on
g^d_ani (0.16 here) and took 7.7 s per image (0.06 s here), with the first-pass
direct-x2; see ``benchmarks/results/kernel_estimators_Set14-first4_cpu.md``.

What the estimate cannot see: blur below the scene's own smoothness, since the image
only shows their sum. A variance of 0.5 or less is overestimated, by far on smooth
scenes; MZSR punishes an overestimated kernel much more than an underestimated one.
Scenes dominated by one texture direction (stripes) also read as anisotropic blur.
Measured with the shipped direct-x2/bicubic-x2 and MZSR(10): on Set5 the estimated
kernel is within 0.2 dB of the true one for g^d_2.0, g^d_ani and g^b_1.3 but 3.5 dB
below for g^d_0.2 (``benchmarks/results/set5_estimate_refinements_cpu.md``); on all of
Set14 0.33 dB below on average over the paper's kernel distribution and the four
Table 2 kernels, 1.12 dB for g^d_0.2, against 1.78 dB for the fixed default kernel
(``benchmarks/results/kernel_estimation_Set14_cpu.md``). Back-projection with an
overestimated kernel makes things worse (g^d_0.2 on Set5: 27.2 dB with estimate +
self-ensemble + back-projection against 30.7 without them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from .checks import check_image
from .degradation import decimated_axes
from .kernels import check_kernel_size, gaussian_kernel
from .resize import bicubic_response, parse_scale

DEGRADATIONS = ("direct", "bicubic")
MIN_VARIANCE = 0.1
MIN_IMAGE_SIDE = 32
# Spectrum cells: radii from LOW_FREQUENCY to the Nyquist limit 0.5 (cycles per pixel),
# angles over half a turn (the power spectrum of a real image is point-symmetric).
LOW_FREQUENCY = 0.05
RADIAL_CELLS = 12
ANGULAR_CELLS = 24
# Cells within AXIS_GAP degrees of the x or y axis are left out: horizontal and vertical
# structures (and the windows' edges) put extra power there, which the fit would read as
# anisotropic blur. On BSD200 and Kodak24 LR images this cut the covariance error of
# g^d_2.0 from 0.23 to 0.20 and the overestimate of g^d_0.2 from +1.6 to +0.95.
AXIS_GAP = 12.0
START_BLURS = (0.1, 0.3, 0.8)
# ITU-R BT.601 luma weights, as the metrics of the paper protocol.
LUMA = np.array([65.481, 128.553, 24.966]) / 219.0


@dataclass(frozen=True)
class KernelEstimate:
    """A Gaussian blur kernel estimated from an image.

    Attributes
    ----------
    kernel : ndarray of float64, shape (size, size)
        The kernel in the project's convention (centred, sums to 1).
    covariance : ndarray of float64, shape (2, 2)
        ``Sigma`` in (x, y) order, in high-resolution pixels^2.
    l1, l2 : float
        Variances along the principal axes, ``l1 >= l2``.
    theta : float
        Angle of the first principal axis in [0, pi), counter-clockwise from the x axis
        (the arguments of :func:`napari_mzsr.kernels.gaussian_kernel`).
    slope : float
        Fitted power-law exponent ``alpha`` of the image's spectrum (about 2 for
        natural images).
    residual : float
        Root-mean-square misfit of the log spectrum (natural log units); large values
        (above about 0.5) mean the image is far from the model and the estimate is
        rough.
    """

    kernel: np.ndarray
    covariance: np.ndarray
    l1: float
    l2: float
    theta: float
    slope: float
    residual: float

    @property
    def params(self) -> tuple[float, float, float]:
        """``(l1, l2, theta)``, accepted as a kernel by the whole package."""
        return self.l1, self.l2, self.theta

    def describe(self) -> str:
        """One line for progress messages and layer metadata."""
        if math.isclose(self.l1, self.l2, rel_tol=0.05):
            return f"Gaussian, variance {(self.l1 + self.l2) / 2:.2f}"
        return f"Gaussian, l1 {self.l1:.2f}, l2 {self.l2:.2f}, theta {self.theta:.2f}"


def estimate_kernel(
    image: np.ndarray,
    scale: float | tuple[float, float] = 2,
    degradation: str = "direct",
    *,
    size: int = 21,
    rgb: bool | None = None,
    window: int = 64,
) -> KernelEstimate:
    """Estimate the Gaussian blur kernel an image was degraded with.

    Parameters
    ----------
    image : ndarray, shape (H, W), (H, W, 3) or (H, W, 4)
        The low-resolution image, any real dtype and intensity range (the fit does not
        depend on it). RGB(A) is reduced to its luma; alpha is ignored. Never modified.
    scale : float or (float, float)
        Super-resolution factor (>= 1), per axis if a pair: the covariance is returned
        in the pixels of the high-resolution image, as the meta-test needs it.
    degradation : {"direct", "bicubic"}
        Subsampling of the model the kernel is for; it sets the aliasing model.
    size : int
        Odd side of the returned kernel grid.
    rgb : bool, optional
        Whether a last axis of 3 or 4 holds colours (default: guessed from the shape).
    window : int
        Side of the Welch windows (clipped to the image); larger windows resolve the
        spectrum finer but average fewer windows.

    Returns
    -------
    KernelEstimate
        The kernel, its covariance and principal variances; the variances are clipped
        to ``[MIN_VARIANCE, (size // 2 / 3)^2]`` so that the kernel fits its grid.

    Raises
    ------
    ValueError
        If the image is not 2D grey or RGB(A), holds NaN or infinite values, is smaller
        than ``MIN_IMAGE_SIDE`` pixels on a side, or is constant; or if an option is
        out of range.

    Examples
    --------
    >>> from napari_mzsr import degrade, gaussian_kernel, imresize
    >>> hr = imresize(np.random.default_rng(0).random((64, 64)), 4)
    >>> lr = degrade(hr, gaussian_kernel(4.0, 1.0, -0.5), 2)
    >>> est = estimate_kernel(lr, scale=2)
    >>> est.kernel.shape, est.theta < np.pi
    ((21, 21), True)
    """
    if degradation not in DEGRADATIONS:
        raise ValueError(f"degradation must be one of {DEGRADATIONS}, got {degradation!r}")
    sy, sx = parse_scale(scale)
    if sy < 1 or sx < 1:
        raise ValueError(f"scale factors must be >= 1, got {scale!r}")
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 16:
        raise ValueError(f"window must be an integer of at least 16, got {window!r}")
    check_kernel_size(size)
    luma = _luma(np.asarray(image), rgb)
    side = min(int(window), *luma.shape)
    freq_x, freq_y, log_power, weight = _binned_log_spectrum(luma, side)
    fit = _fit_spectrum(freq_x, freq_y, log_power, weight, (sy, sx), degradation)
    stretch = np.diag([sx, sy])  # (x, y) order, as the covariance
    covariance = stretch @ fit.blur @ stretch
    covariance = _clip_variances(covariance, MIN_VARIANCE, (size // 2 / 3) ** 2)
    l1, l2, theta = _principal_axes(covariance)
    return KernelEstimate(
        kernel=gaussian_kernel(l1, l2, theta, size=size),
        covariance=covariance,
        l1=l1,
        l2=l2,
        theta=theta,
        slope=fit.slope,
        residual=fit.residual,
    )


def _luma(arr: np.ndarray, rgb: bool | None) -> np.ndarray:
    """Float64 (H, W) luma of a grey or RGB(A) image, checked."""
    if check_image(arr, rgb):
        luma = arr[..., :3].astype(np.float64) @ LUMA
    else:
        luma = arr.astype(np.float64)
    if not np.all(np.isfinite(luma)):
        # Integer input cannot hold NaN, but a huge float64 can overflow the luma sum.
        raise ValueError("image contains NaN or infinite values")
    if min(luma.shape) < MIN_IMAGE_SIDE:
        raise ValueError(
            f"image of {luma.shape[0]}x{luma.shape[1]} pixels is too small to estimate a "
            f"kernel: each side needs at least {MIN_IMAGE_SIDE} pixels"
        )
    spread = float(np.ptp(luma))
    if spread == 0:
        raise ValueError("image is constant: there is no detail to estimate a kernel from")
    return luma / spread


def _binned_log_spectrum(
    luma: np.ndarray, side: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Welch power spectrum (Hann windows of ``side`` pixels, half overlap), its log
    averaged in polar cells. Returns each cell's mean frequency (x, y), mean log power
    and a least-squares weight (the square root of its number of frequencies)."""
    step = side // 2
    h, w = luma.shape
    hann = np.hanning(side + 2)[1:-1]  # no zero-weight edge samples
    taper = np.outer(hann, hann)
    rows = range(0, h - side + 1, step)
    cols = range(0, w - side + 1, step)
    power = np.zeros((side, side))
    for i in rows:  # one row of windows at a time bounds the memory
        windows = np.stack([luma[i : i + side, j : j + side] for j in cols])
        windows = (windows - windows.mean(axis=(1, 2), keepdims=True)) * taper
        power += (np.abs(np.fft.fft2(windows)) ** 2).sum(axis=0)
    power /= len(rows) * len(cols) * (taper**2).sum()
    tiny = np.finfo(np.float64).tiny
    freq = np.fft.fftfreq(side)
    fy, fx = np.meshgrid(freq, freq, indexing="ij")
    # Fold onto the upper half plane: P(-g) = P(g) for a real image.
    flip = (fy < 0) | ((fy == 0) & (fx < 0))
    fx, fy = np.where(flip, -fx, fx), np.where(flip, -fy, fy)
    radius = np.hypot(fx, fy)
    used = (radius >= LOW_FREQUENCY) & (radius <= 0.5)
    ring = ((radius - LOW_FREQUENCY) / (0.5 - LOW_FREQUENCY) * RADIAL_CELLS).astype(int)
    sector = (np.arctan2(fy, fx) / np.pi * ANGULAR_CELLS).astype(int)
    ring, sector = np.minimum(ring, RADIAL_CELLS - 1), np.minimum(sector, ANGULAR_CELLS - 1)
    cell = (ring * ANGULAR_CELLS + sector)[used]
    n_cells = RADIAL_CELLS * ANGULAR_CELLS
    count = np.bincount(cell, minlength=n_cells)
    kept = count > 0

    def cell_mean(values: np.ndarray) -> np.ndarray:
        return np.bincount(cell, values[used], n_cells)[kept] / count[kept]

    cx, cy = cell_mean(fx), cell_mean(fy)
    direction = np.degrees(np.arctan2(cy, cx)) % 90.0
    off_axis = np.minimum(direction, 90.0 - direction) > AXIS_GAP
    log_power = cell_mean(np.log(np.maximum(power, tiny)))
    weight = np.sqrt(count[kept])
    return cx[off_axis], cy[off_axis], log_power[off_axis], weight[off_axis]


@dataclass(frozen=True)
class _SpectrumFit:
    blur: np.ndarray  # T, (x, y) order, LR pixels^2
    slope: float
    residual: float


def _fit_spectrum(
    fx: np.ndarray,
    fy: np.ndarray,
    log_power: np.ndarray,
    weight: np.ndarray,
    scale: tuple[float, float],
    degradation: str,
) -> _SpectrumFit:
    """Least-squares fit of the module's spectrum model to the binned log spectrum;
    ``scale`` is ``(sy, sx)``."""
    sy, sx = scale

    def shifts(s: float) -> range:
        reach = math.ceil(s / 2)
        return range(-reach, reach + 1) if s > 1 else range(1)

    resized_y, resized_x = (
        s > 1 and not decimated
        for s, decimated in zip(scale, decimated_axes(scale, degradation), strict=True)
    )
    terms = []
    for ny in shifts(sy):
        for nx in shifts(sx):
            gx, gy = fx + nx, fy + ny
            response = np.ones_like(gx)
            if resized_x:
                response = response * bicubic_response(gx / sx, sx)
            if resized_y:
                response = response * bicubic_response(gy / sy, sy)
            extra = np.log(np.maximum(response, np.finfo(np.float64).tiny))
            quad = np.stack([gx * gx, 2 * gx * gy, gy * gy])
            terms.append((np.log(np.hypot(gx, gy)), -4 * np.pi**2 * quad, extra))

    def model(p: np.ndarray) -> np.ndarray:
        log_amp, slope, txx, txy, tyy, log_noise = p
        blur = np.array([txx, txy, tyy])
        exponents = [
            log_amp - slope * log_radius + blur @ quad + extra for log_radius, quad, extra in terms
        ]
        return np.logaddexp.reduce([*exponents, np.full_like(fx, log_noise)], axis=0)

    def residuals(p: np.ndarray) -> np.ndarray:
        return weight * (model(p) - log_power)

    solutions = [
        least_squares(
            residuals,
            [log_power.max(), 2.0, blur, 0.0, blur, log_power.min() - 2.0],
            x_scale=[1, 1, 0.1, 0.1, 0.1, 1],
        )
        for blur in START_BLURS
    ]
    solution = min(solutions, key=lambda s: s.cost)
    _, slope, txx, txy, tyy, _ = solution.x
    misfit = model(solution.x) - log_power
    rms = float(np.sqrt(np.sum(weight**2 * misfit**2) / np.sum(weight**2)))
    return _SpectrumFit(np.array([[txx, txy], [txy, tyy]]), float(slope), rms)


def _clip_variances(covariance: np.ndarray, low: float, high: float) -> np.ndarray:
    values, vectors = np.linalg.eigh((covariance + covariance.T) / 2)
    return vectors @ np.diag(np.clip(values, low, high)) @ vectors.T


def _principal_axes(covariance: np.ndarray) -> tuple[float, float, float]:
    """``(l1, l2, theta)`` with ``l1 >= l2`` and theta in [0, pi) of a covariance in
    (x, y) order."""
    values, vectors = np.linalg.eigh(covariance)
    x, y = vectors[:, 1]
    theta = math.atan2(y, x) % math.pi
    return float(values[1]), float(values[0]), theta
