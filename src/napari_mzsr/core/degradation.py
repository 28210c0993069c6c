"""Blur-and-subsample degradations (REFERENCE section 2).

``direct``: correlate each channel with the kernel (symmetric "reflect" borders, as
``scipy.ndimage.correlate``), then keep every ``s``-th pixel starting at 0.
``bicubic``: the same blur, then the MATLAB bicubic downscale by ``1 / s``.
``area``: the same blur, then area averaging (each output pixel the mean of the input
area it covers: of ``s x s`` blocks for an integer ``s``), the sampling of camera pixels
and of "area"/"box" resizing in image software; sharper near the Nyquist limit than
bicubic, with the same pixel centres.

Non-integer factors. Keeping every ``s``-th pixel is defined for an integer ``s``
only, so ``direct`` subsampling of an axis whose factor is not an integer is the
MATLAB bicubic downscale by ``1 / s`` of that axis (ZSSR's and ArbSR's convention), and
each axis is treated on its own: ``(2, 2.5)`` keeps every second row and resizes the
columns. Integer axes stay bit-exact ``[0::s]``. A factor of 1 leaves its axis as the
blur made it. :func:`decimated_axes` says which axes are decimated; the geometry of
the refinements (:mod:`napari_mzsr.core.refinement`) follows it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .kernels import validate_kernel
from .resize import imresize_tensor, parse_scale

METHODS = ("direct", "bicubic", "area")
# Factors this close to an integer (relative) are decimated as that integer.
INTEGER_TOLERANCE = 1e-9


def _mirror_index(length: int, pad: int, device: torch.device) -> torch.Tensor:
    # Half-sample symmetric indices (d c b a | a b c d | d c b a), valid for any pad.
    idx = np.arange(-pad, length + pad)
    period = np.mod(idx, 2 * length)
    idx = np.where(period < length, period, 2 * length - 1 - period)
    return torch.from_numpy(idx).to(device)


def blur_tensor(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlate every channel of ``x`` (N, C, H, W) with an odd square ``kernel``
    (k, k), with symmetric borders. Matches ``scipy.ndimage.correlate(mode="reflect")``."""
    c, h, w = x.shape[1:]
    pad = kernel.shape[-1] // 2
    if pad:
        x = x.index_select(2, _mirror_index(h, pad, x.device))
        x = x.index_select(3, _mirror_index(w, pad, x.device))
    weight = kernel.to(dtype=x.dtype, device=x.device).expand(c, 1, *kernel.shape[-2:])
    return F.conv2d(x, weight, groups=c)


def is_integer_factor(scale: float) -> bool:
    """Whether ``scale`` is an integer (to 1e-9 relative, against float noise)."""
    return abs(scale - round(scale)) < INTEGER_TOLERANCE * max(1.0, abs(scale))


def decimated_axes(scale: float | Sequence[float], method: str = "direct") -> tuple[bool, bool]:
    """Whether the rows and the columns are decimated (``[0::s]``) rather than resized
    bicubically: ``direct`` subsampling by an integer factor.

    Examples
    --------
    >>> decimated_axes((2, 2.5)), decimated_axes(2, "bicubic")
    ((True, False), (False, False))
    """
    if method not in METHODS:
        raise ValueError(f"degradation method must be one of {METHODS}, got {method!r}")
    sy, sx = parse_scale(scale)
    return (
        method == "direct" and is_integer_factor(sy),
        method == "direct" and is_integer_factor(sx),
    )


def degrade_tensor(
    x: torch.Tensor,
    kernel: torch.Tensor,
    scale: float | Sequence[float],
    method: str = "direct",
    *,
    output_shape: Sequence[int] | None = None,
) -> torch.Tensor:
    """Blur (N, C, H, W) float ``x`` with ``kernel`` and subsample it by ``scale``.

    No clipping. See :func:`degrade` for the conventions. ``output_shape`` sets the
    size of the resized (non-decimated) axes, sample positions still following
    ``scale``: a super-resolved image of ``ceil(h * s)`` rows degrades back to ``h`` rows
    (``ceil(ceil(h s) / s)`` can be ``h + 1`` for a non-integer ``s``).
    """
    if method not in METHODS:
        raise ValueError(f"degradation method must be one of {METHODS}, got {method!r}")
    sy, sx = parse_scale(scale)
    if sy < 1 or sx < 1:
        raise ValueError(f"degradation scale must be >= 1, got {scale!r}")
    out = blur_tensor(x, kernel)
    row_step, col_step = decimated_axes((sy, sx), method)
    if row_step or col_step:
        out = out[..., :: round(sy) if row_step else 1, :: round(sx) if col_step else 1]
    # Decimating one axis and resizing the other commute: each acts along its own axis.
    resize = (1.0 if row_step else 1.0 / sy, 1.0 if col_step else 1.0 / sx)
    if resize != (1.0, 1.0):
        shape = None
        if output_shape is not None:
            shape = [
                out.shape[-2 + axis] if resize[axis] == 1.0 else int(output_shape[axis])
                for axis in (0, 1)
            ]
        interpolation = "box" if method == "area" else "cubic"
        out = imresize_tensor(out, resize, output_shape=shape, kernel=interpolation)
    return out


def degrade(
    image: np.ndarray,
    kernel: np.ndarray,
    scale: float | Sequence[float] = 2,
    method: str = "direct",
) -> np.ndarray:
    """Blur an image with ``kernel`` and subsample it by ``scale``.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        Real values; computed in float64, not rescaled and not clipped.
    kernel : ndarray, shape (k, k)
        Odd-sized blur kernel, applied by correlation with its centre on the middle
        pixel (no half-pixel shift); normalised to sum 1 first.
    scale : float or (float, float)
        Downscaling factor (>= 1), per axis if a pair. ``direct`` keeps pixels
        ``[0::s]`` along an axis of integer factor and resizes an axis of any other
        factor with the MATLAB bicubic ``1 / s`` (see the module docstring).
    method : {"direct", "bicubic", "area"}
        Subsampling after the blur: direct decimation, MATLAB bicubic ``1 / s``, or
        area averaging.

    Returns
    -------
    ndarray of float64, shape (ceil(H / sy), ceil(W / sx)[, C]).

    Examples
    --------
    >>> from napari_mzsr import gaussian_kernel
    >>> hr = np.random.default_rng(0).random((64, 48, 3))
    >>> degrade(hr, gaussian_kernel(2.0), 2).shape
    (32, 24, 3)
    """
    arr = np.asarray(image)
    if arr.ndim not in (2, 3):
        raise ValueError(f"degrade expects (H, W) or (H, W, C), got shape {arr.shape}")
    if arr.dtype == bool or np.iscomplexobj(arr) or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"degrade expects a real numeric image, got dtype {arr.dtype}")
    k = torch.from_numpy(validate_kernel(kernel))
    t = torch.from_numpy(np.array(arr, dtype=np.float64, copy=True))
    t = t[None, None] if arr.ndim == 2 else t.permute(2, 0, 1)[None]
    out = degrade_tensor(t, k, scale, method)[0]
    out = out[0] if arr.ndim == 2 else out.permute(1, 2, 0)
    return out.contiguous().numpy()
