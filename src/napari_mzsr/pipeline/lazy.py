"""Lazy super-resolution of dask arrays, block by block, optionally on a dask cluster.

napari layers may hold dask arrays too large for memory. :func:`super_resolve_dask`
adapts theta_M once, eagerly, on random patches of the image (crop adaptation reads
only those regions), then returns a lazy dask array: every block of the image is read
with an overlap of :func:`napari_mzsr.tiling.tile_margin` pixels and produces the output
of its own pixels, exactly as the in-memory path does. The result therefore equals
:func:`napari_mzsr.api.super_resolve`'s with the same options (same adaptation patches),
up to float rounding, whatever the chunks.

Blocks start on multiples of :func:`napari_mzsr.tiling.grid_step` (the output grids must
line up) and are at least one margin long; other chunkings are rechunked. A scale that
cannot be tiled runs as one block. Needs the optional ``dask`` extra
(``pip install napari-mzsr[dask]``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..core.checks import check_finite
from ..core.devices import resolve_device
from ..core.intensity import DEFAULT_PERCENTILES, IntensityMap
from ..core.self_check import SelfCheck
from ..core.tiling import grid_step, output_index, tile_margin
from ..io.model_file import ModelInfo, MZSRModel
from .adapted import AdaptedModel
from .images import ImageData, image_data
from .options import AUTO_PATCHES, AdaptOptions, ApplyOptions, scale_for_shape
from .run import ProgressCallback, adapt_image, drive, step_progress

if TYPE_CHECKING:
    import dask.array as da
    from distributed import Client


@dataclass(frozen=True)
class _BlockPlan:
    """Everything a block needs besides its data and the weights (sent to workers)."""

    info: ModelInfo
    scale: tuple[float, float]
    intensity: IntensityMap
    autocast_dtype: torch.dtype | None
    rgb: bool
    apply: ApplyOptions
    device: str
    margin: int
    chunks: tuple[tuple[int, ...], tuple[int, ...]]
    # The blocks give Lanczos interpolation where the adaptation's self-check fell back.
    self_check: SelfCheck | None = None


def block_chunks(chunks: Sequence[int], step: int, minimum: int) -> tuple[int, ...]:
    """Chunk lengths along one axis that blocks can be super-resolved with.

    Parameters
    ----------
    chunks : sequence of int
        The array's chunk lengths along the axis.
    step : int
        Block boundaries must be multiples of it (:func:`~napari_mzsr.tiling.grid_step`).
    minimum : int
        Shortest block (the overlap depth).

    Returns
    -------
    tuple of int
        ``chunks`` when they qualify, otherwise regular chunks of the largest length
        rounded up to ``step`` (at least ``minimum``), a too-short last one merged
        into the one before.

    Examples
    --------
    >>> block_chunks((100, 100, 50), 1, 7)
    (100, 100, 50)
    >>> block_chunks((45, 45, 10), 2, 10)
    (46, 54)
    """
    chunks = tuple(int(c) for c in chunks)
    bounds = list(itertools.accumulate(chunks))[:-1]
    if all(c >= minimum for c in chunks) and all(b % step == 0 for b in bounds):
        return chunks
    size = -(-max(*chunks, minimum) // step) * step
    full, rest = divmod(sum(chunks), size)
    out = [size] * full
    if rest and (rest >= minimum or not out):
        out.append(rest)
    elif rest:
        out[-1] += rest
    return tuple(out)


def _output_chunks(chunks: Sequence[int], scale: float) -> tuple[int, ...]:
    """Output chunk lengths of the blocks ``chunks`` along an axis of factor ``scale``."""
    length = sum(chunks)
    bounds = [output_index(b, length, scale) for b in (0, *itertools.accumulate(chunks))]
    return tuple(b - a for a, b in itertools.pairwise(bounds))


def _super_resolve_block(
    block: np.ndarray,
    weights: dict[str, np.ndarray],
    plan: _BlockPlan,
    block_id: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Output of the core of one overlapped block (runs on a dask worker)."""
    # The lazy image could not be scanned for NaN/inf up front; its blocks are, here.
    check_finite(block)
    state = {name: torch.tensor(value) for name, value in weights.items()}
    net = MZSRModel(plan.info, state).network(resolve_device(plan.device), plan.scale)
    adapted = AdaptedModel(
        net, plan.info, plan.scale, plan.intensity, plan.autocast_dtype,
        self_check=plan.self_check,
    )  # fmt: skip
    region = []
    for axis in (0, 1):
        index = block_id[axis]
        # boundary="none": the first block has no overlap before it.
        start = 0 if index == 0 else plan.margin
        region.append(slice(start, start + plan.chunks[axis][index]))
    data = ImageData(block, plan.rgb, plan.intensity)
    return adapted.render(data, plan.apply, (region[0], region[1]))


