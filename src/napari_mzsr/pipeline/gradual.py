"""Gradual super-resolution: a factor beyond what one model serves, reached in steps
(as ZSSR does), each step a meta-test of its own on the previous step's output. The
numbers of a plan (equal or power steps, exact step factors, step kernels) are
:mod:`napari_mzsr.core.gradual`'s; this module chooses them for a model.

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

Between steps the result stays float in the input's units (no rounding) and keeps the
input's intensity map (:func:`next_input`).
"""

from __future__ import annotations

import numpy as np

from ..core.gradual import Pair, equal_steps, power_steps
from ..io.model_file import ModelInfo, shipped_infos
from .images import ImageData, image_data


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
    infos = list(shipped_infos().values())
    if any(info.supports_scale(scale) for info in infos):
        return [scale]
    ranges = [info for info in infos if len(info.scales) > 1]
    if ranges:
        steps = equal_steps(scale, max(max(info.scales) for info in ranges))
        # One model runs every step (options.model_for).
        if any(all(info.supports_scale(step) for step in steps) for info in infos):
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


def next_input(result: np.ndarray, previous: ImageData) -> ImageData:
    """A step's float result (input units) as the next step's image, with the first
    image's intensity map."""
    return image_data(result, rgb=previous.rgb, normalization=previous.intensity)
