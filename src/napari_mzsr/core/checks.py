"""Checks of a user's image shared by the API and the kernel estimator: one place for the
dtype and shape rules and their error messages."""

from __future__ import annotations

import numpy as np


def is_dask(image: object) -> bool:
    """Whether ``image`` is a dask array (lazy: its values are not all read)."""
    # By module name, so that dask (an optional dependency) is imported only when used.
    return type(image).__module__.split(".")[0] == "dask"


def check_image(image: np.ndarray, rgb: bool | None) -> bool:
    """Validate ``image`` and return whether its last axis holds RGB(A) channels.

    Parameters
    ----------
    image : ndarray or dask array
        Real numeric (H, W) grey or (H, W, 3|4) RGB(A) image. Only a float numpy
        array is scanned for NaN/inf: a dask array is checked where it is read.
    rgb : bool or None
        Whether the last axis holds colour channels; None guesses from the shape.

    Raises
    ------
    ValueError
        For boolean, complex or non-numeric dtypes, an empty image, a shape that does
        not fit ``rgb``, or NaN/infinite values.
    """
    if image.dtype == bool:
        raise ValueError("boolean images are not supported; convert to uint8 first")
    if np.iscomplexobj(image):
        raise ValueError("complex images are not supported; take abs() or .real first")
    if not np.issubdtype(image.dtype, np.number):
        raise ValueError(f"image must be numeric, got dtype {image.dtype}")
    if image.size == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    if rgb is None:
        rgb = image.ndim == 3 and image.shape[-1] in (3, 4)
    if rgb:
        if image.ndim != 3 or image.shape[-1] not in (3, 4):
            raise ValueError(f"an RGB(A) image must have shape (H, W, 3|4), got {image.shape}")
    elif image.ndim != 2:
        raise ValueError(
            f"expected a 2D grayscale (H, W) or RGB(A) (H, W, 3|4) image, got shape "
            f"{image.shape}; process stacks slice by slice"
        )
    if (
        np.issubdtype(image.dtype, np.floating)
        and not is_dask(image)
        and not np.all(np.isfinite(image))
    ):
        raise ValueError("image contains NaN or infinite values")
    return rgb
