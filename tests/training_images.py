"""Small training-image folders for the meta-training tests: smooth noise with a bright
block whose edge moves from image to image, saved as 8-bit PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage


def write_training_images(
    folder: Path,
    count: int,
    *,
    shape: tuple[int, int] = (48, 56),
    edge: tuple[int, int, int] = (20, 10, 5),
    gray: tuple[int, ...] = (),
) -> Path:
    """Write ``img0.png`` ... into ``folder``: ``shape`` RGB images, the block from row
    ``edge[0]`` down and ``edge[1] + i * edge[2]`` columns wide in image ``i``; the
    images numbered in ``gray`` keep one channel. Returns ``folder``."""
    rng = np.random.default_rng(0)
    row, first, step = edge
    for i in range(count):
        noise = ndimage.gaussian_filter(rng.random((*shape, 3)), (1.5, 1.5, 0))
        noise[row:, : first + step * i] += 0.3
        img = np.clip((noise - noise.min()) / np.ptp(noise) * 255, 0, 255).astype(np.uint8)
        Image.fromarray(img[..., 0] if i in gray else img).save(folder / f"img{i}.png")
    return folder
