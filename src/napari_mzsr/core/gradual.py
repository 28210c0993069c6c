"""Gradual super-resolution: a large factor reached in several smaller steps, as ZSSR does.

A meta-learned theta_M serves factors up to some largest one. Beyond it, the factor is
split into steps, each a meta-test of its own whose input is the previous step's output.
This module holds the numbers of such a plan (which steps, their exact factors for a
given image size, their kernels); :mod:`napari_mzsr.pipeline.gradual` chooses the model.

Two splits, because the two subsampling conventions differ:

- **Equal steps** (:func:`equal_steps`): the fewest steps, each ``s^(1/n)`` per axis.
  The multi-scale models (``arbitrary``, bicubic subsampling) serve any factor in their
  range, so the steps can be as small as the count allows (x8 with a model of up to
  x4: 2.83 x 2.83).
- **Integer steps** (:func:`integer_steps`, :func:`power_steps`): direct subsampling
  ("keep every s-th pixel") and with it the output geometry are defined for integers
  only, and the geometries of integer steps compose into that of the whole factor
  (pixel ``j`` of step 2 lies at ``j / s2`` of step 1's grid, at ``j / (s1 s2)`` of the
  input). A single-scale image model of factor ``s0`` serves ``s0^n`` as ``n`` steps of
  ``s0`` (:func:`power_steps`); the isotropic-Z path, whose one direct-subsampling model
  is adapted to each step's factor, splits an integer factor into merged prime factors
  (:func:`plan_gradual_steps`: x8 with steps of up to 4 is 4, 2) and any other factor
  into equal steps.

Sizes (:func:`step_factors`). The result has exactly the size of the whole factor
(``ceil(H * sy)``), and every step's factor is a ratio of whole sizes that tiled
inference can follow exactly (:func:`~napari_mzsr.core.tiling.grid_step`): for two
steps the intermediate size nearest the equal split whose factors tile in steps of at
most 8 pixels and stay within the model's largest factor is taken (100 -> 280 -> 800
for x8: factors 2.8 and 2.857). Longer plans keep their equal intermediate sizes and
end on the exact factor.

Kernels (:func:`step_kernel`). The kernel describes the blur of the whole factor, in
output pixels. Step ``j`` of factor ``s_j`` uses the Gaussian of that kernel's
covariance scaled by ``(s_j / s)^2`` per axis: the same blur relative to the step's own
input pixels, the relation between blur and factor the models were meta-trained with
(variances proportional to ``s^2``). With one step the kernel is used as it is.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .kernels import stretch_kernel
from .resize import output_size
from .tiling import grid_step

Pair = tuple[float, float]
# Tolerance of every comparison of factors here: a factor this close to an integer, a
# power or a largest step counts as it (as in ModelInfo.supports_scale).
TOLERANCE = 1e-6
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
    count = max(1, *(math.ceil(math.log(s) / math.log(max_step) - TOLERANCE) for s in scale))
    return [(scale[0] ** (1 / count), scale[1] ** (1 / count))] * count


def power_steps(scale: Pair, factor: float) -> list[Pair] | None:
    """``n`` steps of ``(factor, factor)`` when ``scale`` is ``(factor^n, factor^n)``,
    else None.

    Examples
    --------
    >>> power_steps((8.0, 8.0), 2.0), power_steps((8.0, 8.0), 3.0)
    ([(2.0, 2.0), (2.0, 2.0), (2.0, 2.0)], None)
    """
    if scale[0] != scale[1] or factor <= 1:
        return None
    count = round(math.log(scale[0]) / math.log(factor))
    if count < 1 or abs(factor**count - scale[0]) > TOLERANCE * scale[0]:
        return None
    return [(factor, factor)] * count


def _prime_factors(n: int) -> list[int]:
    factors, p = [], 2
    while p * p <= n:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    return factors + ([n] if n > 1 else [])


def integer_steps(factor: int, max_step: float) -> list[int]:
    """The fewest integer steps whose product is ``factor``: its prime factors greedily
    merged while they stay within ``max_step``, largest first. A prime above
    ``max_step`` stays one step of its own (above ``max_step``).

    Examples
    --------
    >>> integer_steps(8, 4), integer_steps(12, 4), integer_steps(5, 4)
    ([4, 2], [4, 3], [5])
    """
    steps: list[int] = []
    for p in sorted(_prime_factors(factor), reverse=True):
        fits = [i for i, s in enumerate(steps) if s * p <= max_step * (1 + TOLERANCE)]
        if fits:
            # The smallest step that still takes p keeps the steps balanced.
            i = min(fits, key=lambda i: steps[i])
            steps[i] *= p
        else:
            steps.append(p)
    return sorted(steps, reverse=True)


def plan_gradual_steps(factor: float, max_step: float) -> list[float]:
    """The steps of one axis's ``factor`` for the isotropic-Z path (see the module
    docstring): integer steps for an integer factor (a prime above ``max_step`` left
    whole, so not always within ``max_step``), else the fewest equal steps of at most
    ``max_step``.

    Parameters
    ----------
    factor : float
        Overall factor (> 1).
    max_step : float
        Largest factor one step may use (> 1), e.g. the largest scale a model serves.

    Returns
    -------
    list of float
        Step factors whose product is ``factor``; ``[factor]`` when it fits in one
        step. Integer factors give integer steps, largest first; other factors the
        fewest equal steps.

    Examples
    --------
    >>> plan_gradual_steps(3, 4)
    [3.0]
    >>> plan_gradual_steps(8, 4), plan_gradual_steps(6, 2), plan_gradual_steps(10, 4)
    ([4.0, 2.0], [3.0, 2.0], [5.0, 2.0])
    >>> [round(s, 3) for s in plan_gradual_steps(6.5, 4)]
    [2.55, 2.55]
    """
    if not (math.isfinite(factor) and factor > 1):
        raise ValueError(f"factor must be a finite number > 1, got {factor!r}")
    if not (math.isfinite(max_step) and max_step > 1):
        raise ValueError(f"max_step must be a finite number > 1, got {max_step!r}")
    if factor <= max_step * (1 + TOLERANCE):
        return [float(factor)]
    if abs(factor - round(factor)) < TOLERANCE * factor:
        return [float(s) for s in integer_steps(round(factor), max_step)]
    return [float(step) for step, _ in equal_steps((factor, 1.0), max_step)]


def step_factors(
    shape: tuple[int, int], scale: Pair, steps: list[Pair], max_step: float = math.inf
) -> list[Pair]:
    """The exact factors of ``steps`` for an image of ``shape`` (see the module
    docstring): ratios of whole intermediate sizes ending on ``ceil(shape * scale)``,
    none above ``max_step`` (the model's largest factor) where the planned ones are not.

    Examples
    --------
    >>> step_factors((100, 100), (8.0, 8.0), equal_steps((8.0, 8.0), 4.0), 4.0)
    [(2.8, 2.8), (2.857142857142857, 2.857142857142857)]
    """
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
        within = low - TOLERANCE, high + TOLERANCE
        if not (within[0] <= first <= within[1] and within[0] <= second <= within[1]):
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
