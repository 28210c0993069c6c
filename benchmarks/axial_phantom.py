"""A rendered 3-D phantom with isotropic voxels: filaments and blobs, an isotropic PSF,
noise. The test volume of ``benchmarks/axial.py``."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# Isotropic PSF (Gaussian standard deviation, voxels): FWHM 2.35 voxels, the lateral
# resolution of a confocal sampled near Nyquist.
PSF_SIGMA = 1.0
BACKGROUND = 0.05
NOISE_SIGMA = 0.01


def _splat(grid: np.ndarray, points: np.ndarray, weights: np.ndarray) -> None:
    """Add ``weights`` at fractional ``points`` (N, 3) with trilinear weights."""
    base = np.floor(points).astype(np.int64)
    frac = points - base
    for corner in np.ndindex(2, 2, 2):
        idx = base + np.array(corner)
        w = weights * np.prod(np.where(np.array(corner), frac, 1 - frac), axis=1)
        inside = np.all((idx >= 0) & (idx < np.array(grid.shape)), axis=1)
        np.add.at(grid, tuple(idx[inside].T), w[inside])


def _filament(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Points 0.25 voxels apart along a smooth random curve through the volume."""
    size = np.array(shape, dtype=np.float64)
    point = rng.uniform(0, 1, 3) * size
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    points = []
    for _ in range(int(4 * 1.5 * size.max())):
        points.append(point.copy())
        # A slowly turning direction: persistence length of about 60 voxels.
        direction += rng.normal(scale=0.025, size=3)
        direction /= np.linalg.norm(direction)
        point += 0.25 * direction
        if np.any(point < -5) or np.any(point > size + 5):
            break
    return np.array(points)


def render_phantom(
    shape: tuple[int, int, int] = (72, 256, 256),
    *,
    filaments: int = 60,
    blobs: int = 80,
    seed: int = 0,
) -> np.ndarray:
    """The isotropic test volume, float32 in [0, 1], shape ``shape`` (Z, Y, X).

    Filaments: smooth random 3-D curves (persistence length about 60 voxels, random
    directions, so every plane cuts them at every angle), of core radii 0, 0.7 or 1.4
    voxels and brightness 0.3-1. Blobs: solid balls (radius 2-6 voxels, brightness
    0.2-0.7) and hollow shells (radius 4-9 voxels, wall 1.2 voxels, brightness 0.3-0.8).
    The sum, scaled to a 99.95th percentile of 0.9, is blurred by an isotropic Gaussian PSF
    (:data:`PSF_SIGMA`), put on a background of :data:`BACKGROUND` and given Gaussian
    noise of :data:`NOISE_SIGMA`; clipped to [0, 1].
    """
    rng = np.random.default_rng(seed)
    z, y, x = shape
    volume = np.zeros(shape, dtype=np.float64)
    for radius in (0.0, 0.7, 1.4):
        layer = np.zeros(shape, dtype=np.float64)
        for _ in range(filaments // 3):
            points = _filament(shape, rng)
            _splat(layer, points, np.full(len(points), 0.25 * rng.uniform(0.3, 1.0)))
        # Line density to brightness: a line blurred by sigma peaks at 1 / (2 pi sigma^2).
        width = np.hypot(radius, PSF_SIGMA)
        layer = ndimage.gaussian_filter(layer, radius) if radius else layer
        volume += layer * 2 * np.pi * width**2
    zz, yy, xx = np.meshgrid(np.arange(z), np.arange(y), np.arange(x), indexing="ij")
    for i in range(blobs):
        centre = rng.uniform(0, 1, 3) * np.array(shape)
        dist = np.sqrt((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2)
        if i % 3:
            radius = rng.uniform(2, 6)
            volume += rng.uniform(0.2, 0.7) * np.clip(radius + 0.5 - dist, 0, 1)
        else:
            radius = rng.uniform(4, 9)
            shell = np.clip(0.6 + 0.5 - np.abs(dist - radius), 0, 1)
            volume += rng.uniform(0.3, 0.8) * shell
    volume *= 0.9 / np.percentile(volume, 99.95)
    volume = ndimage.gaussian_filter(volume, PSF_SIGMA, mode="reflect")
    volume += BACKGROUND + rng.normal(scale=NOISE_SIGMA, size=shape)
    return np.clip(volume, 0, 1).astype(np.float32)
