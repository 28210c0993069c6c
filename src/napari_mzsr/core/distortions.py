"""Synthetic distortions: the auxiliary tasks of few-shot calibration (DRTL).

A distortion turns HR images into LR ones: blur with a kernel (Gaussian, motion-like, or
fitted to real pairs by :func:`fit_kernel`), subsample by the scale (``direct`` or MATLAB
``bicubic``, :mod:`napari_mzsr.core.degradation`, or ``point``: MATLAB bicubic *without*
antialiasing, i.e. reading the blurred image at the LR sample positions), then add
Gaussian noise and JPEG compression, both on the LR image as a camera would.
Each is one auxiliary task; :func:`auxiliary_distortions` is the default set, scaled to
the factor so that it spans blurs from nearly none to about twice the paper's widest.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from .degradation import blur_tensor, degrade_tensor
from .kernels import gaussian_kernel, validate_kernel
from .resize import imresize, imresize_tensor

SUBSAMPLING = ("direct", "bicubic", "point")
# LR pixels drawn per pair for the kernel fit, and the ridge weight (per pixel).
FIT_SAMPLES = 30_000
FIT_RIDGE = 1e-3


@dataclass(frozen=True, eq=False)
class Distortion:
    """One synthetic HR-to-LR distortion.

    Attributes
    ----------
    name : str
        Short label, e.g. ``"gauss2.9/bicubic/noise2"``.
    kernel : ndarray of float64, shape (k, k)
        Blur in the project's convention (centred, applied by correlation, sums to 1).
    subsampling : {"direct", "bicubic", "point"}
        How the blurred image is subsampled.
    noise : float
        Standard deviation of white Gaussian noise added to the LR image, in units of
        the [0, 1] range (0 for none).
    jpeg : int or None
        JPEG quality (1-95) of the LR image, None for no compression.
    """

    name: str
    kernel: np.ndarray = field(repr=False)
    subsampling: str = "bicubic"
    noise: float = 0.0
    jpeg: int | None = None

    def __post_init__(self) -> None:
        if self.subsampling not in SUBSAMPLING:
            raise ValueError(f"subsampling must be one of {SUBSAMPLING}, got {self.subsampling!r}")
        if not (math.isfinite(self.noise) and self.noise >= 0):
            raise ValueError(f"noise must be a non-negative number, got {self.noise!r}")
        if self.jpeg is not None and not 1 <= int(self.jpeg) <= 95:
            raise ValueError(f"jpeg quality must be in 1..95 or None, got {self.jpeg!r}")
        object.__setattr__(self, "kernel", validate_kernel(self.kernel))

    def apply(self, hr: torch.Tensor, scale: float, rng: np.random.Generator) -> torch.Tensor:
        """The LR images of ``hr``.

        Parameters
        ----------
        hr : Tensor, shape (N, C, H, W), float32 in [0, 1]
            HR images (C = 1 or 3; JPEG needs one of them).
        scale : float
            Downscaling factor (> 1, non-integer allowed).
        rng : numpy.random.Generator
            Source of the noise.

        Returns
        -------
        Tensor, shape (N, C, ceil(H / scale), ceil(W / scale)), float32 in [0, 1]
        """
        kernel = torch.from_numpy(self.kernel).to(hr)
        if self.subsampling == "point":
            lr = imresize_tensor(blur_tensor(hr, kernel), 1.0 / scale, antialias=False)
        else:
            lr = degrade_tensor(hr, kernel, scale, self.subsampling)
        lr = lr.clamp(0, 1)
        if self.noise:
            noise = rng.standard_normal(tuple(lr.shape)).astype(np.float32) * self.noise
            lr = (lr + torch.from_numpy(noise).to(lr.device)).clamp(0, 1)
        if self.jpeg is not None:
            lr = _jpeg(lr, int(self.jpeg))
        return lr


def _jpeg(images: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG-compress each (C, h, w) image of a batch at ``quality`` (uint8 round trip)."""
    out = []
    for image in images.detach().cpu():
        u8 = np.rint(image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(u8[..., 0] if u8.shape[-1] == 1 else u8).save(
            buffer, "JPEG", quality=quality
        )
        decoded = np.asarray(Image.open(buffer)).astype(np.float32) / 255
        decoded = decoded[..., None] if decoded.ndim == 2 else decoded
        out.append(torch.from_numpy(decoded).permute(2, 0, 1))
    return torch.stack(out).to(images.device)


def motion_kernel(length: float, angle: float, *, size: int | None = None) -> np.ndarray:
    """A straight motion blur: a line of ``length`` pixels at ``angle`` (radians,
    counter-clockwise from the x axis), drawn with sub-pixel weights and smoothed by a
    Gaussian of variance 0.25 so that it stays band-limited.

    Parameters
    ----------
    length : float
        Length of the path in HR pixels (> 0).
    angle : float
        Direction of the motion.
    size : int, optional
        Odd grid side (default: just enough for the line and its smoothing).

    Returns
    -------
    ndarray of float64, shape (size, size), sums to 1, centred on the middle pixel.

    Examples
    --------
    >>> k = motion_kernel(7, 0.0)
    >>> k.shape, bool(k[k.shape[0] // 2].sum() > 0.5)
    ((11, 11), True)
    """
    if not (math.isfinite(length) and length > 0 and math.isfinite(angle)):
        raise ValueError(f"motion blur needs a positive length and a finite angle, got {length}")
    if size is None:
        size = 2 * math.ceil(length / 2 + 1.5) + 1
    r = np.arange(size, dtype=np.float64) - size // 2
    xx, yy = np.meshgrid(r, r)
    samples = np.linspace(-length / 2, length / 2, max(16, int(8 * length)))
    # Sum of small Gaussians along the path: an antialiased line.
    kernel = np.zeros((size, size))
    for t in samples:
        cx, cy = t * math.cos(angle), -t * math.sin(angle)  # rows grow downwards
        kernel += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 0.25))
    return validate_kernel(kernel)