def apply_dask(
    adapted: AdaptedModel,
    image: object,
    *,
    output_dtype: np.dtype | str | None = None,
    rgb: bool | None = None,
    tile: int | None = None,
    client: Client | None = None,
    device: str | None = None,
) -> da.Array:
    """Lazily super-resolve ``image`` block by block with an adapted model.

    Parameters
    ----------
    adapted : AdaptedModel
        From :func:`napari_mzsr.iter_adapt`.
    image : dask array or array-like, shape (H, W) or (H, W, 3|4)
        Wrapped with ``dask.array.asarray``; its chunks are kept when they qualify
        (see :func:`block_chunks`). Not read here.
    output_dtype : dtype, optional
        dtype of the result (default: the image's).
    rgb : bool, optional
        Whether the last axis holds colours (default: guessed from the shape).
    tile : int, optional
        Tile side within a block (see :meth:`AdaptedModel.apply`).
    client : distributed.Client, optional
        The adapted weights are scattered to its workers (as numpy arrays) once, and
        every block reads them there. Compute the result with that client (it is the
        default one once created).
    device : str, optional
        Torch device of the blocks. Default: the adaptation's device, or ``"auto"``
        (each worker's best) with a ``client``.

    Returns
    -------
    dask.array.Array, shape (ceil(H * sy), ceil(W * sx)[, C])
        One output block per (possibly rechunked) input block.
    """
    import dask.array as da

    data = image_data(da.asarray(image), rgb=rgb, normalization=adapted.intensity)
    return _lazy_result(adapted, data, ApplyOptions(output_dtype, tile), client, device)


def _lazy_result(
    adapted: AdaptedModel,
    data: ImageData,
    apply: ApplyOptions,
    client: Client | None,
    device: str | None,
) -> da.Array:
    import dask
    import dask.array as da

    arr = data.array
    scale = adapted.scale
    steps = (grid_step(scale[0]), grid_step(scale[1]))
    margin = tile_margin(scale, adapted.info.radius)
    if None in steps:
        spatial = ((arr.shape[0],), (arr.shape[1],))
    else:
        spatial = tuple(
            block_chunks(c, step, max(margin, 1))
            for c, step in zip(arr.chunks[:2], steps, strict=True)
        )
    arr = arr.rechunk(spatial + tuple((n,) for n in arr.shape[2:]))
    dtype = arr.dtype if apply.output_dtype is None else apply.output_dtype
    if device is None:
        device = "auto" if client is not None else str(adapted.device)
    plan = _BlockPlan(
        adapted.info,
        scale,
        adapted.intensity,
        adapted.autocast_dtype,
        data.rgb,
        apply,
        device,
        margin,
        spatial,
        adapted.self_check,
    )
    # Copies: the lazy result must not change if the network is trained further.
    weights = {k: v.detach().cpu().numpy().copy() for k, v in adapted.net.state_dict().items()}
    if client is not None:
        # A list, so that the dict is scattered as one object, not value by value.
        weights = client.scatter([weights], broadcast=True)[0]
    else:
        weights = dask.delayed(weights, pure=True)
    # An axis in one block has no neighbour to overlap (and may be shorter than a margin).
    depth = {axis: margin if len(spatial[axis]) > 1 else 0 for axis in (0, 1)}
    depth.update({axis: 0 for axis in range(2, arr.ndim)})
    overlapped = da.overlap.overlap(arr, depth, boundary="none") if any(depth.values()) else arr
    out_chunks = (
        tuple(_output_chunks(c, s) for c, s in zip(spatial, scale, strict=True)) + arr.chunks[2:]
    )
    return overlapped.map_blocks(
        _super_resolve_block,
        weights,
        plan,
        chunks=out_chunks,
        dtype=dtype,
        meta=np.empty((0,) * arr.ndim, dtype),
    )


