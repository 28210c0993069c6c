"""Super-resolving N-D image data (Z stacks, time series, channel axes) slice by slice.

The two spatial axes are the last two (or the two before an RGB(A) last axis); every
other axis is a "slice" axis and is kept in the result. Two modes:

``"once"``
    Adapt theta_M on one slice, then apply the adapted network to every slice (fast:
    one adaptation).
``"per_slice"``
    Adapt a fresh copy of theta_M on each slice and apply it to that slice.

Intensities are mapped to the network's range with one map fitted on the whole stack
(on a strided sample for percentiles), so the slices of the result stay comparable.
``kernel="estimate"`` is estimated once, on the adaptation slice
(:mod:`napari_mzsr.pipeline.kernel_choice`). A factor the model serves only in steps
(:mod:`napari_mzsr.pipeline.gradual`) runs the stack through each step in turn, in
float between the steps; progress then restarts at every step. No Qt or napari here:
the widget drives the generator from a worker thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch

from ..core import checks
from ..core.adaptation import StepReport
from ..core.intensity import DEFAULT_PERCENTILES, IntensityMap
from ..core.kernel_estimation import KernelEstimate
from ..core.self_check import FALLBACK, SelfCheck
from ..io.model_file import MZSRModel
from .adapted import AdaptedModel
from .images import ImageData, image_data, split_axes
from .kernel_choice import resolve_kernel
from .options import AUTO_PATCHES, AdaptOptions, ApplyOptions
from .run import adapt_image, cancelled_units, drive, plan_stages

Mode = Literal["once", "per_slice"]
MODES: tuple[str, ...] = ("once", "per_slice")


@dataclass(frozen=True)
class StackProgress:
    """Progress of a stack run, reported after every adaptation step and every slice.

    Attributes
    ----------
    phase : {"kernel", "adapt", "apply"}
        ``"kernel"`` once the kernel was estimated (``kernel="estimate"``), ``"adapt"``
        after an adaptation step, ``"apply"`` after a slice was super-resolved.
    step, steps : int
        Adaptation steps done and planned for the current adaptation.
    slice_done, n_slices : int
        Slices super-resolved so far and slices in the run.
    done, total : int
        Units of work done and planned (one per adaptation step, one per slice):
        drive a progress bar with these.
    loss : float or None
        L1 loss of the last adaptation step, ``None`` when no step has run yet.
    kernel_estimate : KernelEstimate or None
        The estimate, in the ``"kernel"`` report.
    """

    phase: str
    step: int
    steps: int
    slice_done: int
    n_slices: int
    done: int
    total: int
    loss: float | None
    kernel_estimate: KernelEstimate | None = None


@dataclass(frozen=True)
class StackResult:
    """What a stack run returns besides the array (for layer metadata and messages).

    Attributes
    ----------
    data : ndarray
        The result: the input's shape with H and W scaled (slice axes of length 1 with
        ``current_only``).
    kernel_estimate : KernelEstimate or None
        The estimate, when the kernel was estimated.
    intensity : IntensityMap
        How intensities were mapped.
    steps_taken : tuple of int
        Adaptation steps kept by each adaptation.
    self_checks : tuple of SelfCheck or None
        What each adaptation's self-check predicted and chose (None where it was off).
    threads : dict
        CPU threads of the last adaptation and inference (``AdaptedModel.threads_used``).
    adapted, adapted_on : AdaptedModel and ndarray, or None
        In ``"once"`` mode, the adapted model and the slice it was adapted on (what
        :func:`napari_mzsr.export_bioimageio` exports); None in ``"per_slice"`` mode.
    back_projection : int
        Back-projection iterations of the last inference (``back_projection=None``
        resolves per model: :meth:`AdaptedModel.back_projection_for`).
    """

    data: np.ndarray
    kernel_estimate: KernelEstimate | None
    intensity: IntensityMap
    steps_taken: tuple[int, ...]
    self_checks: tuple[SelfCheck | None, ...] = ()
    threads: dict[str, int] = field(default_factory=dict)
    adapted: AdaptedModel | None = None
    adapted_on: np.ndarray | None = None
    back_projection: int = 0

    def describe_back_projection(self) -> str:
        """``"back-projected N time(s)"`` for a summary, ``""`` where it did not run."""
        n = self.back_projection
        return f"back-projected {n} time{'s' if n != 1 else ''}" if n else ""

    def describe_checks(self) -> str:
        """The self-check's line for a status bar or a summary: the last adaptation's,
        with how many of the adaptations fell back when there were several."""
        checks = [c for c in self.self_checks if c is not None]
        if not checks:
            return "self-check off"
        line = checks[-1].describe()
        fallbacks = sum(c.choice == FALLBACK for c in checks)
        if len(checks) > 1 and fallbacks:
            line += f" ({fallbacks} of {len(checks)} adaptations fell back to interpolation)"
        return line


def default_index(slice_shape: Sequence[int]) -> tuple[int, ...]:
    """The middle slice, used for adaptation when no slice is chosen.

    Examples
    --------
    >>> default_index((5, 4))
    (2, 2)
    """
    return tuple(n // 2 for n in slice_shape)


def _check_index(index: Sequence[int], slice_shape: tuple[int, ...]) -> tuple[int, ...]:
    try:
        index = tuple(checks.integer(i, "index") for i in index)
    except TypeError:
        raise ValueError(f"index must be a sequence of integers, got {index!r}") from None
    if len(index) != len(slice_shape) or any(
        not 0 <= i < n for i, n in zip(index, slice_shape, strict=True)
    ):
        raise ValueError(f"slice index {index} is outside the slice axes of shape {slice_shape}")
    return index


def run_stack(
    data: ImageData,
    options: AdaptOptions,
    apply: ApplyOptions,
    *,
    mode: Mode = "once",
    index: Sequence[int] | None = None,
    current_only: bool = False,
) -> Generator[StackProgress, None, StackResult]:
    """Super-resolve every slice of checked stack ``data`` with checked options (the
    model resolved, or left to the gradual steps): the pipeline's stack run, driven by
    the widget and the command line. Parameters as in :func:`iter_super_resolve_stack`."""
    checks.one_of(mode, "stack mode", MODES)
    slice_shape = data.slice_shape
    index = default_index(slice_shape) if index is None else _check_index(index, slice_shape)
    stages, estimate = plan_stages(data.slice(index), options)
    kept: list[int] = []
    checked: list[SelfCheck | None] = []
    for number, stage in enumerate(stages[:-1]):
        float_apply = replace(apply, output_dtype=np.dtype(np.float32))
        reported = estimate if number == 0 else None
        result = yield from _run_stage(
            data, stage, float_apply, mode, index, current_only, reported
        )
        data = image_data(result.data, rgb=data.rgb, stack=True, normalization=data.intensity)
        # The first step's "auto" holds for the later ones (see pipeline.run).
        apply = replace(apply, back_projection=result.back_projection)
        index = (0,) * len(slice_shape) if current_only else index
        current_only, kept = False, kept + list(result.steps_taken)
        checked += list(result.self_checks)
    result = yield from _run_stage(data, stages[-1], apply, mode, index, current_only)
    estimate = estimate or result.kernel_estimate
    return replace(
        result,
        steps_taken=(*kept, *result.steps_taken),
        kernel_estimate=estimate,
        self_checks=(*checked, *result.self_checks),
    )


def _run_stage(
    data: ImageData,
    options: AdaptOptions,
    apply: ApplyOptions,
    mode: Mode,
    index: tuple[int, ...],
    current_only: bool,
    planned: KernelEstimate | None = None,
) -> Generator[StackProgress, None, StackResult]:
    """One step of a stack run (the whole run when the factors take one step); it
    reports ``planned``, the estimate a gradual run was planned with, if given."""
    slice_shape = data.slice_shape
    positions = [index] if current_only else list(np.ndindex(*slice_shape))
    n_slices = len(positions)
    adaptations = n_slices if mode == "per_slice" else 1
    steps = options.steps
    total = adaptations * steps + n_slices
    options, estimate = resolve_kernel(options, data.slice(index))
    estimate = estimate or planned
    if estimate is not None:
        yield StackProgress("kernel", 0, steps, 0, n_slices, 0, total, None, estimate)

    def adaptation(position: tuple[int, ...], slices_done: int, done: int):
        run = adapt_image(data.slice(position), options)
        return _reporting(run, slices_done, n_slices, done, total)

    result: np.ndarray | None = None
    done, loss, kept, checked = 0, None, [], []
    if mode == "once":
        adapted, loss = yield from adaptation(index, 0, done)
        kept.append(adapted.steps_taken)
        checked.append(adapted.self_check)
        done += steps
    for slices_done, position in enumerate(positions):
        if mode == "per_slice":
            adapted, loss = yield from adaptation(position, slices_done, done)
            kept.append(adapted.steps_taken)
            checked.append(adapted.self_check)
            done += steps
        sr = adapted.render(data.slice(position), apply)
        if result is None:
            out_shape = tuple(1 for _ in slice_shape) if current_only else slice_shape
            result = np.empty(out_shape + sr.shape, sr.dtype)
        result[(0,) * len(slice_shape) if current_only else position] = sr
        done += 1
        yield StackProgress("apply", steps, steps, slices_done + 1, n_slices, done, total, loss)
    once = mode == "once"
    return StackResult(
        result,
        estimate,
        data.intensity,
        tuple(kept),
        tuple(checked),
        dict(adapted.threads_used),
        adapted if once else None,
        np.asarray(data.slice(index).array) if once else None,
        adapted.back_projection_used or 0,
    )


def _reporting(
    run: Generator[StepReport, None, AdaptedModel],
    slices_done: int,
    n_slices: int,
    done: int,
    total: int,
) -> Generator[StackProgress, None, tuple[AdaptedModel, float | None]]:
    """Drive one adaptation, translating its step reports into :class:`StackProgress`;
    returns the adapted model and the last loss."""
    loss = None
    try:
        while True:
            try:
                report = next(run)
            except StopIteration as finished:
                return finished.value, loss
            loss = report.loss
            step = report.step + 1
            yield StackProgress(
                "adapt", step, report.steps, slices_done, n_slices, done + step, total, loss
            )
    finally:
        # A cancel (GeneratorExit here) must stop the adaptation at once, not at GC time.
        run.close()


def stack_data(
    data: object,
    options: AdaptOptions,
    *,
    rgb: bool = False,
    index: Sequence[int] | None = None,
    current_only: bool = False,
) -> tuple[ImageData, AdaptOptions]:
    """Check stack ``data`` and fit its intensity map (on slice ``index`` alone with
    ``current_only``, so the rest is never read); returns it and ``options`` with the
    model chosen for it."""
    fit_on = None
    if current_only:
        slice_shape, _ = split_axes(np.shape(data), rgb)
        position = default_index(slice_shape) if index is None else _check_index(index, slice_shape)
        fit_on = data[position]
    stack = image_data(
        data,
        rgb=rgb,
        stack=True,
        normalization=options.normalization,
        percentiles=options.percentiles,
        fit_on=fit_on,
    )
    return stack, options.for_image(stack.rgb)


def iter_super_resolve_stack(
    data: object,
    options: AdaptOptions | None = None,
    apply: ApplyOptions | None = None,
    /,
    *,
    mode: Mode = "once",
    rgb: bool = False,
    index: Sequence[int] | None = None,
    current_only: bool = False,
    **kwargs,
) -> Generator[StackProgress, None, np.ndarray]:
    """Generator form of :func:`super_resolve_stack`: yields a :class:`StackProgress`
    after every adaptation step and every super-resolved slice and returns the result
    (``StopIteration.value``). Closing it between yields cancels the run.

    Options as checked :class:`AdaptOptions` and :class:`ApplyOptions`, or as the
    keyword arguments of :func:`super_resolve_stack` (not ``progress``/``cancel``).

    Examples
    --------
    >>> run = iter_super_resolve_stack(stack, scale=2, kernel=2.0)  # doctest: +SKIP
    >>> try:
    ...     while True:
    ...         progress = next(run)
    ... except StopIteration as done:
    ...     result = done.value
    """
    if options is None:
        apply_keys = ("output_dtype", "tile", "ensemble", "back_projection")
        apply = ApplyOptions(**{k: kwargs.pop(k) for k in apply_keys if k in kwargs})
        options = AdaptOptions(**kwargs)
    apply = apply if apply is not None else ApplyOptions()
    stack, options = stack_data(data, options, rgb=rgb, index=index, current_only=current_only)
    result = yield from run_stack(
        stack, options, apply, mode=mode, index=index, current_only=current_only
    )
    return result.data


def super_resolve_stack(
    data: object,
    *,
    scale: float | Sequence[float] = 2,
    kernel: object = None,
    steps: int = 10,
    model: str | os.PathLike | MZSRModel | None = None,
    device: str | torch.device = "auto",
    mode: Mode = "once",
    rgb: bool = False,
    index: Sequence[int] | None = None,
    current_only: bool = False,
    progress: Callable[[StackProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    seed: int = 0,
    lr: float | Sequence[Sequence[float]] | None = None,
    normalization: str | IntensityMap = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    output_dtype: np.dtype | str | None = None,
    precision: str = "auto",
    adapt_patch: int | str | None = "auto",
    adapt_patches: int = AUTO_PATCHES,
    noise: str = "auto",
    self_check: bool = True,
    threads: int | str = "auto",
    tile: int | None = None,
    ensemble: str | None = None,
    back_projection: int | None = None,
) -> np.ndarray:
    """Super-resolve every 2D (or RGB) slice of N-D ``data``, keeping its other axes.

    Parameters
    ----------
    data : array-like, shape (..., H, W) or (..., H, W, 3|4)
        Numpy, dask or any array that supports indexing; slices are read one at a time
        (the intensity map reads a strided sample of the whole stack, or, with
        ``current_only``, the one slice). Never modified.
    scale, kernel, steps, model, device, seed, lr, normalization, percentiles, \
