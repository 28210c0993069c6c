"""Synthetic (LR, HR) pairs for the calibration tests: a smooth random colour scene and
its blurred, bicubic-subsampled shot, both uint8 as a camera writes them."""

from __future__ import annotations

import numpy as np

from napari_mzsr.core.degradation import degrade
from napari_mzsr.core.kernels import gaussian_kernel
from napari_mzsr.core.resize import imresize


def scene(
    side: int, seed: int, *, detail: tuple[int, ...] = (3, 6), channels: int = 3
) -> np.ndarray:
    """A smooth random scene in [0, 1], float64 (side, side, channels), the mean of random
    fields enlarged by each factor of ``detail``."""
    rng = np.random.default_rng(seed)
    layers = [
        imresize(rng.random((-(-side // f), -(-side // f), channels)), f)[:side, :side]
        for f in detail
    ]
    out = sum(layers) / len(layers)
    return np.clip((out - out.min()) / np.ptp(out), 0, 1)


def camera_pair(
    seed: int, *, side: int, scale: float, variance: float, kernel_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(LR, HR) uint8: :func:`scene` blurred by an isotropic Gaussian of ``variance`` and
    bicubic-subsampled by ``scale``."""
    hr = scene(side, seed)
    lr = degrade(hr, gaussian_kernel(variance, size=kernel_size), scale, "bicubic")
    return _uint8(lr), _uint8(hr)


def _uint8(a: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(a, 0, 1) * 255).astype(np.uint8)
