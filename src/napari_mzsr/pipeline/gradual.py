"""Gradual super-resolution: a factor beyond what one model serves, reached in steps
(as ZSSR does), each step a meta-test of its own on the previous step's output.

Planning (:func:`plan_steps`). A multi-scale model serving factors up to ``m`` (the
shipped ``arbitrary`` models: 4) splits each axis's factor ``s`` into ``n`` equal steps
``s^(1/n)``, ``n`` the fewest steps that keep both axes within ``m`` (x8 becomes
2.83 x 2.83; (8, 2) becomes (2.83, 1.41) twice). A single-scale model of factor ``s0``
serves ``s0^n`` in ``n`` steps of ``s0`` (x8 with direct-x2: three x2 steps), so its
subsampling convention holds at every step. Without a model, the steps are planned
for the shipped multi-scale models (or, if none is shipped, the largest single-scale
factor whose power the factor is) and the shipped model
:func:`~napari_mzsr.pipeline.options.model_for` picks for the first step runs every
step, so that one subsampling convention describes the result.

Sizes (:func:`step_factors`). The result has exactly the size of the whole factor
(``ceil(H * sy)``), and every step's factor is a ratio of whole sizes that tiled
inference can follow exactly (:func:`~napari_mzsr.core.tiling.grid_step`): for two
steps the intermediate size nearest the equal split whose factors tile in steps of at
most 8 pixels is taken (100 -> 280 -> 800 for x8: factors 2.8 and 2.857). Longer plans
keep their equal intermediate sizes and end on the exact factor.

Kernels (:func:`step_kernel`). The kernel describes the blur of the whole factor, in
output pixels. Step ``j`` of factor ``s_j`` uses the Gaussian of that kernel's
covariance scaled by ``(s_j / s)^2`` per axis: the same blur relative to the step's own
input pixels, the relation between blur and factor the models were meta-trained with
(variances proportional to ``s^2``). With one step the kernel is used as it is.

Between steps the result stays float in the input's units (no rounding) and keeps the
input's intensity map.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from ..core.kernels import stretch_kernel
from ..core.resize import output_size
from ..core.tiling import grid_step
from ..io.model_file import ModelInfo, load_model, shipped_models
from .images import ImageData, image_data

Pair = tuple[float, float]
# A factor this close to a power of a single-scale model's factor counts as that power.
_POWER_TOLERANCE = 1e-6
# How far (as a ratio) a step's exact factor may stray from the planned one.
SIZE_SLACK = 1.15
# Intermediate sizes whose factors tile with steps up to this are preferred.
SMALL_GRID_STEP = 8


def equal_steps(scale: Pair, max_step: float) -> list[Pair]:
    """The fewest equal steps per axis with every step at most ``max_step``.

    Examples
    --------
    >>> [tuple(round(s, 3) for s in p) for p in equal_steps((8.0, 2.0), 4.0)]
    [(2.828, 1.414), (2.828, 1.414)]
    """
    count = max(1, *(math.ceil(math.log(s) / math.log(max_step) - _POWER_TOLERANCE) for s in scale))
    return [(scale[0] ** (1 / count), scale[1] ** (1 / count))] * count


def power_steps(scale: Pair, factor: float) -> list[Pair] | None:
    """``n`` steps of ``(factor, factor)`` when ``scale`` is ``(factor^n, factor^n)``."""
    if scale[0] != scale[1] or factor <= 1:
        return None
    count = round(math.log(scale[0]) / math.log(factor))
    if count < 1 or abs(factor**count - scale[0]) > _POWER_TOLERANCE * scale[0]:
        return None
    return [(factor, factor)] * count


def model_steps(scale: Pair, info: ModelInfo) -> list[Pair] | None:
    """Steps of ``scale`` that model ``info`` serves each, or None if there are none."""
    if info.supports_scale(scale):
        return [scale]
    if len(info.scales) == 1:
        return power_steps(scale, info.scales[0])
    steps = equal_steps(scale, max(info.scales))
    return steps if all(info.supports_scale(step) for step in steps) else None


def plan_steps(scale: Pair, model: ModelInfo | None = None) -> list[Pair]:
    """The factor pairs of the steps that reach ``scale`` (one pair when one step will
    do), with ``model`` or, when None, with the shipped models.

    Raises
    ------
    ValueError
        No plan serves ``scale``; the message says what is served.
    """
    if model is not None:
        steps = model_steps(scale, model)
        if steps is None:
            raise ValueError(
                f"model {model.name!r} supports scale {model.describe_scales()[1:]}, not "
                f"{scale[0]:g}x{scale[1]:g}, nor in steps of it; choose another model "
                "(or none: one is chosen by the scale)"
            )
        return steps
    infos = [load_model(path).info for path in shipped_models().values()]
    if any(info.supports_scale(scale) for info in infos):
        return [scale]
    ranges = [info for info in infos if len(info.scales) > 1]
    if ranges:
        steps = equal_steps(scale, max(max(info.scales) for info in ranges))
        if all(any(info.supports_scale(step) for info in infos) for step in steps):
            return steps
    singles = sorted({info.scales[0] for info in infos if len(info.scales) == 1}, reverse=True)
    for factor in singles:
        steps = power_steps(scale, factor)
        if steps is not None:
            return steps
    served = ", ".join(info.describe_scales() for info in infos) or "none"
    raise ValueError(
        f"no shipped model serves scale {scale[0]:g}x{scale[1]:g}, in one step or in equal "
        f"steps (shipped: {served}); give a theta_M file as model"
    )


def step_factors(
    shape: tuple[int, int], scale: Pair, steps: list[Pair], max_step: float = math.inf
) -> list[Pair]:
    """The exact factors of ``steps`` for an image of ``shape`` (see the module
    docstring): ratios of whole intermediate sizes ending on ``ceil(shape * scale)``,
    none above ``max_step`` (the model's largest factor) where the planned ones are not."""
    if len(steps) == 1:
        return steps
    per_axis = []
    for axis, length in enumerate(shape):
        planned = [step[axis] for step in steps]
        sizes = _axis_sizes(length, output_size(length, scale[axis]), planned, max_step)
        per_axis.append([b / a for a, b in itertools.pairwise(sizes)])
    return list(zip(per_axis[0], per_axis[1], strict=True))


def _axis_sizes(length: int, target: int, planned: list[float], max_step: float) -> list[int]:
    """Sizes ``length, ..., target`` of an axis through the planned steps."""
    sizes = [length]
    for factor in planned[:-1]:
        sizes.append(output_size(sizes[-1], factor))
    sizes.append(target)
    tileable = all(grid_step(b / a) is not None for a, b in itertools.pairwise(sizes))
    if len(planned) != 2 or target == length or tileable:
        return sizes
    # Two steps: the intermediate size nearest the planned one for which both factors
    # are tileable, each factor within SIZE_SLACK of the planned ones and at most max_step.
    low = max(1.0, min(planned) / SIZE_SLACK)
    high = min(max(planned) * SIZE_SLACK, max(max_step, max(planned)))
    best = None
    for middle in range(max(length, math.floor(length * low)), math.ceil(length * high) + 1):
        first, second = middle / length, target / middle
        if not (low - 1e-9 <= first <= high + 1e-9 and low - 1e-9 <= second <= high + 1e-9):
            continue
        grids = (grid_step(first), grid_step(second))
        if None in grids:
            continue
        # Small grid steps keep the tiles' margins small; then the nearest size.
        key = (max(grids) > SMALL_GRID_STEP, abs(middle - sizes[1]))
        if best is None or key < best[0]:
            best = (key, middle)
    if best is not None:
        sizes[1] = best[1]
    return sizes


def step_kernel(kernel: np.ndarray, scale: Pair, step: Pair, steps: int) -> np.ndarray:
    """The kernel of a step of factors ``step`` out of ``scale`` (see the module
    docstring); ``kernel`` itself when there is one step."""
    if steps == 1:
        return kernel
    return stretch_kernel(kernel, (step[0] / scale[0], step[1] / scale[1]))


def next_input(result: np.ndarray, previous: ImageData) -> ImageData:
    """A step's float result (input units) as the next step's image, with the first
    image's intensity map."""
    return image_data(result, rgb=previous.rgb, normalization=previous.intensity)
