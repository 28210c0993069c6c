"""What a run decides from the image itself: the noise and the JPEG compression to
reproduce in the son, and the self-check of the result
(:mod:`napari_mzsr.core.self_check`).

Both are the same for the API, the widget and the command line, and both run on the
centre of the image the adaptation starts from.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..core.degradation import degrade
from ..core.jpeg import jpeg_quality_of
from ..core.noise import NoiseModel, estimate_noise
from ..core.self_check import CHECK_SIDE, check_window
from ..core.tensors import to_batch
from .images import ImageData

# Smallest predicted gain over bicubic (dB, on the son pair) for which a network's
# output is given rather than bicubic interpolation, for an image without and with JPEG
# compression. Chosen on the validation split of benchmarks/real_images.py (training
# images and cells of other seeds, never the reported sets): under the photo
# assumption the son-level prediction runs 0.5-1.3 dB below the true gain on clean
# photos (where the network never lost more than 0.03 dB), so a clean image keeps the
# network down to -0.2; the synthetic fluorescence, where the network loses 5 dB,
# predicted -0.32 to -1.04. On JPEG images the prediction did not follow the true gain
# (-0.55 predicted for -0.37 true, -0.03 for +0.68), so only a clear predicted gain
# keeps the network there.
CHECK_THRESHOLD = -0.2
JPEG_CHECK_THRESHOLD = 0.3
# Noise below this (network units, 1/255 = one grey level of 8-bit data) is left alone:
# the estimate of a clean, sharp image reads its texture as about one grey level.
NOISE_FLOOR = 1.5 / 255
# Pixels square read to estimate the noise.
NOISE_SIDE = 512


def check_pixels(image: ImageData, channels: int, device: torch.device) -> torch.Tensor:
    """The self-check window of ``image`` (:func:`~napari_mzsr.core.self_check.
    check_window`) as a (1, C, h, w) batch in network units on ``device``."""
    return to_batch(image.unit(check_window(image.shape, CHECK_SIDE)), channels).to(device)


def matched_noise(
    image: ImageData, kernel: np.ndarray, scale: tuple[float, float], degradation: str
) -> NoiseModel | None:
    """The noise to add to the son of ``image`` (network units) so that it is as noisy
    as the image at every intensity: the image's noise
    (:func:`~napari_mzsr.core.noise.estimate_noise`) times the share of it that the
    son's degradation removes (:func:`removed_share`); None when the image's noise is
    below :data:`NOISE_FLOOR` or the image too small to tell."""
    pixels = image.unit(check_window(image.shape, NOISE_SIDE))
    if min(pixels.shape[:2]) < 8 * math.ceil(max(scale)):
        return None
    noise = estimate_noise(pixels, rgb=image.rgb)
    if noise.typical_std(pixels) < NOISE_FLOOR:
        return None
    share = removed_share(kernel, scale, degradation)
    return NoiseModel(noise.gain * share, noise.floor * share)


def removed_share(kernel: np.ndarray, scale: tuple[float, float], degradation: str) -> float:
    """The share of white noise's variance that the son's degradation removes (1 less
    what degrading a field of white noise keeps). Measured, not estimated from the son:
    the son's own texture, one scale finer than the image's, would read as noise."""
    field = np.random.default_rng(0).standard_normal((256, 256))
    return float(max(1.0 - degrade(field, kernel, scale, degradation).var(), 0.0))


def matched_jpeg(image: ImageData) -> int | None:
    """The JPEG quality to save the son of ``image`` at: the image's own
    (:func:`~napari_mzsr.core.jpeg.jpeg_quality_of`) for 8-bit images mapped as they
    are; None for other data or an image that was not JPEG-compressed."""
    intensity = image.intensity
    if intensity.dtype != np.uint8 or intensity.mode != "dtype":
        return None
    # From the top-left corner: the file's block grid starts there.
    return jpeg_quality_of(image.read((slice(0, NOISE_SIDE), slice(0, NOISE_SIDE))))
