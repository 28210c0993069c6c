"""JPEG compression in the son: detecting it in an image and reproducing it.

A JPEG image carries the quantisation of its 8 x 8 coding blocks. Its son, a downscale,
does not: a network adapted on clean sons learns to sharpen everything, block edges and
ringing included, and loses to bicubic on the image (the real-images issue measured up
to -1.2 dB on area-downscaled photos saved at quality 75). Like noise
(:mod:`napari_mzsr.core.noise`), the compression is therefore reproduced in the son:
the son is saved as JPEG at the image's own quality.

Detection reads the quantisation back: in the block grid of a decoded JPEG image each
low-frequency DCT coefficient of the luma sits on multiples of its quantiser step ``Q``
(up to the rounding of the decoded pixels), so ``mean(cos(2 pi c / Q))`` over the
blocks is close to 1 at that step, and at its divisors: the largest step nearly as
periodic as the best is taken. An image never compressed has no such step (the mean
stays under 0.1 on the validation photos, 0.4-0.9 at quality 75). The quality follows
from the steps of two coefficients through the standard (IJG) luminance table.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from scipy.fft import dctn

BLOCK = 8
# Quantiser steps searched, from quality 100 (step 1, no visible loss) to about 10.
STEPS = np.arange(2.0, 60.01, 0.25)
# Above this mean cosine the image is taken as JPEG-compressed.
PERIODICITY = 0.3
# Every divisor of the step is periodic too: the largest step this close to the best is it.
DIVISOR_MARGIN = 0.9
# Coefficients this small say nothing about the step (flat blocks).
MIN_COEFFICIENT = 2.0
MIN_COEFFICIENTS = 50
# The IJG luminance table's entries at the coefficients read: (0, 1), (1, 0).
TABLE = {(0, 1): 11.0, (1, 0): 12.0}


def _luma(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim == 3:
        return arr[..., 0] * 0.299 + arr[..., 1] * 0.587 + arr[..., 2] * 0.114
    return arr


def jpeg_quality_of(image: np.ndarray) -> int | None:
    """The JPEG quality ``image`` was saved at, or None if it shows no JPEG quantisation.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 3), uint8
        Decoded pixels, in the block grid of the file (a crop that starts elsewhere
        than a multiple of 8 is not recognised).

    Returns
    -------
    int or None
        The IJG quality (1-100) whose table gives the measured step, within a few
        units (the step is measured in quarters); None also above quality 95, where
        the step is too fine to see and the loss too small to matter.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y, x = np.mgrid[:128, :128]
    >>> texture = 128 + 60 * np.sin(x / 3) * np.cos(y / 5) + rng.normal(0, 10, x.shape)
    >>> photo = np.clip(texture, 0, 255).astype(np.uint8)
    >>> jpeg_quality_of(photo), [jpeg_quality_of(jpeg(photo, q)) for q in (50, 75, 90)]
    (None, [49, 74, 91])
    """
    luma = _luma(image)
    height, width = luma.shape[0] // BLOCK * BLOCK, luma.shape[1] // BLOCK * BLOCK
    if min(height, width) < BLOCK:
        return None
    blocks = luma[:height, :width].reshape(height // BLOCK, BLOCK, width // BLOCK, BLOCK)
    coefficients = dctn(blocks.transpose(0, 2, 1, 3), axes=(2, 3), norm="ortho")
    qualities = []
    for (u, v), entry in TABLE.items():
        values = coefficients[:, :, u, v].ravel()
        values = values[np.abs(values) > MIN_COEFFICIENT]
        if values.size < MIN_COEFFICIENTS:
            return None
        # Only coefficients beyond half a step can show it: smaller ones round to 0
        # whatever the step, and would make any large step look periodic.
        counted = np.abs(values)[None, :] > STEPS[:, None] / 2
        waves = np.cos(2 * np.pi * values[None, :] / STEPS[:, None]) * counted
        enough = counted.sum(axis=1) >= MIN_COEFFICIENTS
        periodicity = np.where(enough, waves.sum(axis=1) / np.maximum(counted.sum(axis=1), 1), 0)
        if periodicity.max() < PERIODICITY:
            return None
        step = STEPS[np.flatnonzero(periodicity >= DIVISOR_MARGIN * periodicity.max())[-1]]
        # IJG: step = entry * scale / 100, scale = 200 - 2 q (q >= 50) or 5000 / q.
        scale = 100 * step / entry
        qualities.append((200 - scale) / 2 if scale <= 100 else 5000 / scale)
    return int(np.clip(round(float(np.mean(qualities))), 1, 100))


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """``image`` (uint8, (H, W) or (H, W, 3)) saved as JPEG at ``quality`` and read
    back (4:2:0 chroma for colour, as cameras and PIL do by default)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(buffer))


def jpeg_tensor(batch: torch.Tensor, quality: int) -> torch.Tensor:
    """Each image of a (N, C, h, w) batch in [0, 1] (C 1 or 3) as JPEG at ``quality``,
    on 8-bit levels; the same dtype and device."""
    levels = (batch.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    out = []
    for image in levels:
        hwc = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
        back = jpeg(np.ascontiguousarray(hwc), quality)
        out.append(back[None] if back.ndim == 2 else back.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out)).to(device=batch.device, dtype=batch.dtype) / 255
