"""Tiled inference: super-resolve an image of any size in pieces that fit in memory.

``infer`` (:func:`napari_mzsr.meta_test.infer`) is ``net(imresize(lr, s))`` clipped to
[0, 1]. An output pixel depends on output pixels at most ``radius`` away (one per 3x3
convolution, 8 for the MZSR network), and each of those reads low-resolution (LR) pixels
less than 2 away from its sample position ``(j + 0.5) / s - 0.5`` (the Keys cubic has
support 2; upscaling never widens it). So a tile of the LR image read with a margin of
:func:`tile_margin` LR pixels on every side, whose output is cropped back to the tile,
reproduces the untiled output exactly (up to float rounding): the seams are invisible
and no blending is needed. At the image border the tile's border is the image's, so the
border handling (symmetric for the resize, zeros for the convolutions) is the same too.

The output grid of a window must also line up with the full output grid: output pixel
``j`` of a window starting at LR pixel ``a`` is output pixel ``j + a * s`` of the whole
image only if ``a * s`` is an integer. Tiles and windows therefore start at multiples of
:func:`grid_step` (1 for integer scales, 2 for 2.5, 4 for 1.25, ...). A scale that is not
a fraction with a small denominator (:data:`MAX_GRID_STEP`) cannot be tiled exactly; such
images run in one piece.

Tile sizes are in LR pixels per side. By default they follow the free memory of the
device (:func:`auto_tile`); a CUDA out-of-memory error halves the tile and retries.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import torch

from .devices import available_memory
from .resize import output_size, parse_scale

Region = tuple[slice, slice]


def centre_window(shape: tuple[int, ...], side: int) -> Region:
    """The centre window of at most ``side`` pixels square of an image of ``shape``
    (its last two axes): what is read to estimate something of a whole image."""
    height, width = shape[-2:]
    top, left = max(0, (height - side) // 2), max(0, (width - side) // 2)
    return slice(top, top + min(side, height)), slice(left, left + min(side, width))


# Scales whose reduced fraction has a larger denominator are not tiled (see the module
# docstring); real-world factors (2, 2.5, 3, 4/3, 1.25, ...) are far below this.
MAX_GRID_STEP = 64
# Halving stops here: an out-of-memory error on a tile this small is not a tiling matter.
MIN_TILE = 16
# CPU tiles use at most this many bytes: larger tiles are no faster, and the rest of the
# memory is left to the image, the result and the other programs.
CPU_TILE_BYTES = 1 << 30


@dataclass(frozen=True)
class Tile:
    """One piece of a tiled run.

    Attributes
    ----------
    core : (slice, slice)
        LR rows and columns this tile is responsible for.
    window : (slice, slice)
        LR rows and columns read: the core plus the margin, clipped to the image.
    crop : (slice, slice)
        Rows and columns of the window's output that belong to the core.
    target : (slice, slice)
        Where that crop goes in the output of the whole planned region.
    """

    core: Region
    window: Region
    crop: Region
    target: Region


def grid_step(scale: float) -> int | None:
    """Smallest LR step ``q`` with ``q * scale`` an integer, or None when it exceeds
    :data:`MAX_GRID_STEP`.

    Examples
    --------
    >>> grid_step(2), grid_step(2.5), grid_step(1.25), grid_step(2**0.5)
    (1, 2, 4, None)
    """
    fraction = Fraction(scale).limit_denominator(MAX_GRID_STEP)
    if abs(float(fraction) - scale) > 1e-9 * scale:
        return None
    return fraction.denominator


def tile_margin(scale: float | tuple[float, float], radius: int = 8) -> int:
    """LR pixels of context each tile needs on every side, a multiple of the grid step.

    Parameters
    ----------
    scale : float or (float, float)
        Super-resolution factor (>= 1), per axis if a pair.
    radius : int
        Receptive radius of the network in output pixels (its number of 3x3 layers).

    Returns
    -------
    int
        ``ceil(radius / scale) + 3``: output pixels up to ``radius`` beyond the tile
        sample LR positions up to ``radius / scale + 0.5`` beyond it, and the cubic
        reads less than 2 LR pixels further (the 3 rounds that up with one spare).
        Rounded up to a multiple of the grid steps; 0 for a scale that cannot be
        tiled.

    Examples
    --------
    >>> tile_margin(2), tile_margin(2.5), tile_margin(4)
    (7, 8, 5)
    """
    scales = parse_scale(scale)
    steps = [grid_step(s) for s in scales]
    if None in steps:
        return 0
    step = math.lcm(*steps)
    margin = math.ceil(radius / min(scales)) + 3
    return -(-margin // step) * step


def output_index(position: int, length: int, scale: float) -> int:
    """First output pixel of LR pixel ``position`` of an axis of ``length`` pixels:
    ``position * scale`` for an aligned position (a multiple of :func:`grid_step`),
    MATLAB's ``ceil(length * scale)`` at the end of the axis."""
    return output_size(length, scale) if position == length else round(position * scale)


