"""Checks of user-supplied values: one place for the rules and their one-line messages.

Every check names the argument it checks and says what is accepted, so that a message
raised deep inside a run still tells the user which option to change.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Hashable, Sequence

import numpy as np

# numpy.random.default_rng and torch.manual_seed both accept seeds below 2**63.
MAX_SEED = 2**63 - 1


def is_dask(image: object) -> bool:
    """Whether ``image`` is a dask array (lazy: its values are not all read)."""
    # By module name, so that dask (an optional dependency) is imported only when used.
    return type(image).__module__.split(".")[0] == "dask"


def integer(value: object, name: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    """``value`` as an int, if it is an integer (not a bool) in ``[minimum, maximum]``.

    Examples
    --------
    >>> integer(3, "steps")
    3
    >>> integer(-1, "steps")
    Traceback (most recent call last):
    ...
    ValueError: steps must be an integer >= 0, got -1
    """
    bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer {bounds}, got {value!r}")
    number = int(value)
    if number < minimum or (maximum is not None and number > maximum):
        raise ValueError(f"{name} must be an integer {bounds}, got {value!r}")
    return number


def positive_number(value: object, name: str) -> float:
    """``value`` as a float, if it is a finite real number > 0 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return number


def one_of(value: object, name: str, choices: Sequence[Hashable]) -> Hashable:
    """``value`` if it is one of ``choices``."""
    if not isinstance(value, Hashable) or value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {listed}; got {value!r}")
    return value


def seed(value: object) -> int:
    """A random seed: an integer in ``[0, 2**63 - 1]``."""
    return integer(value, "seed", minimum=0, maximum=MAX_SEED)


def output_dtype(value: object) -> np.dtype | None:
    """``value`` as a numpy integer or float dtype, or None (the input's).

    Examples
    --------
    >>> output_dtype("uint16"), output_dtype(None)
    (dtype('uint16'), None)
    >>> output_dtype(bool)
    Traceback (most recent call last):
    ...
    ValueError: output_dtype must be an integer or float dtype, got bool
    """
    if value is None:
        return None
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise ValueError(f"output_dtype must be a numpy dtype, got {value!r}") from None
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise ValueError(f"output_dtype must be an integer or float dtype, got {dtype}")
    return dtype


def check_image(image: np.ndarray, rgb: bool | None) -> bool:
    """Validate a 2-D image and return whether its last axis holds RGB(A) channels.

    Parameters
    ----------
    image : ndarray or dask array
        Real numeric (H, W) grey or (H, W, 3|4) RGB(A) image. A float numpy array is
        scanned for NaN/inf; a dask array is checked where it is read.
    rgb : bool or None
        Whether the last axis holds colour channels; None guesses from the shape.

    Raises
    ------
    ValueError
        For boolean, complex or non-numeric dtypes, an empty image, a shape that does
        not fit ``rgb``, or NaN/infinite values.
    """
    check_dtype(image)
    if rgb is None:
        rgb = image.ndim == 3 and image.shape[-1] in (3, 4)
    if rgb:
        if image.ndim != 3 or image.shape[-1] not in (3, 4):
            raise ValueError(f"an RGB(A) image must have shape (H, W, 3|4), got {image.shape}")
    elif image.ndim != 2:
        raise ValueError(
            f"expected a 2D grayscale (H, W) or RGB(A) (H, W, 3|4) image, got shape "
            f"{image.shape}; use super_resolve_stack for stacks and other N-D data"
        )
    check_finite(image)
    return bool(rgb)


def check_dtype(image: np.ndarray) -> None:
    """Refuse boolean, complex, non-numeric and empty arrays (one-line messages)."""
    if image.dtype == bool:
        raise ValueError("image is boolean; convert it to uint8 (0/255) first")
    if np.iscomplexobj(image):
        raise ValueError("image is complex; take abs() or .real first")
    if not np.issubdtype(image.dtype, np.number):
        raise ValueError(f"image must be numeric, got dtype {image.dtype}")
    if image.size == 0:
        raise ValueError(f"image is empty (shape {image.shape})")


def check_finite(values: np.ndarray) -> None:
    """Refuse NaN and infinite values in float data (dask arrays: not read here)."""
    if (
        np.issubdtype(values.dtype, np.floating)
        and not is_dask(values)
        and not np.all(np.isfinite(values))
    ):
        raise ValueError("image contains NaN or infinite values")