output_dtype, precision, adapt_patch, adapt_patches, noise, self_check, threads, tile, \
ensemble, back_projection
        As in :func:`napari_mzsr.super_resolve`; the intensity map is fitted once on the
        whole stack and ``kernel="estimate"`` estimated once on the adaptation slice.
    mode : {"once", "per_slice"}
        Adapt once on slice ``index`` and apply to every slice, or adapt on each slice.
    rgb : bool
        Whether the last axis holds RGB(A) colours.
    index : sequence of int, optional
        Position on the slice axes of the slice to adapt on (``"once"``) or to process
        (``current_only``); default: the middle slice. Ignored for a single image.
    current_only : bool
        Process only slice ``index``: a quick preview of one slice of a stack.
    progress : callable(StackProgress), optional
        Called after every adaptation step and every slice.
    cancel : callable() -> bool, optional
        Checked after every report; True raises :class:`Cancelled`.

    Returns
    -------
    ndarray
        ``data``'s shape with H and W multiplied by the scale (rounded up); with
        ``current_only`` every slice axis has length 1.

    Raises
    ------
    ValueError
        Bad data or option (raised before the first step).
    Cancelled
        ``cancel()`` returned True.

    Examples
    --------
    >>> stack = np.zeros((5, 64, 64), np.uint16)
    >>> sr = super_resolve_stack(stack, scale=2, kernel=2.0)  # doctest: +SKIP
    >>> sr.shape  # doctest: +SKIP
    (5, 128, 128)
    """
    options = AdaptOptions(
        scale=scale,
        kernel=kernel,
        steps=steps,
        model=model,
        device=device,
        precision=precision,
        seed=seed,
        lr=lr,
        normalization=normalization,
        percentiles=percentiles,
        adapt_patch=adapt_patch,
        adapt_patches=adapt_patches,
        noise=noise,
        self_check=self_check,
        threads=threads,
    )
    apply = ApplyOptions(output_dtype, tile, ensemble, back_projection)
    run = iter_super_resolve_stack(
        data, options, apply, mode=mode, rgb=rgb, index=index, current_only=current_only
    )
    return drive(run, progress, cancel, cancelled_units)