def _axis_pieces(
    length: int, start: int, stop: int, tile: int, margin: int, scale: float
) -> list[tuple[slice, slice, slice, slice]]:
    """Core, window, crop and target slices of the tiles of ``[start, stop)``."""
    pieces = []
    origin = output_index(start, length, scale)
    for a in range(start, stop, tile):
        b = min(a + tile, stop)
        w0, w1 = max(0, a - margin), min(length, b + margin)
        out_a, out_b = output_index(a, length, scale), output_index(b, length, scale)
        out_w0 = output_index(w0, length, scale)
        pieces.append(
            (
                slice(a, b),
                slice(w0, w1),
                slice(out_a - out_w0, out_b - out_w0),
                slice(out_a - origin, out_b - origin),
            )
        )
    return pieces


def _check_region(
    region: Region, shape: tuple[int, int], steps: tuple[int, int]
) -> tuple[range, range]:
    bounds = []
    for part, length, step in zip(region, shape, steps, strict=True):
        start, stop, stride = part.indices(length)
        if stride != 1 or start >= stop:
            raise ValueError(f"region {region} is empty or strided for an image of {shape}")
        if start % step or (stop != length and stop % step):
            raise ValueError(
                f"region {region} must start and end on multiples of {step} LR pixels "
                "(or at the image end) for its output grid to match the whole image's"
            )
        bounds.append(range(start, stop))
    return bounds[0], bounds[1]


