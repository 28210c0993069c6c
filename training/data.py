"""Training images: any folder of PNG/TIFF (RGB or gray, 8 or 16 bit) held in memory.

Patches are cut on the fly from the decoded images. Cropping is microseconds per
patch, so the model never waits for data and no worker processes are needed; the
costly degradations run batched in torch (:mod:`training.tasks`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

SUFFIXES = (".png", ".tif", ".tiff")
# Full-range luma (BT.601 weights): a 1-channel model should see the whole [0, 1]
# range, as fluorescence channels do, not the 16..235 studio range of the metrics' Y.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
TEXTURE_TRIES = 10


def list_images(folder: str | Path) -> list[Path]:
    """PNG and TIFF files under ``folder`` (recursively), sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image as (H, W, C) with C = 1 or 3, uint8 or float32 in [0, 1].

    uint8 stays uint8 (a quarter of the memory of float32). Other integer and float
    data are mapped to [0, 1] by their 0.1 and 99.9 percentiles, because 16-bit
    microscopy usually fills only a fraction of the dtype's range.
    """
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        arr = np.squeeze(tifffile.imread(path))
        if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
            arr = np.moveaxis(arr, 0, -1)
    else:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("RGB") if img.mode in ("P", "CMYK", "YCbCr") else img)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ValueError(f"{path}: expected a 2D gray or RGB image, got shape {arr.shape}")
    arr = arr[..., :3] if arr.shape[-1] >= 3 else arr[..., :1]
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    lo, hi = np.percentile(arr, [0.1, 99.9])
    if not hi > lo:
        hi = lo + 1.0
    return np.clip((arr.astype(np.float32) - lo) / (hi - lo), 0, 1).astype(np.float32)


def to_unit(patch: np.ndarray) -> np.ndarray:
    """uint8 or float (H, W, C) patch to float32 [0, 1]."""
    if patch.dtype == np.uint8:
        return patch.astype(np.float32) / 255.0
    return patch.astype(np.float32)


def to_channels(patch: np.ndarray, channels: int, rng: np.random.Generator | None) -> np.ndarray:
    """Give a unit-range (H, W, C) patch the model's channel count.

    A 3-channel model sees gray patches as three equal channels. A 1-channel model sees
    RGB patches as their luma or, half of the time (when ``rng`` is given), as one
    single colour channel, so that it also suits single fluorescence channels.
    """
    if patch.shape[-1] == channels:
        return patch
    if channels == 3:
        return np.repeat(patch, 3, axis=-1)
    if rng is not None and rng.random() < 0.5:
        return patch[..., [int(rng.integers(3))]]
    return (patch @ LUMA)[..., None]


def texture(patch: np.ndarray) -> float:
    """Mean absolute horizontal plus vertical gradient of a unit-range patch."""
    gray = patch.mean(axis=-1)
    return float(np.abs(np.diff(gray, axis=0)).mean() + np.abs(np.diff(gray, axis=1)).mean())


@dataclass
class ImageBank:
    """Decoded training images and a sampler of augmented, textured patches.

    Attributes
    ----------
    images : list of ndarray
        (H, W, C) images, uint8 or float32 in [0, 1].
    names : list of str
        Their file names.
    channels : int
        Channels of the patches returned (the model's).
    texture_threshold : float
        Patches flatter than this (see :func:`texture`) are re-drawn, up to
        ``TEXTURE_TRIES`` times, as the original kept only textured patches.
    """

    images: list[np.ndarray]
    names: list[str]
    channels: int
    texture_threshold: float

    def sample(self, rng: np.random.Generator, count: int, size: int) -> np.ndarray:
        """``count`` random patches of ``size`` x ``size``, randomly flipped and rotated
        by multiples of 90 degrees; float32 array (count, channels, size, size)."""
        areas = np.array([im.shape[0] * im.shape[1] for im in self.images], dtype=np.float64)
        fits = np.array([min(im.shape[:2]) >= size for im in self.images])
        if not fits.any():
            raise ValueError(f"no training image is at least {size} px on its short side")
        weights = np.where(fits, areas, 0.0)
        weights /= weights.sum()
        out = np.empty((count, self.channels, size, size), dtype=np.float32)
        for n in range(count):
            image = self.images[int(rng.choice(len(self.images), p=weights))]
            for _ in range(TEXTURE_TRIES):
                y = int(rng.integers(image.shape[0] - size + 1))
                x = int(rng.integers(image.shape[1] - size + 1))
                patch = to_unit(image[y : y + size, x : x + size])
                if texture(patch) >= self.texture_threshold:
                    break
            patch = np.rot90(patch, int(rng.integers(4)))
            if rng.random() < 0.5:
                patch = patch[:, ::-1]
            out[n] = to_channels(patch, self.channels, rng).transpose(2, 0, 1)
        return out


def split_validation(paths: list[Path], count: int) -> tuple[list[Path], list[Path]]:
    """Hold out ``count`` images spread evenly over the sorted list (so that every
    sub-folder contributes); returns ``(train, val)``."""
    if count <= 0:
        return list(paths), []
    if count >= len(paths):
        raise ValueError(f"cannot hold out {count} of {len(paths)} images for validation")
    picks = {len(paths) * i // count + len(paths) // (2 * count) for i in range(count)}
    return (
        [p for i, p in enumerate(paths) if i not in picks],
        [p for i, p in enumerate(paths) if i in picks],
    )


def load_bank(paths: list[Path], channels: int, texture_threshold: float) -> ImageBank:
    """Decode ``paths`` into an :class:`ImageBank`."""
    if not paths:
        raise ValueError("no training images")
    return ImageBank(
        [read_image(p) for p in paths], [p.name for p in paths], channels, texture_threshold
    )


def validation_crops(paths: list[Path], channels: int, crop: int) -> list[np.ndarray]:
    """Central crops (H, W, C) float32 of the validation images, with the model's
    channels (luma for a 1-channel model). Sides are rounded down to a multiple of 12
    so that x2, x3 and x4 divide them."""
    crops = []
    for path in paths:
        image = to_unit(read_image(path))
        h, w = (min(crop, side) // 12 * 12 for side in image.shape[:2])
        y, x = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
        crops.append(np.ascontiguousarray(to_channels(image[y : y + h, x : x + w], channels, None)))
    return crops
