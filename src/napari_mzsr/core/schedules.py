"""Step learning rates of the meta-test: piecewise-constant ``[[first_step, lr], ...]``."""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Sequence

Schedule = tuple[tuple[int, float], ...]


def learning_rate_schedule(value: object, name: str = "lr") -> Schedule:
    """A checked schedule from a constant rate or ``[[first_step, rate], ...]``.

    Every rate must be finite and positive; first steps must be integers that start at
    0 and increase.

    Examples
    --------
    >>> learning_rate_schedule(0.01)
    ((0, 0.01),)
    >>> learning_rate_schedule([[0, 2e-2], [1, 1e-2]])
    ((0, 0.02), (1, 0.01))
    """
    accepted = f"{name} must be a positive number or [[first_step, rate], ...] from step 0"
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        points = [(0, value)]
    else:
        try:
            points = [tuple(point) for point in value]  # type: ignore[union-attr]
        except TypeError:
            raise ValueError(f"{accepted}, got {value!r}") from None
    schedule = []
    for point in points:
        if len(point) != 2:
            raise ValueError(f"{accepted}, got {value!r}")
        step, rate = point
        if isinstance(step, bool) or not isinstance(step, numbers.Integral | float):
            raise ValueError(f"{accepted}, got step {step!r}")
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
            raise ValueError(f"{accepted}, got rate {rate!r}")
        if not (math.isfinite(float(rate)) and float(rate) > 0):
            raise ValueError(f"{name}: learning rates must be finite and positive, got {rate!r}")
        if float(step) != int(step):
            raise ValueError(f"{accepted}, got step {step!r}")
        schedule.append((int(step), float(rate)))
    steps = [step for step, _ in schedule]
    if not schedule or steps[0] != 0 or any(b <= a for a, b in itertools.pairwise(steps)):
        raise ValueError(f"{accepted} with increasing steps, got {value!r}")
    return tuple(schedule)


def rate_at(schedule: Sequence[Sequence[float]], step: int) -> float:
    """Learning rate of adaptation step ``step`` (0-based) of a checked schedule."""
    rate = schedule[0][1]
    for first, value in schedule:
        if step >= first:
            rate = value
    return float(rate)
