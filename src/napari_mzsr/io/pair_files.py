"""Folders of real (LR, HR) image pairs for calibration: finding them, reading them and
the scale between them.

A pair is two files of one key: ``<key>L``/``<key>H`` (City100), ``<key>_LR``/``<key>_HR``
or ``<key>_lr``/``<key>_hr``, in any format :func:`napari_mzsr.io.image_files.read_image`
reads as a 2-D grey or RGB image. An LR image stored at the HR size (City100 stores the
short-focal shot resized to the long-focal one) is read back on its native grid
(:func:`napari_mzsr.core.pair_checks.native_grid`).
"""

from __future__ import annotations

import os
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.pair_checks import interpolation_period, native_grid
from .image_files import SUFFIXES, read_image

PAIR_NAME = re.compile(r"^(?P<key>.+?)[_-]?(?P<kind>L|H|LR|HR|lr|hr)$")
# Digits a measured scale is rounded to: the profile's scale must be typed back exactly.
SCALE_DIGITS = 4


@dataclass(frozen=True)
class ImagePair:
    """One pair as read: ``lr`` on its native grid and ``hr``, both as in their files
    (same dtype; an LR read back from the HR grid is rounded to an integer dtype)."""

    key: str
    lr: np.ndarray
    hr: np.ndarray


def find_pairs(folder: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """``(key, lr_path, hr_path)`` of the pairs in ``folder``, sorted by key.

    Raises
    ------
    FileNotFoundError
        ``folder`` is not a folder, or holds no complete pair.
    ValueError
        Two LR (or two HR) files of one key, e.g. ``001L.png`` and ``001_LR.tif``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"pairs folder {str(folder)!r} is not a folder")
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(folder.iterdir()):
        match = PAIR_NAME.match(path.stem)
        if path.suffix.lower() in SUFFIXES and match:
            kind = "lr" if match["kind"].lower() in ("l", "lr") else "hr"
            files = found.setdefault(match["key"], {})
            if kind in files:
                raise ValueError(
                    f"two {kind.upper()} files for key {match['key']!r}: {files[kind].name} "
                    f"and {path.name}; keep one"
                )
            files[kind] = path
    pairs = [(key, p["lr"], p["hr"]) for key, p in sorted(found.items()) if len(p) == 2]
    if not pairs:
        raise FileNotFoundError(
            f"no (LR, HR) image pairs in {str(folder)!r} (expected files such as 001L.png and "
            "001H.png, or a_LR.tif and a_HR.tif)"
        )
    return pairs


def _read_2d(path: Path) -> np.ndarray:
    data, meta = read_image(path)
    image = np.asarray(data)
    if meta.rgb:
        image = image[..., :3]
    if image.ndim != (3 if meta.rgb else 2):
        raise ValueError(f"{path.name}: a pair image must be one 2-D image, got {meta.axes}")
    return image


def native_lr(image: np.ndarray, scale: float) -> np.ndarray:
    """An LR image stored on the HR grid, read back at spacing ``scale`` (same dtype;
    integers rounded and clipped to their range)."""
    out = native_grid(image.astype(np.float64), scale)
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(image.dtype)
    return out.astype(image.dtype)


def measured_scale(images: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, str]:
    """The scale of (LR, HR) images as read, rounded to :data:`SCALE_DIGITS` digits, and
    how it was measured: the median interpolation period of LR images stored at the HR
    size, else the median HR/LR size ratio."""
    if all(lr.shape[:2] == hr.shape[:2] for lr, hr in images):
        values = [p for lr, _ in images for p in interpolation_period(lr)]
        how = "interpolation period of the LR images stored at the HR size (median)"
    else:
        values = [hr.shape[i] / lr.shape[i] for lr, hr in images for i in (0, 1)]
        how = "HR/LR size ratio (median)"
    return round(float(statistics.median(values)), SCALE_DIGITS), how


def read_pairs(
    folder: str | os.PathLike, scale: float | None = None
) -> tuple[list[ImagePair], float, str]:
    """Read every pair of ``folder`` with its LR image on its native grid.

    Parameters
    ----------
    folder : path
        Folder of pairs (see the module docstring).
    scale : float, optional
        Magnification from LR to HR; measured when None (:func:`measured_scale`).

    Returns
    -------
    pairs : list of ImagePair
    scale : float
    how : str
        Where the scale came from.
    """
    raw = read_raw_pairs(folder)
    if scale is None:
        scale, how = measured_scale([(p.lr, p.hr) for p in raw])
    else:
        how = "given"
    return [on_own_grid(p, scale) for p in raw], float(scale), how


def read_raw_pairs(folder: str | os.PathLike) -> list[ImagePair]:
    """Every pair of ``folder`` as its files hold it (an LR image stored at the HR size
    stays so; :func:`on_own_grid` reads it back)."""
    return [ImagePair(key, _read_2d(lr), _read_2d(hr)) for key, lr, hr in find_pairs(folder)]


def on_own_grid(pair: ImagePair, scale: float) -> ImagePair:
    """``pair`` with an LR image stored at the HR size read back on its native grid at
    spacing ``scale`` (:func:`native_lr`); other pairs as they are."""
    if pair.lr.shape[:2] != pair.hr.shape[:2]:
        return pair
    return ImagePair(pair.key, native_lr(pair.lr, scale), pair.hr)
