"""Blur-and-subsample degradations (REFERENCE section 2).

``direct``: correlate each channel with the kernel (symmetric "reflect" borders, as
``scipy.ndimage.correlate``), then keep every ``s``-th pixel starting at 0.
``bicubic``: the same blur, then the MATLAB bicubic downscale by ``1 / s``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .kernels import validate_kernel
from .resize import imresize_tensor, output_size, parse_scale

METHODS = ("direct", "bicubic")


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


def subsample_indices(length: int, scale: float) -> np.ndarray:
    """Rows (or columns) kept by direct subsampling: ``round(i * scale)`` for
    ``i < ceil(length / scale)``; ``[0::s]`` for an integer ``s``."""
    n = output_size(length, 1.0 / scale)
    idx = np.floor(np.arange(n) * scale + 0.5).astype(np.int64)
    return np.minimum(idx, length - 1)


def degrade_tensor(
    x: torch.Tensor,
    kernel: torch.Tensor,
    scale: float | Sequence[float],
    method: str = "direct",
) -> torch.Tensor:
    """Blur (N, C, H, W) float ``x`` with ``kernel`` and subsample it by ``scale``.

    No clipping. See :func:`degrade` for the conventions.
    """
    if method not in METHODS:
        raise ValueError(f"degradation method must be one of {METHODS}, got {method!r}")
    sy, sx = parse_scale(scale)
    if sy < 1 or sx < 1:
        raise ValueError(f"degradation scale must be >= 1, got {scale!r}")
    blurred = blur_tensor(x, kernel)
    if method == "bicubic":
        return imresize_tensor(blurred, (1.0 / sy, 1.0 / sx))
    if sy == int(sy) and sx == int(sx):
        return blurred[..., :: int(sy), :: int(sx)]
    rows = torch.from_numpy(subsample_indices(x.shape[-2], sy)).to(x.device)
    cols = torch.from_numpy(subsample_indices(x.shape[-1], sx)).to(x.device)
    return blurred.index_select(-2, rows).index_select(-1, cols)


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
        Downscaling factor (>= 1). ``direct`` keeps pixels ``[0::s]`` for an integer
        ``s`` and the nearest pixel to ``i * s`` otherwise.
    method : {"direct", "bicubic"}
        Subsampling after the blur: direct decimation, or MATLAB bicubic ``1 / s``.

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
