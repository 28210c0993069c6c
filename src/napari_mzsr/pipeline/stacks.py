"""Super-resolving N-D image data (Z stacks, time series, channel axes) slice by slice.

The two spatial axes are the last two (or the two before an RGB(A) last axis); every
other axis is a "slice" axis and is kept in the result. Two modes:

``"once"``
    Adapt theta_M on one slice, then apply the adapted network to every slice (fast:
    one adaptation).
``"per_slice"``
    Adapt a fresh copy of theta_M on each slice and apply it to that slice.

Intensities are mapped to the network's range with one map fitted on the whole stack,
so the slices of the result stay comparable. No Qt or napari here: the widget drives
the generator from a worker thread.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from ..core.adaptation import StepReport
    from ..core.intensity import IntensityMap
    from ..io.model_file import MZSRModel
    from .run import AdaptedModel

Mode = Literal["once", "per_slice"]
MODES: tuple[str, ...] = ("once", "per_slice")


@dataclass(frozen=True)
class StackProgress:
    """Progress of a stack run, reported after every adaptation step and every slice.

    Attributes
    ----------
    phase : {"adapt", "apply"}
        ``"adapt"`` after an adaptation step, ``"apply"`` after a slice was
        super-resolved.
    step, steps : int
        Adaptation steps done and planned for the current adaptation.
    slice_done, n_slices : int
        Slices super-resolved so far and slices in the run.
    done, total : int
        Units of work done and planned (one per adaptation step, one per slice):
        drive a progress bar with these.
    loss : float or None
        L1 loss of the last adaptation step, ``None`` when no step has run yet.
    """

    phase: str
    step: int
    steps: int
    slice_done: int
    n_slices: int
    done: int
    total: int
    loss: float | None


def split_axes(shape: Sequence[int], rgb: bool = False) -> tuple[tuple[int, ...], int]:
    """Split an array shape into its slice axes and the number of trailing image axes.

    Parameters
    ----------
    shape : sequence of int
        Shape of the data, spatial axes last (then the colour axis for RGB).
    rgb : bool
        Whether the last axis holds RGB(A) colours.

    Returns
    -------
    slice_shape : tuple of int
        Shape of the leading (non-spatial) axes; ``()`` for a single image.
    n_image_axes : int
        2 for grayscale, 3 for RGB(A).

    Raises
    ------
    ValueError
        If the shape has too few axes or an RGB last axis that is not 3 or 4 long.

    Examples
    --------
    >>> split_axes((5, 64, 64))
    ((5,), 2)
    >>> split_axes((2, 64, 64, 3), rgb=True)
    ((2,), 3)
    """
    shape = tuple(int(n) for n in shape)
    n_image = 3 if rgb else 2
    if len(shape) < n_image:
        kind = "an RGB image needs (..., H, W, 3|4)" if rgb else "an image needs (..., H, W)"
        raise ValueError(f"data of shape {shape} has too few axes: {kind}")
    if rgb and shape[-1] not in (3, 4):
        raise ValueError(f"an RGB(A) layer must end with 3 or 4 colours, got shape {shape}")
    return shape[: len(shape) - n_image], n_image


def default_index(slice_shape: Sequence[int]) -> tuple[int, ...]:
    """The middle slice, used for adaptation when no slice is chosen.

    Examples
    --------
    >>> default_index((5, 4))
    (2, 2)
    """
    return tuple(n // 2 for n in slice_shape)


def _check_index(index: Sequence[int], slice_shape: tuple[int, ...]) -> tuple[int, ...]:
    index = tuple(int(i) for i in index)
    if len(index) != len(slice_shape) or any(
        not 0 <= i < n for i, n in zip(index, slice_shape, strict=True)
    ):
        raise ValueError(f"slice index {index} is outside the slice axes of shape {slice_shape}")
    return index


def _fit_intensity(
    data: object, rgb: bool, normalization: str | IntensityMap, percentiles: tuple[float, float]
) -> IntensityMap:
    from ..core.intensity import IntensityMap, intensity_map

    if isinstance(normalization, IntensityMap):
        return normalization
    arr = np.asarray(data)
    return intensity_map(arr[..., :3] if rgb else arr, normalization, percentiles)


def iter_super_resolve_stack(
    data: object,
    scale: float,
    kernel: object,
    steps: int,
    model: str | os.PathLike | MZSRModel,
    device: str = "auto",
    seed: int = 0,
    *,
    mode: Mode = "once",
    rgb: bool = False,
    index: Sequence[int] | None = None,
    current_only: bool = False,
    lr: float | Sequence[Sequence[float]] | None = None,
    normalization: str | IntensityMap = "dtype",
    percentiles: tuple[float, float] = (0.1, 99.9),
    output_dtype: np.dtype | str | None = None,
    precision: str = "auto",
    ensemble: str | None = None,
    back_projection: int = 0,
) -> Generator[StackProgress, None, np.ndarray]:
    """Super-resolve every 2D (or RGB) slice of N-D ``data``, keeping its other axes.

    A generator: it yields a :class:`StackProgress` after every adaptation step and
    every super-resolved slice, and returns the result (``StopIteration.value``).
    Closing it between yields cancels the run; nothing more is computed.

    Parameters
    ----------
    data : array-like, shape (..., H, W) or (..., H, W, 3|4)
        Numpy, dask or any array that supports indexing; slices are read one at a time,
        except that ``"percentile"`` and ``"minmax"`` normalisation read the whole stack.
    scale, kernel, steps, model, device, seed, lr, percentiles, precision
        As in :func:`napari_mzsr.api.iter_adapt`. ``kernel="estimate"`` estimates the
        kernel on every slice that is adapted on.
    mode : {"once", "per_slice"}
        Adapt once on slice ``index`` and apply to every slice, or adapt on each slice.
    rgb : bool
        Whether the last axis holds RGB(A) colours.
    index : sequence of int, optional
        Position on the slice axes of the slice to adapt on (``"once"``) or to process
        (``current_only``); default: the middle slice. Ignored for a single image.
    current_only : bool
        Process only slice ``index``: a quick preview of one slice of a stack. Its
        intensity map is fitted on that slice alone, so the whole stack is never read.
    normalization : {"dtype", "percentile", "minmax"} or IntensityMap
        How intensities map to [0, 1]; fitted once on the whole stack (or the slice,
        for ``current_only``).
    output_dtype : dtype, optional
        dtype of the result (default: the data's).
    ensemble, back_projection
        Refinements of every slice, as in :meth:`napari_mzsr.api.AdaptedModel.apply`.

    Returns
    -------
    ndarray
        ``data``'s shape with H and W multiplied by ``scale`` (rounded up); with
        ``current_only`` every slice axis has length 1.

    Raises
    ------
    ValueError
        Bad data shape, mode, index, or any argument :func:`~napari_mzsr.api.iter_adapt`
        refuses (raised before the first step).

    Examples
    --------
    >>> run = iter_super_resolve_stack(stack, 2, 2.0, 10, "direct-x2")  # doctest: +SKIP
    >>> try:
    ...     while True:
    ...         progress = next(run)
    ... except StopIteration as done:
    ...     result = done.value
    """
    from ..io.model_file import load_model
    from .run import iter_adapt

    if mode not in MODES:
        raise ValueError(f"stack mode must be one of {MODES}, got {mode!r}")
    shape = tuple(np.shape(data))
    slice_shape, _ = split_axes(shape, rgb)
    index = default_index(slice_shape) if index is None else _check_index(index, slice_shape)
    if current_only:
        positions = [index]
        out_slices = (0,) * len(slice_shape)
        imap = _fit_intensity(data[index], rgb, normalization, percentiles)
    else:
        positions = list(np.ndindex(*slice_shape))
        imap = _fit_intensity(data, rgb, normalization, percentiles)
    n_slices = len(positions)
    adaptations = n_slices if mode == "per_slice" else 1
    total = adaptations * steps + n_slices
    mzsr = load_model(model)  # once, not once per slice
    options = {"lr": lr, "normalization": imap, "rgb": rgb, "precision": precision}

    def adaptation(position: tuple[int, ...], slices_done: int, done: int):
        run = iter_adapt(
            np.asarray(data[position]), scale, kernel, steps, mzsr, device, seed, **options
        )
        return _reporting(run, slices_done, n_slices, done, total)

    result: np.ndarray | None = None
    done, loss = 0, None
    if mode == "once":
        adapted, loss = yield from adaptation(index, 0, done)
        done += steps
    for slices_done, position in enumerate(positions):
        if mode == "per_slice":
            adapted, loss = yield from adaptation(position, slices_done, done)
            done += steps
        sr = adapted.apply(
            np.asarray(data[position]),
            output_dtype,
            rgb,
            ensemble=ensemble,
            back_projection=back_projection,
        )
        if result is None:
            out_shape = tuple(1 for _ in slice_shape) if current_only else slice_shape
            result = np.empty(out_shape + sr.shape, sr.dtype)
        result[out_slices if current_only else position] = sr
        done += 1
        yield StackProgress("apply", steps, steps, slices_done + 1, n_slices, done, total, loss)
    return result


def _reporting(
    run: Generator[StepReport, None, AdaptedModel],
    slices_done: int,
    n_slices: int,
    done: int,
    total: int,
) -> Generator[StackProgress, None, tuple[AdaptedModel, float | None]]:
    """Drive one :func:`~napari_mzsr.api.iter_adapt` run, translating its step reports
    into :class:`StackProgress`; returns the adapted model and the last loss."""
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
