"""Isotropic Z: super-resolve the Z axis of an anisotropic stack from its own XY slices.

Data flow per channel: map intensities to the network's range; take the axial kernel
given, or estimate it from the stack (:mod:`napari_mzsr.core.axial_estimation`); plan
the gradual stages (:func:`napari_mzsr.core.gradual.plan_gradual_steps`); adapt a
fresh copy of theta_M per stage on patches of the XY slices degraded along one lateral
axis (:func:`napari_mzsr.core.axial.adapt_axial`); then super-resolve the stack block
by block: every block is read with the whole Z extent and a lateral margin, every XZ
and YZ plane through it is super-resolved along Z and the two results are averaged
(:func:`napari_mzsr.core.axial.axial_step`). Blocks join exactly, so the result does
not depend on the block size beyond float rounding, and a stack is only ever read one
block (and a few adaptation patches) at a time: numpy, dask, zarr or any array that
supports numpy indexing. The output goes to a numpy array or to ``out`` (a zarr array
or ``numpy.memmap`` for results that do not fit in memory), or lazily to a dask array
(:func:`super_resolve_axial_dask`).

Intensities: as in the 2-D path, network units are clipped only to the input type's
range (:attr:`~napari_mzsr.core.intensity.IntensityMap.unit_range`), never to the
percentiles the map stretches, so bright spots beyond them keep their intensity.

Geometry: see :mod:`napari_mzsr.core.axial` (integer factors: input slice ``i`` is output
slice ``i * z_factor``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..core.axial import (
    adapt_axial,
    axial_output_length,
    axial_step,
    degrade_axial_tensor,
    patch_plan,
)
from ..core.axial_estimation import AxialKernelEstimate, estimate_axial_sigma
from ..core.checks import is_dask
from ..core.gradual import plan_gradual_steps
from ..core.intensity import DEFAULT_PERCENTILES, IntensityMap, intensity_map
from ..core.tiling import CPU_TILE_BYTES, bytes_per_output_pixel
from ..io.model_file import ModelInfo, MZSRModel
from .axial_options import (
    DEFAULT_BLOCK,
    DEFAULT_MAX_STEP,
    DEFAULT_MODEL,
    DEFAULT_PATCH,
    DEFAULT_PATCHES,
    DEFAULT_STEPS,
    AxialOptions,
    check_axial_factor,
)
from .run import cancelled_units, drive

if TYPE_CHECKING:
    import dask.array as da

# Float data and "percentile"/"minmax" maps of a stack that is not a numpy array are
# fitted on this many evenly spaced XY slices, not the whole stack.
INTENSITY_SLICES = 16


@dataclass(frozen=True)
class AxialProgress:
    """Progress of an axial run, reported after every adaptation step and every block.

    Attributes
    ----------
    phase : {"adapt", "apply"}
        After an adaptation step, or after a block was super-resolved.
    channel, channels : int
        0-based channel being processed, and their number.
    stage, stages : int
        0-based gradual stage being adapted, and their number.
    step, steps : int
        Adaptation steps done and planned in this stage.
    block, blocks : int
        Blocks done in this channel, and their number.
    done, total : int
        Units of work done and planned in the whole run (one per adaptation step, one
        per block): drive a progress bar with these.
    loss : float or None
        L1 loss of the last adaptation step.
    sigma : float or None
        The axial sigma (lateral pixels) this channel runs with, given or estimated;
        in the ``"apply"`` reports (None before).
    """

    phase: str
    channel: int
    channels: int
    stage: int
    stages: int
    step: int
    steps: int
    block: int
    blocks: int
    done: int
    total: int
    loss: float | None
    sigma: float | None = None


@dataclass
class AxialStage:
    """One gradual stage: its network adapted to ``sigma`` and ``z_factor`` (in the
    pixels of its own output grid)."""

    net: torch.nn.Module
    z_factor: float
    sigma: float


@dataclass
class AdaptedAxial:
    """theta_M adapted, stage by stage, to the axial degradation of one channel.

    ``sigma`` is the axial kernel used (in lateral pixels) and ``estimate`` the
    :class:`~napari_mzsr.core.axial_estimation.AxialKernelEstimate` it came from, if
    it was estimated.
    """

    stages: list[AxialStage]
    z_factor: float
    sigma: float
    intensity: IntensityMap
    info: ModelInfo
    autocast_dtype: torch.dtype | None
    estimate: AxialKernelEstimate | None = None
    losses: list[float] = field(default_factory=list)

    @property
    def device(self) -> torch.device:
        return next(self.stages[0].net.parameters()).device

    @property
    def margin(self) -> int:
        """Lateral context in pixels a block needs on each side: each stage's planes
        read the network's receptive radius (:attr:`ModelInfo.radius`) either side."""
        return self.info.radius * len(self.stages)

    def output_shape(self, shape: Sequence[int]) -> tuple[int, int, int]:
        z, y, x = (int(n) for n in shape)
        return axial_output_length(z, self.z_factor), y, x

    def apply_block(
        self, block: np.ndarray, core: tuple[slice, slice], *, tile: int | None = None
    ) -> np.ndarray:
        """Super-resolve the lateral region ``core`` of ``block`` (Z, h, w) in network
        units (float32): ``block`` holds :attr:`margin` pixels of context around it (less
        where the stack ends). Returns float32 (Z', core rows, core columns), clipped
        to the input type's range only (:attr:`IntensityMap.unit_range`)."""
        x = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32)).to(self.device)
        rows, cols = core
        radius = self.info.radius
        length = block.shape[0]
        for index, stage in enumerate(self.stages):
            # Later stages need less context: shrink the region computed by one stage's
            # reach per stage, down to the core at the last one.
            reach = radius * (len(self.stages) - 1 - index)
            r = slice(max(0, rows.start - reach), min(x.shape[1], rows.stop + reach))
            c = slice(max(0, cols.start - reach), min(x.shape[2], cols.stop + reach))
            last = index == len(self.stages) - 1
            length = (
                axial_output_length(block.shape[0], self.z_factor)
                if last
                else math.ceil(length * stage.z_factor - 1e-6)
            )
            budget = _plane_budget(self.info, length, max(x.shape[1], x.shape[2]))
            x = axial_step(
                stage.net,
                x,
                stage.z_factor,
                length,
                r,
                c,
                autocast_dtype=self.autocast_dtype,
                tile=tile if tile is not None else budget[1],
                plane_batch=budget[0],
                clamp=self.intensity.unit_range,
            )
            rows = slice(rows.start - r.start, rows.stop - r.start)
            cols = slice(cols.start - c.start, cols.stop - c.start)
        return x.cpu().numpy()