def plan_tiles(
    shape: tuple[int, int],
    scale: float | tuple[float, float],
    tile: int,
    margin: int,
    region: Region | None = None,
) -> list[Tile]:
    """Split ``region`` of an LR image into tiles (row by row).

    Parameters
    ----------
    shape : (int, int)
        LR image height and width.
    scale : float or (float, float)
        Super-resolution factor, per axis if a pair.
    tile : int
        Largest core side, in LR pixels; rounded down to a multiple of the grid step.
    margin : int
        LR context read around each core (see :func:`tile_margin`).
    region : (slice, slice), optional
        The LR rows and columns to produce (default: the whole image). Its bounds must
        be multiples of the grid step or the image end.

    Returns
    -------
    list of Tile
        One tile when the scale cannot be tiled (:func:`grid_step` is None).
    """
    scales = parse_scale(scale)
    grid = (grid_step(scales[0]), grid_step(scales[1]))
    whole = (slice(0, shape[0]), slice(0, shape[1]))
    if None in grid:
        if region is not None and _check_region(region, shape, (1, 1)) != _check_region(
            whole, shape, (1, 1)
        ):
            raise ValueError(f"scale {scale} cannot be tiled: only the whole image can be planned")
        tile, margin = max(shape), 0
    steps = (1, 1) if None in grid else grid
    if any(margin % step for step in steps):
        raise ValueError(f"margin {margin} must be a multiple of the grid steps {steps}")
    rows, cols = _check_region(whole if region is None else region, shape, steps)
    per_axis = []
    for axis, span in enumerate((rows, cols)):
        size = max(steps[axis], tile // steps[axis] * steps[axis])
        per_axis.append(
            _axis_pieces(shape[axis], span.start, span.stop, size, margin, scales[axis])
        )
    return [
        Tile((ry[0], rx[0]), (ry[1], rx[1]), (ry[2], rx[2]), (ry[3], rx[3]))
        for ry in per_axis[0]
        for rx in per_axis[1]
    ]


def region_output_shape(
    shape: tuple[int, int], scale: float | tuple[float, float], region: Region | None = None
) -> tuple[int, int]:
    """Output height and width of ``region`` (default: the whole image)."""
    scales = parse_scale(scale)
    out = []
    for axis, length in enumerate(shape):
        start, stop, _ = (slice(None) if region is None else region[axis]).indices(length)
        s = scales[axis]
        out.append(output_index(stop, length, s) - output_index(start, length, s))
    return out[0], out[1]


def for_each_tile(
    process: Callable[[Tile], None],
    shape: tuple[int, int],
    scale: float | tuple[float, float],
    margin: int,
    tile: int,
    region: Region | None = None,
) -> int:
    """Call ``process(tile)`` for the tiles of ``region``, halving the tile size on out of
    memory errors.

    Parameters
    ----------
    process : callable(Tile)
        Reads ``tile.window``, super-resolves it and stores ``output[..., *tile.crop]``
        at ``tile.target``. It may be called again for the same area after an
        out-of-memory error, with smaller tiles.
    shape, scale, margin, tile, region
        As in :func:`plan_tiles`.

    Returns
    -------
    int
        The tile size in use at the end (smaller than ``tile`` after an out-of-memory
        error).

    Raises
    ------
    torch.OutOfMemoryError
        When even a tile of :data:`MIN_TILE` LR pixels does not fit.
    """
    pending = plan_tiles(shape, scale, tile, margin, region)[::-1]
    while pending:
        current = pending.pop()
        parts = plan_tiles(shape, scale, tile, margin, current.core)
        if len(parts) > 1:
            pending.extend(_shifted(part, current.target) for part in reversed(parts))
            continue
        try:
            process(current)
            continue
        except torch.OutOfMemoryError:
            # Halve the tile, or the core's longer side when the core was smaller.
            smaller = min(tile, max(s.stop - s.start for s in current.core)) // 2
            if (
                smaller < MIN_TILE
                or len(plan_tiles(shape, scale, smaller, margin, current.core)) == 1
            ):
                raise
        # Outside the except block, so that the error's frames (and tensors) are freed.
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        tile = smaller
        pending.append(current)
    return tile


def _shifted(tile: Tile, parent_target: Region) -> Tile:
    """``tile`` (planned on a sub-region) with its target moved into the parent's output."""
    target = tuple(
        slice(t.start + p.start, t.stop + p.start)
        for t, p in zip(tile.target, parent_target, strict=True)
    )
    return Tile(tile.core, tile.window, tile.crop, target)


def bytes_per_output_pixel(features: int, channels: int) -> int:
    """Estimated peak bytes per output pixel of one inference: three float32 feature maps
    (a convolution's input, its output and the workspace of its algorithm) and four
    image-sized float32 tensors (upsampled input, its channels-last copy, residual,
    clipped output)."""
    return 4 * (3 * features + 4 * channels)


def auto_tile(
    device: torch.device,
    scale: float | tuple[float, float],
    features: int = 64,
    channels: int = 3,
    margin: int = 0,
    budget: int | None = None,
) -> int:
    """Largest tile (LR pixels per side) whose inference fits in the memory budget.

    Parameters
    ----------
    device : torch.device
        Where inference runs.
    scale : float or (float, float)
        Super-resolution factor, per axis if a pair.
    features, channels : int
        Network width and image channels (see :func:`bytes_per_output_pixel`).
    margin : int
        LR margin read around each tile.
    budget : int, optional
        Bytes to use. Default: half the free memory on CUDA; on other devices a quarter
        of the available RAM, at most :data:`CPU_TILE_BYTES`.

    Returns
    -------
    int
        At least :data:`MIN_TILE`.
    """
    if budget is None:
        free = available_memory(device)
        budget = free // 2 if device.type == "cuda" else min(free // 4, CPU_TILE_BYTES)
    pixels = budget / bytes_per_output_pixel(features, channels)
    sy, sx = parse_scale(scale)
    side = int(math.sqrt(pixels / (sy * sx))) - 2 * margin
    return max(MIN_TILE, side)
