"""Estimating the noise of an image from the image alone, as a function of intensity.

Sensors count photons: their noise is Poisson-Gaussian, its variance ``gain * x +
floor`` grows with the signal ``x`` (a fluorescent nucleus is several times noisier
than the background around it), and camera processing keeps that shape roughly. The
estimate is Donoho's per intensity bin: the finest diagonal Haar coefficients
``(a - b - c + d) / 2`` of 2 x 2 blocks cancel every ramp and keep white noise at its
full standard deviation; their median absolute value over 0.6745 (the median of
``|N(0, 1)|``), squared, is the noise variance of the blocks of that bin's mean
intensity. A straight line through those variances gives ``gain`` and ``floor``.
The median ignores the edges and textures that also reach the coefficients, but not
all of them: a clean, sharp image reads as about one grey level of noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .checks import check_image

_MAD_TO_SIGMA = 1.0 / 0.6745
# Intensity bins of the fit, and the fewest blocks a bin needs to count.
BINS = 16
MIN_BLOCKS = 64


@dataclass(frozen=True)
class NoiseModel:
    """Noise variance ``gain * x + floor`` at intensity ``x`` (units of the image the
    model was estimated on; never below 0).

    Attributes
    ----------
    gain : float
        Variance per unit of intensity (Poisson part; >= 0).
    floor : float
        Variance at intensity 0 (Gaussian part; may be negative where the data have
        an offset, e.g. a camera's dark level).
    """

    gain: float
    floor: float

    def variance(self, intensity: np.ndarray | float) -> np.ndarray:
        """The noise variance at ``intensity`` (array or number), at least 0."""
        return np.maximum(self.gain * np.asarray(intensity, np.float64) + self.floor, 0.0)

    def typical_std(self, image: np.ndarray) -> float:
        """Root mean noise variance over the pixels of ``image``."""
        return float(np.sqrt(self.variance(image).mean()))

    def less(self, other: NoiseModel) -> NoiseModel:
        """The noise to add to data with ``other``'s noise to reach this model's: the
        signal-dependent part at least 0, the floor signed (a dark offset makes it
        negative; :meth:`variance` never goes below 0)."""
        return NoiseModel(max(self.gain - other.gain, 0.0), self.floor - other.floor)


def estimate_noise(image: np.ndarray, *, rgb: bool | None = None) -> NoiseModel:
    """The noise of ``image`` as a :class:`NoiseModel`, in its own units.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        Any real dtype; computed in float64 without rescaling (for uint8 data the
        model is in grey levels, for unit-range floats in that range).
    rgb : bool, optional
        Whether the last axis holds colours (default: guessed as in
        :func:`~napari_mzsr.core.checks.check_image`). The colour channels are pooled
        (an alpha channel is ignored).

    Returns
    -------
    NoiseModel
        A flat model (``gain`` 0) where the image has too few intensity levels to fit
        a line.

    Raises
    ------
    ValueError
        If the image is smaller than 4 x 4 pixels.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> ramp = np.tile(np.linspace(0.1, 0.9, 256), (256, 1))
    >>> noisy = ramp + rng.normal(0, 1, ramp.shape) * np.sqrt(0.001 * ramp + 1e-4)
    >>> model = estimate_noise(noisy)
    >>> round(model.gain, 3), round(float(model.variance(0.5)), 4)  # 0.001, 0.0006 true
    (0.001, 0.0006)
    """
    arr = np.asarray(image)
    rgb = check_image(arr, rgb)
    channels = (arr[..., :3] if rgb else arr[..., None]).astype(np.float64)
    height, width = channels.shape[:2]
    if min(height, width) < 4:
        raise ValueError(f"image must be at least 4 x 4 pixels, got {height} x {width}")
    x = channels[: height // 2 * 2, : width // 2 * 2]
    a, b, c, d = x[0::2, 0::2], x[0::2, 1::2], x[1::2, 0::2], x[1::2, 1::2]
    means = ((a + b + c + d) / 4).ravel()
    diagonal = np.abs((a - b - c + d) / 2).ravel()
    order = np.argsort(means, kind="stable")
    levels, variances, weights = [], [], []
    for chunk in np.array_split(order, BINS):
        if chunk.size < MIN_BLOCKS:
            continue
        levels.append(float(np.median(means[chunk])))
        variances.append(float((np.median(diagonal[chunk]) * _MAD_TO_SIGMA) ** 2))
        weights.append(chunk.size)
    if not levels:
        flat = float((np.median(diagonal) * _MAD_TO_SIGMA) ** 2)
        return NoiseModel(0.0, flat)
    levels_a, variances_a = np.array(levels), np.array(variances)
    if np.ptp(levels_a) <= 1e-12 * max(1.0, float(np.abs(levels_a).max())):
        return NoiseModel(0.0, float(np.average(variances_a, weights=weights)))
    gain, floor = np.polyfit(levels_a, variances_a, 1, w=np.sqrt(weights))
    if gain < 0:
        # Noise that falls with intensity is not a sensor's: keep its mean level.
        return NoiseModel(0.0, float(np.average(variances_a, weights=weights)))
    return NoiseModel(float(gain), float(floor))
