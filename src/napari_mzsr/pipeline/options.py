"""The options of a run, checked once where the run starts.

:class:`AdaptOptions` hold what the meta-test needs, :class:`ApplyOptions` what
inference needs. Both are frozen and check and normalise every value when they are
made, with a one-line message naming the option and what it accepts; everything
below the entry points (API functions, widget, command line) takes them as they are.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from ..core import checks
from ..core.degradation import METHODS as DEGRADATION_METHODS
from ..core.devices import resolve_device, resolve_precision
from ..core.gradual import step_factors, step_kernel
from ..core.intensity import DEFAULT_PERCENTILES, MODES, IntensityMap
from ..core.kernels import AUTO, ESTIMATE, PRESETS, as_kernel, model_subsampling
from ..core.refinement import COMBINE
from ..core.resize import output_size, parse_scale
from ..core.schedules import Schedule, learning_rate_schedule
from ..core.threads import check_threads
from ..io.model_file import MZSRModel, load_model, shipped_infos
from . import gradual

# Factors beyond this are refused: at x16 an image of 64 pixels is already 1024 wide,
# and no degradation of this package is modelled that far.
MAX_SCALE = 16.0
# Relative distance within which a factor is taken for a one-factor model's own.
SCALE_PRECISION = 1e-3
# adapt_patch="auto" (see AdaptOptions.patch_size): each step adapts on AUTO_PATCHES random
# patches of AUTO_PATCH pixels, so that a step costs the same on an image of any size,
# unless the whole image costs no more. A step on patches also measures their loss after
# the update (one forward pass, a quarter of a step's time), so the whole image is as
# cheap up to 5/4 of the patches' pixels. Chosen by measurement against whole-image
# adaptation on Set14 (x2, g^d_2.0, direct-x2, 10 steps, LR images of 19,000 to 104,000
# pixels; 14 images x seed 0 and 8 images x seeds 1-2, patches redrawn every step; the
# project's 2-core AVX2 machine, one thread, 2026-12-01): 2 x 96 gave +0.006 dB on average,
# worst -0.095, in 4.5 CPU-s against 11.7 s; 1 x 128 -0.002 (worst -0.18) and 4 x 64 -0.003
# (worst -0.16) cost the same; 2 x 64, 1 x 96 and 1 x 64 halve the time but lose up to
# 0.14, 0.46 and 0.50 dB on single images. The same comparison, timed, in
# benchmarks/results/time_to_quality.md (first 3 Set14 images, idle machine: -0.006 dB,
# 3.2 s against 9.3 s).
AUTO_PATCH = 96
AUTO_PATCHES = 2
AUTO_WHOLE_IMAGE_PIXELS = AUTO_PATCHES * AUTO_PATCH**2 * 5 // 4
# noise="auto" matches the image's noise in the son (napari_mzsr.pipeline.auto); "off" not.
NOISE_MODES = ("auto", "off")


def scale_pair(value: object) -> tuple[float, float]:
    """A checked super-resolution factor ``(sy, sx)``, each in [1, :data:`MAX_SCALE`]
    and not both 1, from a number or a pair of numbers.

    Examples
    --------
    >>> scale_pair(2.5), scale_pair((2, 3.5)), scale_pair([3, 1])
    ((2.5, 2.5), (2.0, 3.5), (3.0, 1.0))
    """
    sy, sx = parse_scale(value)
    for s in (sy, sx):
        if not 1 <= s <= MAX_SCALE:
            raise ValueError(f"scale factors must be between 1 and {MAX_SCALE:g}, got {value!r}")
    if sy == sx == 1:
        raise ValueError(f"scale must enlarge at least one axis (a factor > 1), got {value!r}")
    return sy, sx


def model_scale(scale: object | None, model: MZSRModel | None) -> tuple[float, float]:
    """The checked factors of a run (:func:`scale_pair`) with ``model``: None gives the
    factor of a model that serves one (a camera profile), else 2; a factor within
    :data:`SCALE_PRECISION` of such a model's is that factor (a profile's factor is
    measured to 4 digits, and a user types what another measurement gave).

    Examples
    --------
    >>> model_scale(None, None), model_scale(3, None)
    ((2.0, 2.0), (3.0, 3.0))
    """
    own = model.info.scales if model is not None else []
    if scale is None:
        return scale_pair(own[0] if len(own) == 1 else 2)
    pair = scale_pair(scale)
    if len(own) == 1:
        pair = tuple(own[0] if abs(s - own[0]) <= SCALE_PRECISION * own[0] else s for s in pair)
    return pair


def scale_for_shape(
    shape: tuple[int, int], scale: object | None, output_shape: object | None
) -> tuple[float, float] | None:
    """The factors for an input of ``shape`` from ``scale`` and/or ``output_shape``.

    With only ``output_shape`` the factors are ``output_shape / shape``; with both, the
    output of ``scale`` must be ``output_shape``; with neither, None (the model's own
    factor, or 2: :class:`AdaptOptions`).

    Examples
    --------
    >>> scale_for_shape((100, 100), (2.2, 4.2), (220, 420))
    (2.2, 4.2)
    >>> scale_for_shape((100, 80), None, (250, 200))
    (2.5, 2.5)
    """
    if output_shape is None:
        return None if scale is None else scale_pair(scale)
    try:
        out = tuple(checks.integer(n, "output_shape", minimum=1) for n in output_shape)  # type: ignore[union-attr]
    except TypeError:
        raise ValueError(f"output_shape must be (height, width), got {output_shape!r}") from None
    if len(out) != 2:
        raise ValueError(f"output_shape must be (height, width), got {output_shape!r}")
    if scale is None:
        return scale_pair((out[0] / shape[0], out[1] / shape[1]))
    pair = scale_pair(scale)
    expected = (output_size(shape[0], pair[0]), output_size(shape[1], pair[1]))
    if expected != out:
        raise ValueError(
            f"output_shape {out} does not match scale {scale!r} for an input of {shape} "
            f"(that gives {expected}); give one of them"
        )
    return pair


def choose_model(scale: tuple[float, float], rgb: bool, degradation: str = "direct") -> str:
    """The shipped model for ``scale``, a grey or colour image and the kernel's kind of
    subsampling: the single-scale model of that factor (its 1-channel version for grey
    data where shipped), else the scale-aware ``arbitrary`` model (``arbitrary-gray``
    for grey data where shipped) that covers the factors, else the plain ``multiscale``
    one.

    Raises
    ------
    ValueError
        No shipped model serves the factors in one step; the message says which factors
        are served (:func:`~napari_mzsr.super_resolve` reaches larger ones in steps,
        :mod:`~napari_mzsr.pipeline.gradual`).
    """
    shipped = shipped_infos()
    sy, sx = scale
    # A direct model (pixel centres half a pixel away) is no substitute for area's.
    kinds = (
        (model_subsampling(degradation),)
        if degradation == "area"
        else dict.fromkeys((degradation, "direct"))
    )
    if sy == sx:
        for kind in kinds:
            base = f"{kind}-x{sy:g}"
            for name in (f"{base}-gray", base) if not rgb else (base,):
                if name in shipped:
                    return name
    for name in dict.fromkeys(
        ("arbitrary" if rgb else "arbitrary-gray", "arbitrary", "multiscale")
    ):
        if name in shipped and shipped[name].supports_scale(scale):
            return name
    served = sorted({info.describe_scales() for info in shipped.values()})
    raise ValueError(
        f"no shipped model serves scale {sy:g}x{sx:g} in one step (shipped: "
        f"{', '.join(served) or 'none'}); give a theta_M file as model"
    )


def model_for(scale: tuple[float, float], rgb: bool, degradation: str = "direct") -> str:
    """The shipped model of a run at ``scale`` on a grey or colour image: the one
    :func:`choose_model` picks for ``scale`` when a model serves it in one step, else
    the one it picks for the first gradual step (:func:`~napari_mzsr.pipeline.gradual.
    plan_steps`), which then runs every step, so that one subsampling describes the
    whole result.

    Raises
    ------
    ValueError
        No shipped model serves ``scale``, in one step or in steps.
    """
    if not _serves_in_one_step(scale):
        scale = gradual.plan_steps(scale)[0]
    return choose_model(scale, rgb, degradation)


def preferred_degradation(kernel: object) -> str:
    """The subsampling a kernel spec implies: the preset's (``"area"`` for ``"photo"``,
    ``"bicubic"`` for the paper's bicubic kernel), ``"area"`` for the default (None,
    :data:`~napari_mzsr.core.kernels.AUTO`: the ``"photo"`` assumption), else
    ``"direct"``."""
    if kernel is None or (isinstance(kernel, str) and kernel == AUTO):
        return PRESETS["photo"].degradation
    if isinstance(kernel, str) and kernel in PRESETS:
        return PRESETS[kernel].degradation
    return "direct"


@dataclass(frozen=True)
class AdaptOptions:
    """Checked options of the meta-test (see :func:`napari_mzsr.super_resolve`).

    Made with the user's values; each is checked and normalised on construction:
    ``scale`` becomes ``(sy, sx)``, ``kernel`` an array (or :data:`ESTIMATE`),
    ``model`` a loaded model (or None: chosen per image by :meth:`for_image`),
    ``device`` a ``torch.device``, ``lr`` a schedule (None: the model's);
    ``precision`` gives :attr:`autocast_dtype` (None for float32); ``subsampling``
    the one the kernel spec assumes (None: from it, :func:`preferred_degradation`;
    it picks the model and, for ``"area"``, the son, :attr:`son_degradation`); ``noise`` is
    ``"auto"`` (match the image's noise in the son) or ``"off"``; ``self_check`` a bool
    (score the result against bicubic on the son pair and fall back to Lanczos
    interpolation where it loses,
    :mod:`~napari_mzsr.core.self_check`); ``threads`` ``"auto"`` or a CPU thread
    count (:func:`~napari_mzsr.core.threads.use_threads`).

    Raises
    ------
    ValueError
        Any bad value; the message names the option.
    """

    scale: Any = None
    kernel: Any = None
    steps: Any = 10
    model: Any = None
    device: Any = "auto"
    precision: Any = "auto"
    seed: Any = 0
    lr: Any = None
    normalization: Any = "auto"
    percentiles: Any = DEFAULT_PERCENTILES
    adapt_patch: Any = "auto"
    adapt_patches: Any = AUTO_PATCHES
    noise: Any = "auto"
    self_check: Any = True
    subsampling: Any = None
    threads: Any = "auto"
    kernel_spec: str = field(default="", compare=False)
    autocast_dtype: torch.dtype | None = field(init=False, compare=False)

    def __post_init__(self) -> None:
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        if self.model is not None:
            put("model", load_model(self.model))
        put("scale", model_scale(self.scale, self.model))
        if self.subsampling is None:
            put("subsampling", preferred_degradation(self.kernel))
        checks.one_of(self.subsampling, "subsampling", DEGRADATION_METHODS)
        put("kernel_spec", self.kernel_spec or _kernel_text(self.kernel))
        if not (isinstance(self.kernel, str) and self.kernel == ESTIMATE):
            put("kernel", as_kernel(self.kernel))
        put("steps", checks.integer(self.steps, "steps"))
        if self.model is not None:
            # Raises unless the model serves the factors, in one step or in several.
            gradual.plan_steps(self.scale, self.model.info)
        put("device", resolve_device(self.device))
        put("autocast_dtype", resolve_precision(self.precision, self.device))
        put("seed", checks.seed(self.seed))
        if self.lr is not None:
            put("lr", learning_rate_schedule(self.lr))
        if not isinstance(self.normalization, IntensityMap):
            checks.one_of(self.normalization, "normalization", MODES)
        if self.adapt_patch is not None and self.adapt_patch != "auto":
            patch = self.adapt_patch
            if isinstance(patch, bool) or not isinstance(patch, int | np.integer) or patch < 1:
                raise ValueError(
                    f"adapt_patch must be 'auto', None or an integer >= 1, got {patch!r}"
                )
            put("adapt_patch", int(patch))
            if not self.estimate and patch < self.kernel.shape[0]:
                raise ValueError(
                    f"adapt_patch must be 'auto', None or at least {self.kernel.shape[0]} "
                    f"(the kernel size), got {patch}"
                )
        put("adapt_patches", checks.integer(self.adapt_patches, "adapt_patches", minimum=1))
        checks.one_of(self.noise, "noise", NOISE_MODES)
        if not isinstance(self.self_check, bool | np.bool_):
            raise ValueError(f"self_check must be True or False, got {self.self_check!r}")
        put("self_check", bool(self.self_check))
        put("threads", check_threads(self.threads))

    @property
    def estimate(self) -> bool:
        """Whether the kernel is to be estimated from the image."""
        return isinstance(self.kernel, str)

    @property
    def son_degradation(self) -> str:
        """How the son is subsampled: the model's own subsampling, or area averaging
        where the kernel assumes it and the model is a bicubic one (same pixel centres,
        :data:`~napari_mzsr.core.kernels.PRESETS` ``"photo"``)."""
        own = self.model.info.degradation
        return "area" if self.subsampling == "area" and own == model_subsampling("area") else own

    @property
    def schedule(self) -> Schedule:
        """The step learning rates: ``lr``, or the model's."""
        return self.lr if self.lr is not None else tuple(map(tuple, self.model.info.lr_schedule))

    def for_image(self, rgb: bool) -> AdaptOptions:
        """These options with the model chosen for a grey or colour image when none was
        given (:func:`model_for`); for factors that no model serves in one step, the
        model of every gradual step (:mod:`~napari_mzsr.pipeline.gradual`), whose
        subsampling then describes the result's geometry."""
        if self.model is not None:
            return self
        return replace(self, model=model_for(self.scale, rgb, self.subsampling))

    def stages(self, rgb: bool, shape: tuple[int, int]) -> tuple[AdaptOptions, ...]:
        """The options of each step of a run on a grey or colour image of ``shape``:
        these options with the model chosen (:meth:`for_image`) when the factors take one
        step; else one set per gradual step (:mod:`~napari_mzsr.pipeline.gradual`), each
        with its factors and kernel, all with the same model. The kernel must be resolved
        first (not :data:`ESTIMATE`) when there are several steps.

        Raises
        ------
        ValueError
            No model serves the factors, in one step or in steps (every step is
            checked before any runs).
        """
        if self.model is None:
            return self.for_image(rgb).stages(rgb, shape)
        info = self.model.info
        if info.supports_scale(self.scale):
            return (self,)
        planned = gradual.plan_steps(self.scale, info)
        if self.estimate:
            raise ValueError("resolve kernel='estimate' before planning gradual steps")
        stages = []
        for step in step_factors(shape, self.scale, planned, max(info.scales)):
            if not info.supports_scale(step):
                raise ValueError(
                    f"scale {self.scale[0]:g}x{self.scale[1]:g} on {shape[0]}x{shape[1]} "
                    f"pixels needs a step of {step[0]:.4g}x{step[1]:.4g}, which model "
                    f"{info.name!r} ({info.describe_scales()}) does not serve; "
                    "choose another scale or model"
                )
            kernel = step_kernel(self.kernel, self.scale, step, len(planned))
            stages.append(replace(self, scale=step, kernel=kernel))
        return tuple(stages)

    def with_kernel(self, kernel: np.ndarray) -> AdaptOptions:
        """These options with an estimated (or otherwise chosen) kernel array."""
        return replace(self, kernel=kernel)

    def patch_size(self, shape: tuple[int, int]) -> tuple[int, int] | None:
        """Patch height and width of crop adaptation for an image of ``shape``, or None
        for whole-image adaptation.

        ``adapt_patch="auto"``: the whole image up to :data:`AUTO_WHOLE_IMAGE_PIXELS`
        pixels, else patches of :data:`AUTO_PATCH` pixels (at least the kernel size,
        at most the image), whatever the image size.
        """
        size = self.adapt_patch
        min_size = self.kernel.shape[0] if not self.estimate else 1
        if size == "auto":
            if shape[0] * shape[1] <= AUTO_WHOLE_IMAGE_PIXELS:
                return None
            size = max(AUTO_PATCH, min_size)
        if size is None:
            return None
        if size < min_size:
            raise ValueError(
                f"adapt_patch must be 'auto', None or at least {min_size} (the kernel size), "
                f"got {size}"
            )
        return min(size, shape[0]), min(size, shape[1])


@dataclass(frozen=True)
class ApplyOptions:
    """Checked options of inference (see :meth:`napari_mzsr.AdaptedModel.apply`).

    Raises
    ------
    ValueError
        Any bad value; the message names the option.
    """

    output_dtype: Any = None
    tile: Any = None
    ensemble: Any = None
    back_projection: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "output_dtype", checks.output_dtype(self.output_dtype))
        if self.tile is not None:
            object.__setattr__(self, "tile", checks.integer(self.tile, "tile", minimum=1))
        if self.ensemble is not None:
            checks.one_of(self.ensemble, "ensemble", (None, *COMBINE))
        if isinstance(self.back_projection, str) and self.back_projection == "auto":
            object.__setattr__(self, "back_projection", None)
        if self.back_projection is not None:
            # None: the adapted model's choice (AdaptedModel.back_projection_for).
            try:
                count = checks.integer(self.back_projection, "back_projection")
            except ValueError:
                raise ValueError(
                    "back_projection must be None or 'auto' (the model's choice) or an "
                    f"integer >= 0, got {self.back_projection!r}"
                ) from None
            object.__setattr__(self, "back_projection", count)


def _serves_in_one_step(scale: tuple[float, float]) -> bool:
    return any(info.supports_scale(scale) for info in shipped_infos().values())


def _kernel_text(kernel: object) -> str:
    """A short description of a kernel spec for metadata and messages."""
    if kernel is None or (isinstance(kernel, str) and kernel == AUTO):
        return AUTO
    if isinstance(kernel, str | os.PathLike):
        return str(kernel)
    if isinstance(kernel, Sequence) and len(kernel) == 3 and not isinstance(kernel[0], Sequence):
        return f"anisotropic Gaussian {tuple(kernel)}"
    if isinstance(kernel, np.ndarray):
        return f"{kernel.shape[0]}x{kernel.shape[-1]} array"
    return f"isotropic Gaussian, variance {kernel}" if np.isscalar(kernel) else "array"