def _plane_budget(info: ModelInfo, length: int, width: int) -> tuple[int, int | None]:
    """Planes per network call and the tile side within a plane (None: whole planes)
    that keep one call within :data:`~napari_mzsr.core.tiling.CPU_TILE_BYTES`."""
    per_plane = length * width * bytes_per_output_pixel(info.features, info.channels)
    if per_plane <= CPU_TILE_BYTES:
        return max(1, CPU_TILE_BYTES // per_plane), None
    pixels = CPU_TILE_BYTES / bytes_per_output_pixel(info.features, info.channels)
    return 1, max(16, int(math.sqrt(pixels)) // 2)


def stage_kernels(sigma: float, factors: Sequence[float]) -> list[tuple[float, float]]:
    """``(relative sigma, target spacing)`` of each gradual stage.

    Stage ``k`` maps a grid of spacing ``s_{k-1}`` (lateral pixels per slice, ``s_0`` the
    whole factor) with axial blur ``b_{k-1}`` to spacing ``s_k = s_{k-1} / f_k`` with
    blur ``b_k``, where ``b_k^2 = sigma^2 (s_k^2 - 1) / (f^2 - 1)``: the blur variance is
    removed in proportion to the squared spacing, so that every stage of equal factors
    sees the same relative kernel, ``sigma sqrt((f_k^2 - 1) / (f^2 - 1))`` in its own
    output pixels; the last one reaches spacing 1 and no extra blur.

    Examples
    --------
    >>> stage_kernels(2.0, [4.0])
    [(2.0, 1.0)]
    >>> [(round(r, 3), s) for r, s in stage_kernels(2.0, [2.0, 2.0])]
    [(0.894, 2.0), (0.894, 1.0)]
    """
    total = math.prod(factors)
    spacing = total
    out = []
    for f in factors:
        spacing /= f
        if total == 1:
            out.append((0.0, spacing))
            continue
        out.append((sigma * math.sqrt((f * f - 1) / (total * total - 1)), spacing))
    return out


def _stage_blur(sigma: float, total: float, spacing: float) -> float:
    """Axial blur ``b_k`` (lateral pixels) of a stage's target grid (see
    :func:`stage_kernels`)."""
    if spacing <= 1 or total <= 1:
        return 0.0
    return sigma * math.sqrt((spacing * spacing - 1) / (total * total - 1))


def _check_volume(volume: object) -> tuple[int, int, int]:
    shape = tuple(int(n) for n in np.shape(volume))
    dtype = np.dtype(volume.dtype)
    if dtype.kind in "bc" or not np.issubdtype(dtype, np.number):
        raise ValueError(f"volume must be real numeric, got dtype {dtype}")
    if len(shape) != 3:
        raise ValueError(f"volume must be one channel (Z, Y, X), got shape {shape}")
    if min(shape) < 1:
        raise ValueError(f"volume is empty (shape {shape})")
    if shape[0] < 2:
        raise ValueError(f"volume needs at least 2 slices along Z, got shape {shape}")
    return shape


def _fit_intensity(
    volume: object, normalization: str | IntensityMap, percentiles: tuple[float, float]
) -> IntensityMap:
    if isinstance(normalization, IntensityMap):
        return normalization
    if isinstance(volume, np.ndarray):
        sample = volume
    else:
        dtype = np.dtype(volume.dtype)
        if normalization == "dtype" and np.issubdtype(dtype, np.integer):
            return intensity_map(np.zeros(1, dtype), "dtype")
        picks = np.unique(np.linspace(0, volume.shape[0] - 1, INTENSITY_SLICES).round())
        sample = np.stack([np.asarray(volume[int(z)]) for z in picks])
    if np.issubdtype(sample.dtype, np.floating) and not np.all(np.isfinite(sample)):
        raise ValueError("volume contains NaN or infinite values")
    return intensity_map(sample, normalization, percentiles)


def iter_adapt_axial(
    volume: object, z_factor: float, options: AxialOptions
) -> Generator[tuple[int, int, float], None, AdaptedAxial]:
    """Adapt theta_M to the axial degradation of one channel (Z, Y, X) with checked
    ``options`` and a checked ``z_factor`` (:func:`check_axial_factor`).

    A generator: yields ``(stage, step, loss)`` after every adaptation step and returns
    an :class:`AdaptedAxial` (``StopIteration.value``); closing it cancels. The axial
    kernel is estimated first when ``options.sigma`` is None.
    """
    shape = _check_volume(volume)
    info = options.model.info
    imap = _fit_intensity(volume, options.normalization, options.percentiles)
    estimate = None
    sigma = options.sigma
    if sigma is None:
        estimate = estimate_axial_sigma(volume, z_factor)
        sigma = estimate.sigma
    factors = plan_gradual_steps(z_factor, options.max_step)
    lr_at = options.learning_rate()
    dev = options.device
    autocast_dtype = options.autocast_dtype
    steps = options.steps
    seed = options.seed
    size = min(options.adapt_patch, shape[1], shape[2])
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    stages = []
    losses: list[float] = []
    for index, (rel_sigma, spacing) in enumerate(stage_kernels(sigma, factors)):
        # A scale-aware network is bound to the stage's factors, Z on rows (axis -2).
        net = options.model.network(dev, (factors[index], 1.0))
        blur = _stage_blur(sigma, z_factor, spacing)
        plan = patch_plan(shape[0], shape[1:], size, options.adapt_patches, steps, rng)
        batches = (
            _read_batch(volume, step_plan, size, imap, blur, spacing, info.channels, dev)
            for step_plan in plan
        )
        run = adapt_axial(
            net,
            batches,
            rel_sigma,
            factors[index],
            steps,
            optimizer=options.optimizer,
            lr=lr_at,
            autocast_dtype=autocast_dtype,
            clamp=imap.unit_range,
        )
        try:
            for report in run:
                losses.append(report.loss)
                yield index, report.step + 1, report.loss
        finally:
            run.close()
        stages.append(AxialStage(net, factors[index], rel_sigma))
    return AdaptedAxial(stages, z_factor, sigma, imap, info, autocast_dtype, estimate, losses)


def _read_batch(
    volume: object,
    plan: np.ndarray,
    size: int,
    imap: IntensityMap,
    blur: float,
    spacing: float,
    channels: int,
    device: torch.device,
) -> torch.Tensor:
    """The targets of one adaptation step: the planned XY patches (transposed where
    planned, so that the degraded axis is always rows), degraded to the stage's target
    grid, as (B, channels, h, size) float32 on ``device`` in network units, clipped
    to the input type's range only (:attr:`IntensityMap.unit_range`)."""
    regions = [(int(z), slice(r, r + size), slice(c, c + size)) for z, r, c, _ in plan]
    if is_dask(volume):
        import dask

        crops = [np.asarray(v) for v in dask.compute(*(volume[region] for region in regions))]
    else:
        crops = [np.asarray(volume[region]) for region in regions]
    crops = [c.T if flip else c for c, flip in zip(crops, plan[:, 3], strict=True)]
    unit = np.stack([imap.forward(c) for c in crops])
    if not np.all(np.isfinite(unit)):
        raise ValueError("volume contains NaN or infinite values")
    x = torch.from_numpy(unit)[:, None]
    if spacing > 1:
        x = degrade_axial_tensor(x, blur, spacing).clamp_(*imap.unit_range)
    return x.expand(-1, channels, -1, -1).contiguous().to(device)


def plan_blocks(shape: tuple[int, int], block: int, margin: int) -> list[tuple[slice, ...]]:
    """Lateral blocks: ``(read rows, read cols, core rows, core cols)`` with the core
    rows/cols relative to the read window, row-major."""
    out = []
    for y0 in range(0, shape[0], block):
        for x0 in range(0, shape[1], block):
            y1, x1 = min(y0 + block, shape[0]), min(x0 + block, shape[1])
            ry = slice(max(0, y0 - margin), min(shape[0], y1 + margin))
            rx = slice(max(0, x0 - margin), min(shape[1], x1 + margin))
            out.append(
                (ry, rx, slice(y0 - ry.start, y1 - ry.start), slice(x0 - rx.start, x1 - rx.start))
            )
    return out


def iter_apply_axial(
    adapted: AdaptedAxial, volume: object, options: AxialOptions, *, out: object | None = None
) -> Generator[tuple[int, int], None, object]:
    """Super-resolve one channel (Z, Y, X) block by block with an adapted model and
    checked ``options`` (``block``, ``tile``, ``output_dtype``).

    Yields ``(blocks done, blocks)`` after every block and returns the result: ``out``
    if given (any writable array of the output shape and dtype, e.g. a zarr array),
    otherwise a new numpy array of ``options.output_dtype`` (default: the volume's).
    """
    shape = _check_volume(volume)
    dtype = np.dtype(volume.dtype if options.output_dtype is None else options.output_dtype)
    tile = options.tile
    out_shape = adapted.output_shape(shape)
    out = _output(out, out_shape, dtype)
    blocks = plan_blocks(shape[1:], options.block, adapted.margin)
    for done, (ry, rx, cy, cx) in enumerate(blocks, start=1):
        raw = np.asarray(volume[:, ry, rx])
        if np.issubdtype(raw.dtype, np.floating) and not np.all(np.isfinite(raw)):
            raise ValueError("volume contains NaN or infinite values")
        sr = adapted.apply_block(adapted.intensity.forward(raw), (cy, cx), tile=tile)
        target = (
            slice(None),
            slice(ry.start + cy.start, ry.start + cy.stop),
            slice(rx.start + cx.start, rx.start + cx.stop),
        )
        out[target] = adapted.intensity.inverse(sr, dtype)
        yield done, len(blocks)
    return out


def _output(out: object | None, shape: tuple[int, ...], dtype: np.dtype) -> object:
    """``out`` checked against the result's shape and dtype (writing would cast the
    values silently), or a new numpy array of them."""
    if out is None:
        return np.empty(shape, dtype)
    if tuple(out.shape) != shape:
        raise ValueError(f"out must have shape {shape}, got {tuple(out.shape)}")
    if np.dtype(out.dtype) != dtype:
        raise ValueError(
            f"out must have dtype {dtype} (output_dtype, default the volume's), got {out.dtype}"
        )
    return out


def _channels(volume: object, channel_axis: int | None) -> tuple[list[object], int | None]:
    ndim = len(np.shape(volume))
    if channel_axis is None:
        return [volume], None
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)):
        raise ValueError(f"channel_axis must be None or an integer, got {channel_axis!r}")
    if ndim != 4 or not -4 <= channel_axis < 4:
        raise ValueError(
            f"with channel_axis the volume must have 4 axes (3 spatial and the channel "
            f"axis), got shape {tuple(np.shape(volume))} and channel_axis {channel_axis}"
        )
    axis = channel_axis % 4
    index = [slice(None)] * 4
    views = []
    for c in range(np.shape(volume)[axis]):
        index[axis] = c
        views.append(volume[tuple(index)])
    return views, axis


