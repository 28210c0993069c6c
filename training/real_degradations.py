"""The degradations of real instruments, as a distribution to draw meta-learning tasks from.

A real LR image is an HR scene blurred by optics (defocus, motion, an Airy-like PSF of a
microscope, anisotropic or heavy-tailed lens blur, or nothing beyond the pixel),
subsampled by a sensor or by software (``direct``, ``area`` or MATLAB ``bicubic``, at
any factor pair), with Poisson-Gaussian sensor noise, sometimes the unsharp masking a
camera applies before it saves (phones sharpen every picture: on City100 the phone's
images lose to bicubic interpolation wherever a network assumes they are not sharpened),
8-bit quantisation and sometimes JPEG compression. :func:`sample_degradation` draws one
such chain and :func:`degrade_hr` applies it.

Kernels are drawn in LR pixels and drawn onto the HR grid stretched by the factor of
each axis, so a blur means the same to the image whatever the factors (as
:func:`training.scale_tasks.sample_pair_kernel`), and an axis of factor 1 gets a blur
of at most about one pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import special

from napari_mzsr.core.degradation import blur_tensor, degrade_tensor
from napari_mzsr.core.jpeg import jpeg_tensor
from napari_mzsr.core.kernels import gaussian_kernel

Pair = tuple[float, float]
FAMILIES = ("none", "gaussian", "generalised", "disk", "motion", "airy")
SUBSAMPLINGS = ("direct", "area", "bicubic")
# Sub-samples per HR pixel and axis when a kernel is drawn: a 0.3 LR-px disk at x1 still
# covers part of a pixel instead of falling between samples.
SUPERSAMPLING = 5


@dataclass(frozen=True)
class Degradation:
    """One HR-to-LR chain.

    Attributes
    ----------
    family : str
        One of :data:`FAMILIES`.
    kernel : ndarray of float64, shape (k, k)
        The blur on the HR grid (odd size, centred, sums to 1).
    subsampling : {"direct", "area", "bicubic"}
    gain, floor : float
        Poisson-Gaussian noise of the LR image in [0, 1] units: variance
        ``gain * x + floor``.
    jpeg : int or None
        JPEG quality of the LR image, None for none.
    sharpen : (float, float) or None
        Unsharp masking of the LR image, ``(variance, amount)``: ``x + amount * (x -
        blur(x))`` with a Gaussian of that variance in LR px^2; None for none.
    """

    family: str
    kernel: np.ndarray
    subsampling: str
    gain: float = 0.0
    floor: float = 0.0
    jpeg: int | None = None
    sharpen: tuple[float, float] | None = None

    def describe(self) -> str:
        noise = (
            f"/noise{math.sqrt(self.gain * 0.5 + self.floor) * 255:.1f}"
            if self.gain or self.floor
            else ""
        )
        jpeg = f"/jpeg{self.jpeg}" if self.jpeg else ""
        sharpen = f"/sharpen{self.sharpen[1]:.1f}" if self.sharpen else ""
        return f"{self.family}{self.kernel.shape[0]}/{self.subsampling}{noise}{sharpen}{jpeg}"


def _covariance(rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    """A random 2x2 covariance (LR px^2): variances l1 ~ U[low, high], l2 ~ U[low, l1],
    uniform orientation (the paper's scheme)."""
    theta = rng.uniform(0.0, math.pi)
    l1 = rng.uniform(low, high)
    l2 = rng.uniform(low, l1)
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    return rotation @ np.diag([l1, l2]) @ rotation.T


def draw_kernel(profile, radius: float, scale: Pair) -> np.ndarray:
    """The kernel of ``profile(u, v)`` (a function of LR-pixel offsets, x then y) on the
    HR grid of the factors ``scale = (sy, sx)``, supersampled and normalised.

    ``radius`` (LR px) bounds the profile's support (a disc); the grid is odd and centred.
    """
    sy, sx = scale
    half = max(1, math.ceil(radius * max(sy, sx)))
    steps = (np.arange(SUPERSAMPLING) + 0.5) / SUPERSAMPLING - 0.5
    axis = (np.arange(-half, half + 1)[:, None] + steps[None, :]).ravel()
    y, x = np.meshgrid(axis / sy, axis / sx, indexing="ij")
    # Cut at the radius in LR pixels: the grid reaches further along a factor-1 axis.
    values = np.where(x * x + y * y <= radius * radius, profile(x, y), 0.0)
    n = 2 * half + 1
    kernel = values.reshape(n, SUPERSAMPLING, n, SUPERSAMPLING).mean(axis=(1, 3))
    return kernel / kernel.sum()


def sample_kernel(rng: np.random.Generator, family: str, scale: Pair) -> np.ndarray:
    """A kernel of ``family`` for the factors ``scale``; see the module docstring.

    Ranges (LR pixels): Gaussian variances 0.05-1.25 (the paper's 0.2-5 HR px^2 at x2);
    generalised Gaussian of the same covariance with shape 0.5-3 (heavy tails to flat
    tops); defocus disks of radius 0.3-1.5; motion lines of length 0.5-2.5; Airy PSFs
    whose first dark ring lies 0.6-1.8 px out (a microscope sampled from twice to
    coarser than Nyquist).
    """
    if family == "none":
        return np.ones((1, 1))
    if family in ("gaussian", "generalised"):
        inverse = np.linalg.inv(_covariance(rng, 0.05, 1.25))
        shape = 1.0 if family == "gaussian" else rng.uniform(0.5, 3.0)
        radius = 3.0 * math.sqrt(1.25) if shape >= 1 else 4.0 * math.sqrt(1.25)

        def profile(x, y):
            q = inverse[0, 0] * x * x + 2 * inverse[0, 1] * x * y + inverse[1, 1] * y * y
            return np.exp(-0.5 * q**shape)

        return draw_kernel(profile, radius, scale)
    if family == "disk":
        r = rng.uniform(0.3, 1.5)
        return draw_kernel(lambda x, y: (x * x + y * y <= r * r).astype(float), r + 0.1, scale)
    if family == "motion":
        length, angle = rng.uniform(0.5, 2.5), rng.uniform(0.0, math.pi)
        ux, uy = math.cos(angle), math.sin(angle)

        def profile(x, y):
            along = np.clip(x * ux + y * uy, -length / 2, length / 2)
            d2 = (x - along * ux) ** 2 + (y - along * uy) ** 2
            return np.exp(-0.5 * d2 / 0.2**2)

        return draw_kernel(profile, length / 2 + 0.6, scale)
    if family == "airy":
        rho = rng.uniform(0.6, 1.8) / 1.2197  # first zero of J1(pi r / rho) at 1.2197 rho

        def profile(x, y):
            t = np.pi * np.hypot(x, y) / rho
            safe = np.where(t == 0, 1.0, t)
            return np.where(t == 0, 1.0, (2 * special.j1(safe) / safe) ** 2)

        return draw_kernel(profile, 2.7 * rho, scale)
    raise ValueError(f"kernel family must be one of {FAMILIES}, got {family!r}")


def sample_degradation(rng: np.random.Generator, scale: Pair, cfg: dict[str, Any]) -> Degradation:
    """Draw one chain for the factors ``scale`` from the recipe's ``real_tasks`` table
    ``cfg`` (family weights, shares of noisy, JPEG and sharpened tasks, their ranges;
    with ``sharpen_share`` 0 the draws are those of recipes written before it)."""
    weights = np.array([cfg["families"][name] for name in FAMILIES], dtype=np.float64)
    family = FAMILIES[int(rng.choice(len(FAMILIES), p=weights / weights.sum()))]
    kernel = sample_kernel(rng, family, scale)
    subsampling = SUBSAMPLINGS[int(rng.integers(len(SUBSAMPLINGS)))]
    gain = floor = 0.0
    if rng.random() < cfg["noise_share"]:
        low, high = cfg["noise_std"]
        floor = math.exp(rng.uniform(math.log(low), math.log(high))) ** 2
        if rng.random() < 0.5:  # shot noise on top, up to the floor's level at mid-grey
            gain = rng.uniform(0.0, 2.0 * floor)
    jpeg = None
    if rng.random() < cfg["jpeg_share"]:
        jpeg = int(rng.integers(cfg["jpeg_quality"][0], cfg["jpeg_quality"][1] + 1))
    sharpen = None
    if cfg["sharpen_share"] and rng.random() < cfg["sharpen_share"]:
        sharpen = (rng.uniform(*cfg["sharpen_variance"]), rng.uniform(*cfg["sharpen_amount"]))
    return Degradation(family, kernel, subsampling, gain, floor, jpeg, sharpen)


def unsharp_mask(x: torch.Tensor, variance: float, amount: float) -> torch.Tensor:
    """``x + amount * (x - G * x)`` of (N, C, H, W) ``x``, ``G`` a Gaussian of
    ``variance`` px^2 (edges mirrored): the sharpening of a camera's processing."""
    size = 2 * math.ceil(3 * math.sqrt(variance)) + 1
    kernel = torch.from_numpy(gaussian_kernel(variance, size=size)).to(x)
    return x + amount * (x - blur_tensor(x, kernel))


def degrade_hr(
    hr: torch.Tensor, d: Degradation, scale: Pair, generator: torch.Generator
) -> torch.Tensor:
    """The LR image of HR ``hr`` (N, C, H, W) in [0, 1] under ``d``: blur, subsample,
    noise, sharpening, 8-bit quantisation, JPEG; float32 in [0, 1] on 8-bit levels."""
    kernel = torch.from_numpy(d.kernel).to(hr)
    lr = degrade_tensor(hr, kernel, scale, d.subsampling)
    if d.gain or d.floor:
        std = (d.gain * lr.clamp_min(0) + d.floor).sqrt()
        lr = lr + std * torch.randn(lr.shape, generator=generator, dtype=lr.dtype)
    if d.sharpen is not None:
        lr = unsharp_mask(lr, *d.sharpen)
    lr = torch.round(lr.clamp(0, 1) * 255) / 255
    if d.jpeg is not None:
        lr = jpeg_tensor(lr, d.jpeg)
    return lr.float()