def super_resolve_dask(
    image: object,
    *,
    scale: float | Sequence[float] | None = None,
    kernel: object = None,
    steps: int = 10,
    model: str | os.PathLike | MZSRModel | None = None,
    device: str | torch.device = "auto",
    progress: ProgressCallback | None = None,
    cancel: Callable[[], bool] | None = None,
    seed: int = 0,
    lr: float | Sequence[Sequence[float]] | None = None,
    normalization: str | IntensityMap = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    rgb: bool | None = None,
    output_dtype: np.dtype | str | None = None,
    precision: str = "auto",
    adapt_patch: int | str | None = "auto",
    adapt_patches: int = AUTO_PATCHES,
    noise: str = "auto",
    self_check: bool = True,
    threads: int | str = "auto",
    tile: int | None = None,
    client: Client | None = None,
    block_device: str | None = None,
) -> da.Array:
    """Super-resolve a (large) dask array with MZSR: adapt now, upscale lazily.

    Adaptation runs before returning (with ``progress`` and ``cancel`` as in
    :func:`~napari_mzsr.super_resolve`) and reads only the adaptation patches of the
    image (``adapt_patch="auto"`` reads a small image whole). The returned array is
    lazy: compute it, save it block by block (``to_zarr``) or show it in napari.

    Parameters
    ----------
    image : dask array or array-like, shape (H, W), (H, W, 3) or (H, W, 4)
        As in :func:`~napari_mzsr.super_resolve`. The intensity map reads a strided
        sample of the image (``"minmax"`` streams through it once).
    scale, kernel, steps, model, device, progress, seed, cancel, lr, normalization, \
percentiles, rgb, output_dtype, precision, adapt_patch, adapt_patches, noise, self_check, \
threads, tile
        As in :func:`~napari_mzsr.super_resolve`; ``device`` is the adaptation's.
    client : distributed.Client, optional
        Run the blocks on this cluster's workers (see :func:`apply_dask`).
    block_device : str, optional
        Torch device of the blocks (see ``device`` of :func:`apply_dask`).

    Returns
    -------
    dask.array.Array, shape (ceil(H * sy), ceil(W * sx)[, C])
        Equal to ``super_resolve(numpy_image, ...)`` with the same options, up to float
        rounding.

    Examples
    --------
    >>> import dask.array as da
    >>> big = da.zeros((8192, 8192), dtype="uint16", chunks=2048)
    >>> sr = super_resolve_dask(big, scale=2, kernel=2.0)  # doctest: +SKIP
    >>> sr.to_zarr("sr.zarr")  # doctest: +SKIP
    """
    import dask.array as da

    data = image_data(
        da.asarray(image), rgb=rgb, normalization=normalization, percentiles=percentiles
    )
    options = AdaptOptions(
        scale=scale_for_shape(data.shape, scale, None),
        kernel=kernel,
        steps=steps,
        model=model,
        device=device,
        precision=precision,
        seed=seed,
        lr=lr,
        normalization=data.intensity,
        adapt_patch=adapt_patch,
        adapt_patches=adapt_patches,
        noise=noise,
        self_check=self_check,
        threads=threads,
    )
    run = adapt_image(data, options.for_image(data.rgb))
    adapted = drive(run, step_progress(progress), cancel)
    return _lazy_result(adapted, data, ApplyOptions(output_dtype, tile), client, block_device)