def work_units(shape: Sequence[int], z_factor: float, options: AxialOptions) -> tuple[int, int]:
    """Adaptation steps and blocks of the run of one channel of ``shape`` (Z, Y, X):
    what :attr:`AxialProgress.total` counts, per channel."""
    stages = len(plan_gradual_steps(z_factor, options.max_step))
    return stages * options.steps, len(plan_blocks(tuple(shape[-2:]), options.block, 0))


def iter_super_resolve_axial(
    volume: object,
    options: AxialOptions | None = None,
    /,
    *,
    z_factor: float,
    channel_axis: int | None = None,
    out: object | None = None,
    **kwargs,
) -> Generator[AxialProgress, None, object]:
    """Generator form of :func:`super_resolve_axial`: yields an :class:`AxialProgress`
    after every adaptation step and every block, returns the result
    (``StopIteration.value``). Closing it between yields cancels the run; nothing is
    computed after.

    Options as checked :class:`~napari_mzsr.pipeline.axial_options.AxialOptions`, or as
    the keyword arguments of :func:`super_resolve_axial` (not ``progress``/``cancel``).
    """
    if options is None:
        options = AxialOptions(**kwargs)
    elif kwargs:
        raise ValueError(f"give AxialOptions or keyword options, not both: {sorted(kwargs)}")
    z_factor = check_axial_factor(z_factor)
    views, axis = _channels(volume, channel_axis)
    for view in views:
        _check_volume(view)
    shape = tuple(int(n) for n in np.shape(views[0]))
    n_stages = len(plan_gradual_steps(z_factor, options.max_step))
    steps = options.steps
    adapt_units, n_blocks = work_units(shape, z_factor, options)
    per_channel = adapt_units + n_blocks
    total = per_channel * len(views)
    out_shape = (axial_output_length(shape[0], z_factor), *shape[1:])
    dtype = np.dtype(volume.dtype if options.output_dtype is None else options.output_dtype)
    full = out_shape if axis is None else (*out_shape[:axis], len(views), *out_shape[axis:])
    out = _output(out, full, dtype)
    for c, view in enumerate(views):
        base = c * per_channel
        run = iter_adapt_axial(view, z_factor, options)
        try:
            while True:
                try:
                    stage, step, loss = next(run)
                except StopIteration as finished:
                    adapted = finished.value
                    break
                yield AxialProgress(
                    "adapt", c, len(views), stage, n_stages, step, steps, 0, n_blocks,
                    base + stage * steps + step, total, loss,
                )  # fmt: skip
        finally:
            run.close()
        target = out if axis is None else _ChannelView(out, axis, c)
        apply = iter_apply_axial(adapted, view, options, out=target)
        try:
            for done, _ in apply:
                yield AxialProgress(
                    "apply", c, len(views), n_stages - 1, n_stages, steps, steps, done, n_blocks,
                    base + n_stages * steps + done, total,
                    adapted.losses[-1] if adapted.losses else None, adapted.sigma,
                )  # fmt: skip
        finally:
            apply.close()
    return out