@dataclass(frozen=True, eq=False)
class FittedKernel:
    """A blur kernel fitted to real pairs by :func:`fit_kernel`.

    Attributes
    ----------
    kernel : ndarray of float64, shape (k, k)
        Non-negative, sums to 1, in the project's convention.
    gain, offset : float
        Luma gain (the raw kernel's sum) and offset of the fit.
    residual : float
        Root-mean-square misfit on the LR luma, in units of the [0, 1] range: noise,
        misregistration and whatever the model lacks.
    """

    kernel: np.ndarray = field(repr=False)
    gain: float
    offset: float
    residual: float


def fit_kernel(
    pairs: list[tuple[np.ndarray, np.ndarray]],
    scale: float,
    *,
    size: int | None = None,
    rng: np.random.Generator | None = None,
) -> FittedKernel:
    """Least-squares blur kernel that maps the HR images of real pairs onto their LR ones.

    Model, on the luma: ``LR = gain * point(k * HR) + offset``, where ``point`` reads an
    image at the LR sample positions (MATLAB bicubic without antialiasing) and ``k`` is
    a free ``size x size`` kernel on the HR grid, so that optics, sensor integration and
    processing are all one kernel. Linear in ``k``: each tap contributes the point
    sampling of the shifted HR image. ``FIT_SAMPLES`` random LR pixels per pair (away
    from the borders) and a small ridge keep it to seconds; negative taps are cut and
    the kernel renormalised.

    Parameters
    ----------
    pairs : list of (lr, hr)
        Registered pairs, float in [0, 1], (h, w[, C]) and (H, W[, C]).
    scale : float
        Magnification from LR to HR.
    size : int, optional
        Odd kernel side (default ``2 * ceil(2 * scale) + 1``).
    rng : numpy.random.Generator, optional
        Source of the sampled pixels (default seed 0).

    Returns
    -------
    FittedKernel
    """
    from .pair_checks import to_luma

    size = size or 2 * math.ceil(2 * scale) + 1
    if size % 2 == 0:
        raise ValueError(f"kernel size must be odd, got {size}")
    rng = rng or np.random.default_rng(0)
    half = size // 2
    design, target = [], []
    for lr, hr in pairs:
        small, large = to_luma(lr), to_luma(hr)
        padded = np.pad(large, half, mode="reflect")
        taps = [
            imresize(padded[dy : dy + large.shape[0], dx : dx + large.shape[1]], 1.0 / scale,
                     output_shape=small.shape, antialias=False)
            for dy in range(size)
            for dx in range(size)
        ]  # fmt: skip
        border = half // 2 + 2
        inner = (slice(border, small.shape[0] - border), slice(border, small.shape[1] - border))
        basis = np.stack([t[inner] for t in taps], axis=-1).reshape(-1, size * size)
        values = small[inner].reshape(-1)
        pick = rng.choice(values.size, min(FIT_SAMPLES, values.size), replace=False)
        design.append(basis[pick])
        target.append(values[pick])
    a = np.concatenate(design)
    a = np.concatenate([a, np.ones((a.shape[0], 1))], axis=1)
    y = np.concatenate(target)
    ridge = FIT_RIDGE * a.shape[0] * np.r_[np.ones(size * size), 0.0]
    solution = np.linalg.solve(a.T @ a + np.diag(ridge), a.T @ y)
    raw = solution[:-1].reshape(size, size)
    residual = float(np.sqrt(np.mean((a @ solution - y) ** 2)))
    kernel = np.clip(raw, 0, None)
    if kernel.sum() <= 0:
        raise ValueError("the fitted kernel has no positive mass: are the pairs registered?")
    return FittedKernel(kernel / kernel.sum(), float(raw.sum()), float(solution[-1]), residual)


