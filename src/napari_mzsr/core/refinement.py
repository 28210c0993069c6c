"""Test-time refinements of a super-resolved image: geometric self-ensemble and
iterative back-projection (ZSSR's inference, REFERENCE section 9).

Both work on float tensors (N, C, H, W) in [0, 1] and return new tensors.

Geometry. A model trained with ``direct`` subsampling puts low-resolution pixel ``i``
on high-resolution pixel ``s * i`` (``[0::s]``). Mirroring the input along an axis of
``n`` pixels moves that grid: the mirrored LR pixels sit on HR pixels ``s * i + d`` of
the mirrored HR image, with ``d = N - 1 - s * (n - 1)`` (``s - 1`` for an integer
scale). The network still places them on ``s * i``, so its output, mirrored back, is
shifted by ``d`` pixels and is moved back here. ``bicubic`` models are centred, so
their grid is mirror-symmetric and nothing moves. Each axis has its own geometry: an
axis is decimated only for ``direct`` subsampling by an integer factor; any other
factor is resized bicubically, centred (:func:`~napari_mzsr.core.degradation.
decimated_axes`), so with factors (2, 2.5) only the rows move.

Unequal factors. A quarter turn swaps the rows and the columns, and with them the two
factors, so with ``sy != sx`` only the four transforms that keep the axes in place are
used (:func:`axis_preserving`): the identity, the two mirrors and the half turn.

Kernels. The network adapted to an image has learnt to undo that image's kernel ``k``.
A transformed input carries the transformed kernel, so only the transforms that leave
``k`` unchanged (:func:`kernel_symmetries`: all eight for an isotropic Gaussian, the
identity and the half turn for a rotated anisotropic one) are faithful; the others feed
the network a blur it was not adapted to. On Set5 with g^d_ani and the shipped direct-x2
(``benchmarks/results/refinements_Set5_ani_per_transform_cpu.md``) the mean over the
two symmetries gained 0.10 dB, over all 8 transforms with the same network 0.16 dB
(for 4 times the inference), and over all 8 each with its own adaptation to the
transformed kernel 0.31 dB (for 8 times the adaptation). The public ``ensemble`` uses
the symmetries: the unfaithful transforms add little for their cost, and with the
first-pass weights they added less than the symmetries alone (0.05 against 0.18 dB).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .degradation import METHODS, decimated_axes, degrade_tensor
from .resize import parse_scale

TRANSFORMS = tuple(range(8))
COMBINE = ("mean", "median")
# Back-projection for an image downscaled by an unknown tool (the "photo" assumption):
# area averaging and bicubic half and half. On the validation split (training photos
# by MATLAB bicubic, area and Lanczos at x2, x3, x2.5; City100 pairs 016-040), with 3
# iterations, either alone lost up to 0.38 dB against the other on the sets made by
# the other tool; the blend stayed within 0.08 dB of the better one on every clean set
# and both cameras, 0.10 on noisy area x2
# (benchmarks/results/validation/photo_back_projection_probe.md).
PHOTO_DEGRADATION = {"area": 0.5, "bicubic": 0.5}


def dihedral(x: torch.Tensor, index: int) -> torch.Tensor:
    """One of the 8 flips/rotations of the last two axes: ``index % 4`` quarter turns
    (``torch.rot90``) after a left-right mirror when ``index >= 4``."""
    if index >= 4:
        x = x.flip(-1)
    return torch.rot90(x, index % 4, dims=(-2, -1))


def undo_dihedral(x: torch.Tensor, index: int) -> torch.Tensor:
    """Inverse of :func:`dihedral`."""
    x = torch.rot90(x, -(index % 4), dims=(-2, -1))
    return x.flip(-1) if index >= 4 else x


def kernel_symmetries(kernel: np.ndarray, tolerance: float = 1e-3) -> tuple[int, ...]:
    """Indices of the :func:`dihedral` transforms that leave ``kernel`` unchanged, to
    within ``tolerance`` of its largest value.

    Examples
    --------
    >>> from napari_mzsr.kernels import gaussian_kernel
    >>> kernel_symmetries(gaussian_kernel(2.0))
    (0, 1, 2, 3, 4, 5, 6, 7)
    >>> kernel_symmetries(gaussian_kernel(4.0, 1.0, -0.5))
    (0, 2)
    """
    k = torch.from_numpy(np.asarray(kernel, dtype=np.float64))
    limit = tolerance * float(k.abs().max())
    return tuple(i for i in TRANSFORMS if float((dihedral(k, i) - k).abs().max()) <= limit)


def axis_preserving(transforms: Sequence[int]) -> tuple[int, ...]:
    """The transforms of ``transforms`` that keep rows as rows (no quarter turn).

    Examples
    --------
    >>> axis_preserving(range(8))
    (0, 2, 4, 6)
    """
    return tuple(t for t in transforms if t % 2 == 0)


def _mirrored_axes(index: int) -> tuple[bool, bool]:
    """Whether transform ``index`` reverses the original rows and columns: where the
    pixels below and right of the corner pixel go, relative to it."""
    moved = dihedral(torch.arange(4).reshape(2, 2), index).flatten().tolist()
    place = {value: divmod(i, 2) for i, value in enumerate(moved)}
    below, right = (np.subtract(place[v], place[0]) for v in (2, 1))
    return bool(below.min() < 0), bool(right.min() < 0)


def _grid_offset(n_in: int, n_out: int, scale: float) -> int:
    return round(n_out - 1 - scale * (n_in - 1))


def _shift_back(x: torch.Tensor, dim: int, offset: int) -> torch.Tensor:
    """``x`` moved ``offset`` pixels towards the start of ``dim``, the end repeated."""
    if offset <= 0:
        return x
    tail = x.narrow(dim, x.shape[dim] - 1, 1).expand_as(x.narrow(dim, 0, offset))
    return torch.cat([x.narrow(dim, offset, x.shape[dim] - offset), tail], dim=dim)


def self_ensemble(
    upscale: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    scale: float | tuple[float, float],
    degradation: str = "direct",
    transforms: Sequence[int] = TRANSFORMS,
    combine: str = "mean",
) -> torch.Tensor:
    """Geometric self-ensemble: super-resolve transformed copies of ``x``, undo the
    transforms and combine the results pixel by pixel.

    Parameters
    ----------
    upscale : callable
        Maps a (N, C, h, w) tensor to its (N, C, H, W) super-resolution.
    x : Tensor, shape (N, C, h, w)
        Low-resolution input.
    scale : float or (float, float)
        Super-resolution factor, per axis if a pair.
    degradation : {"direct", "bicubic"}
        Subsampling geometry of the model (see the module docstring).
    transforms : sequence of int
        :func:`dihedral` indices to use (0 is the identity). With unequal factors only
        the transforms that keep the axes in place are used (:func:`axis_preserving`):
        a quarter turn would swap the factors.
    combine : {"mean", "median"}
        How the transformed results are combined pixel by pixel (ZSSR uses the median;
        on Set5 with the shipped models the mean was as good or up to 0.08 dB better).

    Returns
    -------
    Tensor, shape (N, C, H, W)
    """
    if combine not in COMBINE:
        raise ValueError(f"combine must be one of {COMBINE}, got {combine!r}")
    if not transforms or any(t not in TRANSFORMS for t in transforms):
        raise ValueError(f"transforms must be a non-empty subset of 0..7, got {transforms!r}")
    factors = parse_scale(scale)
    if factors[0] != factors[1]:
        transforms = axis_preserving(transforms)
    decimated = decimated_axes(factors, degradation)
    results = []
    for index in transforms:
        out = undo_dihedral(upscale(dihedral(x, index)), index)
        for dim, mirrored, moves in zip((-2, -1), _mirrored_axes(index), decimated, strict=True):
            if mirrored and moves:
                offset = _grid_offset(x.shape[dim], out.shape[dim], factors[dim])
                out = _shift_back(out, dim, offset)
        results.append(out)
    stack = torch.stack(results)
    if combine == "mean":
        return stack.mean(dim=0)
    # The middle two averaged for an even count (torch.median would take the lower one).
    ordered = stack.sort(dim=0).values
    n = len(results)
    return (ordered[(n - 1) // 2] + ordered[n // 2]) / 2


def _upsample_aligned(
    x: torch.Tensor, shape: tuple[int, int], scale: tuple[float, float], degradation: str
) -> torch.Tensor:
    """Bicubic interpolation of ``x`` onto the HR grid of ``shape``: HR pixel ``j`` reads
    LR position ``j / s`` along a decimated axis, ``(j + 0.5) / s - 0.5`` along any other
    (``s`` the factor of the axis)."""
    h, w = x.shape[-2:]
    axes = []
    decimated = decimated_axes(scale, degradation)
    for n_in, n_out, s, moves in zip((h, w), shape, scale, decimated, strict=True):
        pos = torch.arange(n_out, dtype=x.dtype, device=x.device)
        pos = pos / s if moves else (pos + 0.5) / s - 0.5
        # grid_sample's normalised coordinates with align_corners=True.
        axes.append(2 * pos / max(n_in - 1, 1) - 1)
    gy, gx = torch.meshgrid(axes[0], axes[1], indexing="ij")
    grid = torch.stack([gx, gy], dim=-1).expand(x.shape[0], -1, -1, -1)
    return F.grid_sample(x, grid, mode="bicubic", padding_mode="reflection", align_corners=True)


def back_project(
    sr: torch.Tensor,
    lr: torch.Tensor,
    kernel: torch.Tensor,
    scale: float | tuple[float, float],
    degradation: str | Mapping[str, float] = "direct",
    iterations: int = 10,
    clamp: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """Iterative back-projection: ``sr += up(lr - degrade(sr, kernel))``, ``iterations``
    times, clipped to ``clamp`` after each.

    Parameters
    ----------
    sr : Tensor, shape (N, C, H, W)
        Super-resolved image, float in [0, 1].
    lr : Tensor, shape (N, C, h, w)
        The low-resolution input, same dtype.
    kernel : Tensor, shape (k, k)
        Blur kernel in the project's convention.
    scale : float or (float, float)
        Super-resolution factor, per axis if a pair.
    degradation : {"direct", "bicubic", "area"} or mapping
        How ``sr`` is degraded to compare with ``lr``; the residual is interpolated back
        on the same grid, axis by axis (:func:`_upsample_aligned`). A mapping of
        centred subsamplings to weights (``{"area": 0.5, "bicubic": 0.5}``) compares
        with their weighted mean: for an image whose downscaling tool is unknown
        (:data:`PHOTO_DEGRADATION`).
    iterations : int
        Number of corrections (0 returns ``sr`` unchanged).
    clamp : (float, float)
        Range of valid values.

    Returns
    -------
    Tensor, shape (N, C, H, W)
        A new tensor; ``sr`` is not modified.
    """
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"back-projection iterations must be an integer >= 0, got {iterations!r}")
    factors = parse_scale(scale)
    weights = _blend(degradation)
    # The residual goes back on the grid of the first method; a blend is centred.
    geometry = next(iter(weights))
    out = sr
    for _ in range(iterations):
        degraded = sum(
            weight * degrade_tensor(out, kernel, factors, method, output_shape=lr.shape[-2:])
            for method, weight in weights.items()
        )
        residual = lr - degraded
        upsampled = _upsample_aligned(residual, out.shape[-2:], factors, geometry)
        out = (out + upsampled).clamp(*clamp)
    return out if iterations else sr.clone()


def _blend(degradation: str | Mapping[str, float]) -> dict[str, float]:
    """``degradation`` as weights of subsampling methods summing to 1."""
    if isinstance(degradation, str):
        return {degradation: 1.0}
    weights = {str(m): float(w) for m, w in dict(degradation).items()}
    if not weights or "direct" in weights or any(m not in METHODS for m in weights):
        raise ValueError(
            f"a back-projection blend takes centred subsamplings ('bicubic', 'area'), "
            f"got {degradation!r}"
        )
    total = sum(weights.values())
    if any(not np.isfinite(w) or w < 0 for w in weights.values()) or total <= 0:
        raise ValueError(f"back-projection blend weights must be >= 0, not all 0, got {weights}")
    return {m: w / total for m, w in weights.items()}