class _ChannelView:
    """Writes ``view[index] = value`` into channel ``c`` along ``axis`` of ``out``."""

    def __init__(self, out: object, axis: int, c: int) -> None:
        self.out, self.axis, self.c = out, axis, c
        self.dtype = out.dtype
        shape = list(out.shape)
        del shape[axis]
        self.shape = tuple(shape)

    def __setitem__(self, index: tuple[slice, ...], value: np.ndarray) -> None:
        full = list(index)
        full.insert(self.axis, self.c)
        self.out[tuple(full)] = value


def super_resolve_axial(
    volume: object,
    *,
    z_factor: float,
    kernel: object = "estimate",
    steps: int = DEFAULT_STEPS,
    model: str | os.PathLike | MZSRModel = DEFAULT_MODEL,
    device: str | torch.device = "auto",
    seed: int = 0,
    progress: Callable[[AxialProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    channel_axis: int | None = None,
    optimizer: str = "adam",
    lr: float | Sequence[Sequence[float]] | Callable[[int], float] | None = None,
    adapt_patch: int = DEFAULT_PATCH,
    adapt_patches: int = DEFAULT_PATCHES,
    max_step: float = DEFAULT_MAX_STEP,
    normalization: str | IntensityMap = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    output_dtype: np.dtype | str | None = None,
    precision: str = "auto",
    block: int = DEFAULT_BLOCK,
    tile: int | None = None,
    out: object | None = None,
) -> object:
    """Make an anisotropic Z stack isotropic: super-resolve its Z axis by ``z_factor``.

    Parameters
    ----------
    volume : array-like, shape (Z, Y, X), or 4-D with ``channel_axis``
        Any integer or float dtype (see ``normalization``); numpy, dask, zarr or any
        array that supports numpy indexing, read block by block. Never modified.
    z_factor : float
        Ratio of the Z step to the lateral pixel size, in (1, 10] (e.g.
        :func:`~napari_mzsr.core.axial.z_factor_from_scale` of the voxel size).
    kernel : "estimate", float or {"sigma": s} / {"fwhm": w}
        The axial blur beyond the lateral one: a Gaussian along Z whose sigma (or FWHM)
        is in lateral pixels. ``"estimate"`` fits it to the stack's side planes
        (:func:`~napari_mzsr.core.axial_estimation.estimate_axial_sigma`).
    steps : int
        Adaptation steps per gradual stage.
    model : str, path or MZSRModel
        theta_M to start from; any channel count (a grey stack is fed to a 3-channel
        model as three equal channels). A scale-aware model runs each stage with its
        network bound to the stage's factors ``(z, 1)``.
    device : str or torch.device
        ``"auto"``, ``"cpu"``, ``"cuda:1"``, ...
    seed : int
        Seed of the adaptation patches and of torch.
    progress : callable(AxialProgress), optional
        Called after every adaptation step and every block.
    cancel : callable() -> bool, optional
        Checked after each of those; True raises :class:`~napari_mzsr.core.adaptation.Cancelled`.
    channel_axis : int, optional
        Axis of a 4-D ``volume`` holding channels; each is adapted on its own, with its
        own kernel estimate and intensity map, and the axis is kept in the result.
    optimizer : {"adam", "sgd"}
        Adaptation optimizer (see :func:`napari_mzsr.core.axial.adapt_axial`).
    lr : float, [[first_step, rate], ...] or callable(step) -> float, optional
        Learning rate, a piecewise-constant schedule, or one rate per 0-based step;
        default :data:`~napari_mzsr.pipeline.axial_options.DEFAULT_LR` for Adam, the
        model's step schedule for SGD.
    adapt_patch, adapt_patches : int
        Side and number of the XY patches each step fits (half of them transposed).
    max_step : float
        Largest factor of one adaptation stage; larger factors run in gradual stages
        (:func:`~napari_mzsr.core.gradual.plan_gradual_steps`).
    normalization : {"auto", "dtype", "percentile", "minmax"} or IntensityMap
        How intensities map to [0, 1] (:mod:`napari_mzsr.core.intensity`); fitted on the
        whole stack if it is a numpy array, else on :data:`INTENSITY_SLICES` XY slices.
    percentiles : (float, float)
        Low/high percentiles for ``"percentile"``.
    output_dtype : dtype, optional
        Default: the input's; integers are rounded and clipped.
    precision : {"auto", "float32", "bfloat16"}
        As in :func:`napari_mzsr.super_resolve`.
    block : int
        Lateral side of the blocks read and super-resolved at a time.
    tile : int, optional
        Tile side within a plane; default: whole planes while they fit the memory
        budget of :data:`napari_mzsr.core.tiling.CPU_TILE_BYTES`.
    out : writable array, optional
        Where to write the result (the output shape and dtype; e.g. a zarr array),
        instead of a new numpy array.

    Returns
    -------
    array, shape (round(Z * z_factor), Y, X)
        (the channel axis kept where it was). Output slice ``j`` lies at input slice
        ``j / z_factor`` for an integer factor (input slice ``i`` is output slice
        ``i * z_factor``), at ``(j + 0.5) / z_factor - 0.5`` otherwise.

    Raises
    ------
    ValueError
        Bad volume, factor, kernel or option (before any work).
    Cancelled
        ``cancel()`` returned True.

    Examples
    --------
    >>> stack = np.zeros((16, 64, 64), np.uint16)  # Z step 4 times the pixel size
    >>> iso = super_resolve_axial(stack, z_factor=4, kernel=2.0)  # doctest: +SKIP
    >>> iso.shape  # doctest: +SKIP
    (64, 64, 64)
    """
    options = AxialOptions(
        kernel=kernel, steps=steps, model=model, device=device, precision=precision, seed=seed,
        optimizer=optimizer, lr=lr, adapt_patch=adapt_patch, adapt_patches=adapt_patches,
        max_step=max_step, normalization=normalization, percentiles=percentiles,
        output_dtype=output_dtype, block=block, tile=tile,
    )  # fmt: skip
    run = iter_super_resolve_axial(
        volume, options, z_factor=z_factor, channel_axis=channel_axis, out=out
    )
    return drive(run, progress, cancel, cancelled_units)


def super_resolve_axial_dask(
    adapted: AdaptedAxial, volume: object, options: AxialOptions
) -> da.Array:
    """Lazily super-resolve one channel (Z, Y, X) with an adapted model and checked
    ``options`` (``block``, ``tile``, ``output_dtype``): a dask array whose every
    lateral block is computed, when asked for, from the input read with the whole Z
    extent and :attr:`AdaptedAxial.margin` pixels of lateral context. Equal to
    :func:`iter_apply_axial`'s result up to float rounding."""
    import dask.array as da

    arr = da.asarray(volume)
    shape = _check_volume(arr)
    block, tile = options.block, options.tile
    dtype = np.dtype(arr.dtype if options.output_dtype is None else options.output_dtype)
    margin = adapted.margin
    lateral = [_lateral_chunks(n, block, margin) for n in shape[1:]]
    arr = arr.rechunk(((shape[0],), *lateral))
    # An axis in one chunk has no neighbour to overlap (and may be shorter than a margin).
    depth = {0: 0, **{axis: margin if len(lateral[axis - 1]) > 1 else 0 for axis in (1, 2)}}
    out_z = adapted.output_shape(shape)[0]

    def one_block(piece: np.ndarray, block_id: tuple[int, ...]) -> np.ndarray:
        core = []
        for axis in (1, 2):
            index = block_id[axis]
            start = 0 if index == 0 else depth[axis]
            core.append(slice(start, start + lateral[axis - 1][index]))
        unit = adapted.intensity.forward(np.asarray(piece))
        sr = adapted.apply_block(unit, (core[0], core[1]), tile=tile)
        return adapted.intensity.inverse(sr, dtype)

    return da.map_overlap(
        one_block,
        arr,
        depth=depth,
        boundary="none",
        trim=False,
        chunks=((out_z,), *lateral),
        dtype=dtype,
        meta=np.empty((0, 0, 0), dtype),
    )


def _lateral_chunks(length: int, block: int, margin: int) -> tuple[int, ...]:
    """Chunks of ``block`` (at least ``margin``, the overlap), a short last one merged."""
    size = max(block, margin, 1)
    full, rest = divmod(length, size)
    chunks = [size] * full
    if rest and (rest >= margin or not chunks):
        chunks.append(rest)
    elif rest:
        chunks[-1] += rest
    return tuple(chunks)