def auxiliary_distortions(scale: float) -> tuple[Distortion, ...]:
    """The default auxiliary tasks for factor ``scale``: 16 distortions.

    Gaussian blurs of variance ``0.25 s``, ``s`` and ``2.5 s`` (the paper's kernel range is
    1 to 2.5 s, REFERENCE section 3) with both subsamplings; two anisotropic Gaussians and
    two motion blurs; the middle blur with noise (2 and 5 of 255), JPEG (quality 40 and
    75) and both; and plain bicubic downscaling (no blur).
    """
    s = float(scale)
    size = 2 * math.ceil(3 * math.sqrt(2.5 * s)) + 1
    gauss = {
        "small": gaussian_kernel(0.25 * s, size=size),
        "mid": gaussian_kernel(s, size=size),
        "large": gaussian_kernel(2.5 * s, size=size),
    }
    tasks = [
        Distortion(f"gauss-{name}/{sub}", kernel, sub)
        for name, kernel in gauss.items()
        for sub in ("direct", "bicubic")
    ]
    tasks += [
        Distortion("aniso-0/bicubic", gaussian_kernel(2.5 * s, 0.5 * s, 0.0, size=size)),
        Distortion("aniso-45/bicubic", gaussian_kernel(2.5 * s, 0.5 * s, math.pi / 4, size=size)),
        Distortion("motion-0/bicubic", motion_kernel(1.5 * s, 0.0, size=size)),
        Distortion("motion-90/bicubic", motion_kernel(1.5 * s, math.pi / 2, size=size)),
        Distortion("gauss-mid/noise2", gauss["mid"], noise=2 / 255),
        Distortion("gauss-mid/noise5", gauss["mid"], noise=5 / 255),
        Distortion("gauss-mid/jpeg40", gauss["mid"], jpeg=40),
        Distortion("gauss-mid/jpeg75", gauss["mid"], jpeg=75),
        Distortion("gauss-mid/noise2/jpeg75", gauss["mid"], noise=2 / 255, jpeg=75),
        Distortion("bicubic", np.ones((1, 1))),
    ]
    return tuple(tasks)


def synthetic_batch(
    hr: torch.Tensor, distortion: Distortion, scale: float, rng: np.random.Generator, margin: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Network input and target for HR crops ``hr`` (N, C, P + 2m, P + 2m).

    The crops are distorted, the LR upsampled back (MATLAB bicubic at ``scale``) and
    both cut to the central ``P x P``, away from the borders that a crop's blur and
    resize would see but a whole image would not.

    Returns
    -------
    (Tensor, Tensor)
        Input and target, each (N, C, P, P), float32.
    """
    lr = distortion.apply(hr, scale, rng)
    up = imresize_tensor(lr, scale, output_shape=hr.shape[-2:])
    inner = (
        slice(None),
        slice(None),
        slice(margin, -margin or None),
        slice(margin, -margin or None),
    )
    return up[inner], hr[inner]
