"""The options of an axial (isotropic Z) run, checked once where the run starts.

:class:`AxialOptions` is frozen and checks and normalises every value when it is made,
with a one-line message naming the option and what it accepts; everything below the
entry points (:func:`~napari_mzsr.super_resolve_axial`, the widget, the command line)
takes it as it is. The factor is not an option but the stack's own geometry: it is
checked with :func:`check_axial_factor`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..core import checks
from ..core.axial import OPTIMIZERS, check_z_factor, sigma_from_fwhm
from ..core.devices import resolve_device, resolve_precision
from ..core.intensity import DEFAULT_PERCENTILES, MODES, IntensityMap
from ..core.kernels import ESTIMATE
from ..core.schedules import learning_rate_schedule, rate_at
from ..io.model_file import load_model

# Factors of the Z step to the lateral pixel size that a run accepts.
Z_FACTOR_RANGE = (1.0, 10.0)
DEFAULT_MODEL = "direct-x2-gray"
# Adaptation defaults, measured on the phantom of benchmarks/axial.py (factor 4): Adam at
# 1e-3 for 100 steps of 8 patches of 64 pixels gained 3.5 dB over cubic interpolation
# (30 steps: 2.1 dB); plain SGD at the model's rate did not beat cubic.
DEFAULT_STEPS = 100
DEFAULT_LR = 1e-3
DEFAULT_PATCH = 64
DEFAULT_PATCHES = 8
# One adaptation stage serves factors up to this; larger ones go in gradual stages.
DEFAULT_MAX_STEP = 6.0
# Lateral side of the blocks of the stack read and super-resolved at a time.
DEFAULT_BLOCK = 256


def check_axial_factor(z_factor: object) -> float:
    """``z_factor`` as a float in ``(1, 10]`` (an integer within rounding as that
    integer), or a one-line ValueError naming it."""
    return check_z_factor(z_factor, *Z_FACTOR_RANGE)


def axial_sigma(kernel: object) -> float | None:
    """The axial Gaussian sigma (lateral pixels) of a kernel spec, None for "estimate".

    Accepted: a number (sigma), a mapping with exactly one of ``"sigma"`` or ``"fwhm"``,
    or ``"estimate"``.

    Examples
    --------
    >>> axial_sigma(2), axial_sigma("estimate"), round(axial_sigma({"fwhm": 2.3548}), 3)
    (2.0, None, 1.0)
    """
    if isinstance(kernel, str) and kernel == ESTIMATE:
        return None
    if isinstance(kernel, (int, float, np.integer, np.floating)) and not isinstance(kernel, bool):
        value = float(kernel)
    elif isinstance(kernel, Mapping) and len(kernel) == 1 and set(kernel) <= {"sigma", "fwhm"}:
        ((name, raw),) = kernel.items()
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"kernel {name} must be a number, got {raw!r}") from None
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"kernel {name} must be a finite number >= 0, got {raw!r}")
        if name == "fwhm":
            value = sigma_from_fwhm(value)
    else:
        raise ValueError(
            "kernel must be 'estimate', an axial sigma in lateral pixels, or "
            f"{{'sigma': s}} / {{'fwhm': w}}, got {kernel!r}"
        )
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"the axial sigma must be a finite number >= 0, got {value!r}")
    return value


def _number_above_one(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number > 1, got {value!r}")
    if not (math.isfinite(value) and value > 1):
        raise ValueError(f"{name} must be a number > 1, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class AxialOptions:
    """Checked options of an axial run (see :func:`napari_mzsr.super_resolve_axial`).

    Made with the user's values; each is checked and normalised on construction:
    ``kernel`` gives :attr:`sigma` (None: estimate it from the stack), ``model`` becomes
    a loaded model, ``device`` a ``torch.device``, ``precision`` gives
    :attr:`autocast_dtype`, ``lr`` a schedule or a callable (None: :data:`DEFAULT_LR`
    for Adam, the model's schedule for SGD), ``output_dtype`` a numpy dtype or None.

    Raises
    ------
    ValueError
        Any bad value; the message names the option.
    """

    kernel: Any = ESTIMATE
    steps: Any = DEFAULT_STEPS
    model: Any = DEFAULT_MODEL
    device: Any = "auto"
    precision: Any = "auto"
    seed: Any = 0
    optimizer: Any = "adam"
    lr: Any = None
    adapt_patch: Any = DEFAULT_PATCH
    adapt_patches: Any = DEFAULT_PATCHES
    max_step: Any = DEFAULT_MAX_STEP
    normalization: Any = "auto"
    percentiles: Any = DEFAULT_PERCENTILES
    output_dtype: Any = None
    block: Any = DEFAULT_BLOCK
    tile: Any = None
    sigma: float | None = field(init=False, compare=False)
    autocast_dtype: torch.dtype | None = field(init=False, compare=False)

    def __post_init__(self) -> None:
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        put("sigma", axial_sigma(self.kernel))
        put("steps", checks.integer(self.steps, "steps"))
        put("model", load_model(self.model))
        put("device", resolve_device(self.device))
        put("autocast_dtype", resolve_precision(self.precision, self.device))
        put("seed", checks.seed(self.seed))
        checks.one_of(self.optimizer, "optimizer", OPTIMIZERS)
        if self.lr is not None and not callable(self.lr):
            put("lr", learning_rate_schedule(self.lr))
        put("adapt_patch", checks.integer(self.adapt_patch, "adapt_patch", minimum=8))
        put("adapt_patches", checks.integer(self.adapt_patches, "adapt_patches", minimum=1))
        put("max_step", _number_above_one(self.max_step, "max_step"))
        if not isinstance(self.normalization, IntensityMap):
            checks.one_of(self.normalization, "normalization", MODES)
        put("output_dtype", checks.output_dtype(self.output_dtype))
        put("block", checks.integer(self.block, "block", minimum=1))
        if self.tile is not None:
            put("tile", checks.integer(self.tile, "tile", minimum=8))

    @property
    def estimate(self) -> bool:
        """Whether the axial kernel is to be estimated from the stack."""
        return self.sigma is None

    def learning_rate(self) -> Callable[[int], float]:
        """The rate of each 0-based adaptation step."""
        if callable(self.lr):
            return self.lr
        if self.lr is not None:
            schedule = self.lr
        elif self.optimizer == "adam":
            schedule = ((0, DEFAULT_LR),)
        else:
            schedule = tuple(map(tuple, self.model.info.lr_schedule))
        return lambda step: rate_at(schedule, step)

    def kernel_text(self) -> str:
        """The axial kernel in words, for metadata and messages."""
        if self.sigma is None:
            return "estimated from the side planes"
        return f"axial Gaussian sigma {self.sigma:g} lateral pixels"
