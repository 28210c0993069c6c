"""Gradual super-resolution: a large factor reached in several smaller steps, as ZSSR does.

A meta-learned theta_M serves factors up to some largest one. Beyond it, the factor is
split into steps, each a meta-test of its own whose input is the previous step's output.

An integer factor is split into integer steps only: its subsampling convention
("direct", keep every s-th pixel) and with it the output geometry are defined for
integers, and the geometries of integer steps compose into that of the whole factor
(pixel ``j`` of step 2 lies at ``j / s2`` of step 1's grid, at ``j / (s1 s2)`` of the
input). Any other factor is split into equal steps.
"""

from __future__ import annotations

import math

_INTEGER_TOLERANCE = 1e-9


def _prime_factors(n: int) -> list[int]:
    factors, p = [], 2
    while p * p <= n:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    return factors + ([n] if n > 1 else [])


def _integer_steps(factor: int, max_step: float) -> list[int]:
    """The fewest integer steps (prime factors greedily merged while they stay within
    ``max_step``), largest first; a prime above ``max_step`` is a step of its own."""
    steps: list[int] = []
    for p in sorted(_prime_factors(factor), reverse=True):
        fits = [i for i, s in enumerate(steps) if s * p <= max_step + _INTEGER_TOLERANCE]
        if fits:
            # The smallest step that still takes p keeps the steps balanced.
            i = min(fits, key=lambda i: steps[i])
            steps[i] *= p
        else:
            steps.append(p)
    return sorted(steps, reverse=True)


def plan_gradual_steps(factor: float, max_step: float) -> list[float]:
    """Split ``factor`` into steps of at most ``max_step`` each (see the module docstring).

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
        step. Integer factors give integer steps, largest first (a prime factor above
        ``max_step`` is left whole); other factors the fewest equal steps.

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
    if factor <= max_step * (1 + _INTEGER_TOLERANCE):
        return [float(factor)]
    if abs(factor - round(factor)) < _INTEGER_TOLERANCE * factor:
        return [float(s) for s in _integer_steps(round(factor), max_step)]
    count = math.ceil(math.log(factor) / math.log(max_step) - _INTEGER_TOLERANCE)
    return [factor ** (1.0 / count)] * count
