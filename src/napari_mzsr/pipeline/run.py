"""Super-resolving one 2-D image: adapt a fresh copy of theta_M to it, then infer.

Data flow: the entry point checks the image and fits its intensity map once
(:func:`~napari_mzsr.pipeline.images.image_data`) and checks the options once
(:mod:`~napari_mzsr.pipeline.options`); :func:`adapt_image` runs the meta-test
(:mod:`napari_mzsr.core.adaptation`) and :meth:`AdaptedModel.render` infers.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Generator, Sequence
from dataclasses import replace
from typing import TypeVar

import numpy as np
import torch

from ..core.adaptation import Cancelled, StepReport, adapt, patch_corner
from ..core.degradation import degrade_tensor
from ..core.intensity import DEFAULT_PERCENTILES, IntensityMap
from ..core.kernel_estimation import KernelEstimate
from ..core.schedules import rate_at
from ..core.self_check import (
    FALLBACK,
    SelfCheck,
    can_check,
    choose_output,
    coarser_check,
    son_gain,
)
from ..core.tensors import to_batch
from ..core.threads import use_threads
from ..io.model_file import MZSRModel
from . import gradual
from .adapted import AdaptedModel
from .auto import (
    CHECK_THRESHOLD,
    COARSER_CHECK_THRESHOLD,
    JPEG_CHECK_THRESHOLD,
    check_pixels,
    matched_jpeg,
    matched_noise,
)
from .images import ImageData, image_data
from .kernel_choice import resolve_kernel
from .options import AUTO_PATCHES, AdaptOptions, ApplyOptions, scale_for_shape

ProgressCallback = Callable[[int, float], None]
T = TypeVar("T")
R = TypeVar("R")


def adapt_image(
    image: ImageData, options: AdaptOptions
) -> Generator[StepReport, None, AdaptedModel]:
    """Adapt theta_M to a checked 2-D ``image`` with checked ``options`` (the model
    resolved, see :meth:`AdaptOptions.for_image`): the pipeline's adaptation.

    Yields a :class:`~napari_mzsr.core.adaptation.StepReport` after every step and
    returns the :class:`AdaptedModel`. Closing it between steps cancels the run.
    """
    info = options.model.info
    if not info.supports_scale(options.scale):
        raise ValueError(
            f"model {info.name!r} serves scale {options.scale[0]:g}x{options.scale[1]:g} "
            f"only in steps of {info.describe_scales()}: super_resolve and stacks run them, "
            "an adaptation (iter_adapt, dask arrays) needs a factor the model serves"
        )
    options, estimate = resolve_kernel(options, image)
    kernel = options.kernel
    height, width = image.shape
    if min(height, width) < kernel.shape[0]:
        raise ValueError(
            f"image of {height}x{width} pixels is too small for a {kernel.shape[0]}x"
            f"{kernel.shape[0]} kernel: each side needs at least {kernel.shape[0]} pixels"
        )
    patch = options.patch_size((height, width))
    device = options.device
    threads = use_threads(options.threads) if device.type == "cpu" else None
    torch.manual_seed(options.seed)
    net = options.model.network(device, options.scale)
    kt = torch.from_numpy(kernel).float().to(device)
    noise, quality = None, None
    if options.noise == "auto":
        noise = matched_noise(image, kernel, options.scale, options.son_degradation)
        quality = matched_jpeg(image)
    generator = torch.Generator(device).manual_seed(options.seed)
    son = {"kernel": kt, "scale": options.scale, "degradation": options.son_degradation}
    checked = {"autocast_dtype": options.autocast_dtype, "clamp": image.intensity.unit_range}
    # Too small an image has no son pair to judge by: its network result is given as is.
    self_check = options.self_check and can_check(image.shape, options.scale)
    if self_check:
        window = check_pixels(image, info.channels, device)
        seed = options.seed

        def gain() -> float:
            return son_gain(
                net, window, **son, **checked, noise=noise, seed=seed, jpeg_quality=quality
            )

        gain_unadapted = gain()
        theta = [p.detach().clone() for p in net.parameters()]
    if patch is None:
        whole = to_batch(image.unit(), info.channels).to(device)

        def batch_at(step: int) -> torch.Tensor:
            return whole
    else:
        rng = np.random.default_rng(options.seed)

        def batch_at(step: int) -> torch.Tensor:
            # Drawn as the steps go: a run of any length holds one step's patches.
            corners = patch_corner((height, width), patch, options.adapt_patches, rng)
            regions = [(slice(y, y + patch[0]), slice(x, x + patch[1])) for y, x in corners]
            return torch.cat([to_batch(image.unit(r), info.channels) for r in regions]).to(device)

    schedule = options.schedule
    steps = adapt(
        net,
        batch_at,
        kt,
        options.scale,
        steps=options.steps,
        learning_rate=lambda step: rate_at(schedule, step),
        degradation=options.son_degradation,
        autocast_dtype=options.autocast_dtype,
        whole_image=patch is None,
        clamp=image.intensity.unit_range,
        noise=noise,
        generator=generator,
        jpeg_quality=quality,
    )
    counts = [threads]
    if threads is not None:
        steps = _rethreading(steps, options.threads, counts)
    kept = yield from steps
    check: SelfCheck | None = None
    if self_check:
        gain_adapted = gain() if kept else gain_unadapted
        added = noise.typical_std(window.cpu().numpy()) if noise else 0.0
        threshold = CHECK_THRESHOLD if quality is None else JPEG_CHECK_THRESHOLD
        check = choose_output(
            gain_unadapted, gain_adapted, threshold=threshold, noise=added, jpeg_quality=quality
        )
        if check.choice == "unadapted":
            with torch.no_grad():
                torch._foreach_copy_(list(net.parameters()), theta)
            kept = 0
        if check.choice != FALLBACK:
            son_window = degrade_tensor(window, kt, options.scale, options.son_degradation)
            if can_check(son_window.shape[-2:], options.scale):
                coarser = son_gain(
                    net, son_window.clamp(*image.intensity.unit_range), **son, **checked,
                    noise=noise, seed=seed, jpeg_quality=quality,
                )  # fmt: skip
                check = coarser_check(check, coarser, threshold=COARSER_CHECK_THRESHOLD)
    adapted = AdaptedModel(
        net, info, options.scale, image.intensity, options.autocast_dtype, kernel, estimate, kept,
        check, options.threads, options.son_degradation, quality,
    )  # fmt: skip
    if threads is not None:
        # The count most steps ran with (the last entry is set after the last step).
        adapted.threads_used["adaptation"] = statistics.mode(counts[:-1] or counts)
    return adapted


def _rethreading(
    run: Generator[StepReport, None, T], threads: int | str, counts: list[int]
) -> Generator[StepReport, None, T]:
    """``run``'s steps, torch's thread count set again after each from the load measured
    over it (:func:`~napari_mzsr.core.threads.use_threads`), each count appended to
    ``counts``: a machine that gets busy or idle mid-run is followed, and a blip in the
    first, short reading costs one step."""
    try:
        while True:
            report = next(run)
            counts.append(use_threads(threads, wait=False))
            yield report
    except StopIteration as done:
        return done.value
    finally:
        run.close()


def super_resolve_image(
    image: ImageData, options: AdaptOptions, apply: ApplyOptions
) -> Generator[StepReport, None, np.ndarray]:
    """Adapt and infer a checked 2-D ``image`` with checked options: in one step, or in
    gradual steps when the factors need several (:mod:`~napari_mzsr.pipeline.gradual`).

    Yields every adaptation step's report, numbered across the steps of a gradual run,
    and returns the result (the input's dtype unless ``apply`` says otherwise).
    """
    stages, _ = plan_stages(image, options)
    total = sum(stage.steps for stage in stages)
    done = 0
    for stage in stages[:-1]:
        adapted = yield from _renumbered(adapt_image(image, stage), done, total)
        # Float between the steps: no rounding to the output dtype until the end.
        result = adapted.render(image, replace(apply, output_dtype=np.dtype(np.float32)))
        image = gradual.next_input(result, image)
        done += stage.steps
        # The first step sees the user's image (its JPEG blocks, its fallback): what it
        # chose for "auto" holds for the later steps, which see float results.
        apply = replace(apply, back_projection=adapted.back_projection_used)
    adapted = yield from _renumbered(adapt_image(image, stages[-1]), done, total)
    return adapted.render(image, apply)


def plan_stages(
    image: ImageData, options: AdaptOptions
) -> tuple[tuple[AdaptOptions, ...], KernelEstimate | None]:
    """The options of each step for a 2-D ``image`` (:meth:`AdaptOptions.stages`) and
    the kernel estimate they were planned with: ``kernel="estimate"`` of a gradual run
    is resolved here, once, at the whole factor (the steps get it scaled), and the
    caller reports it; None otherwise (a one-step run estimates in the step)."""
    estimate = None
    if options.estimate:
        planned = replace(options, kernel=None).stages(image.rgb, image.shape)
        if len(planned) > 1:
            resolved, estimate = resolve_kernel(replace(options, model=planned[0].model), image)
            options = replace(resolved, model=options.model)
    return options.stages(image.rgb, image.shape), estimate


def _renumbered(
    run: Generator[StepReport, None, T], done: int, total: int
) -> Generator[StepReport, None, T]:
    """``run``'s reports numbered as steps ``done + step`` of ``total``."""
    try:
        while True:
            report = next(run)
            yield replace(report, step=done + report.step, steps=total)
    except StopIteration as finished:
        return finished.value


def cancelled_steps(report: StepReport) -> str:
    """The :class:`Cancelled` message after a step report (anything with ``step`` and
    ``steps``)."""
    return f"cancelled after {report.step + 1} of {report.steps} steps"


def cancelled_units(report: object) -> str:
    """The :class:`Cancelled` message after a stack or volume report (``done`` of
    ``total`` units)."""
    return f"cancelled after {report.done} of {report.total} units"


def step_progress(progress: ProgressCallback | None) -> Callable[[StepReport], None] | None:
    """A ``progress(steps_done, loss)`` callback as an ``on_report`` of :func:`drive`."""
    if progress is None:
        return None
    return lambda report: progress(report.step + 1, report.loss)


def drive(
    run: Generator[R, None, T],
    on_report: Callable[[R], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    describe: Callable[[R], str] = cancelled_steps,
) -> T:
    """Run a generator of progress reports to its end and return its value: each report
    goes to ``on_report(report)``, then ``cancel()`` is checked. The one drive loop of
    the entry points (images, stacks, volumes, calibrations).

    Raises
    ------
    Cancelled
        ``cancel()`` returned True; the generator is closed first and the message is
        ``describe(last_report)`` (default :func:`cancelled_steps`).
    """
    try:
        while True:
            report = next(run)
            if on_report is not None:
                on_report(report)
            if cancel is not None and cancel():
                run.close()
                raise Cancelled(describe(report))
    except StopIteration as done:
        return done.value


def iter_adapt(
    image: object, options: AdaptOptions | None = None, /, *, rgb: bool | None = None, **kwargs
) -> Generator[StepReport, None, AdaptedModel]:
    """Adapt theta_M to ``image``, yielding a :class:`StepReport` after every step and
    returning an :class:`AdaptedModel` (``StopIteration.value``).

    Parameters
    ----------
    image : ndarray or dask array, shape (H, W) or (H, W, 3|4)
        As in :func:`super_resolve`; crop adaptation reads only its patches.
    options : AdaptOptions, optional
        Checked options; or give them as keyword arguments (``scale``, ``kernel``,
        ``steps``, ``model``, ``device``, ``precision``, ``seed``, ``lr``,
        ``normalization``, ``percentiles``, ``adapt_patch``, ``adapt_patches``, as in
        :func:`super_resolve`). ``normalization`` may be an
        :class:`~napari_mzsr.core.intensity.IntensityMap` fitted elsewhere.
    rgb : bool, optional
        Whether the last axis holds colours (default: guessed from the shape).

    Everything is checked before the first step; closing the generator between steps
    cancels the run.
    """
    options = options if options is not None else AdaptOptions(**kwargs)
    data = image_data(
        image, rgb=rgb, normalization=options.normalization, percentiles=options.percentiles
    )
    return adapt_image(data, options.for_image(data.rgb))


def iter_super_resolve(
    image: object,
    options: AdaptOptions | None = None,
    apply: ApplyOptions | None = None,
    /,
    *,
    rgb: bool | None = None,
    **kwargs,
) -> Generator[StepReport, None, np.ndarray]:
    """Generator form of :func:`super_resolve`: yields a :class:`StepReport` after every
    adaptation step and returns the result (``StopIteration.value``).

    Options as checked :class:`AdaptOptions` and :class:`ApplyOptions`, or as the
    keyword arguments of :func:`super_resolve` (not ``progress``/``cancel``). Closing
    the generator between steps cancels the run; nothing is computed after.
    """
    apply_keys = ("output_dtype", "tile", "ensemble", "back_projection")
    if options is None:
        apply = ApplyOptions(**{k: kwargs.pop(k) for k in apply_keys if k in kwargs})
        output_shape = kwargs.pop("output_shape", None)
        if output_shape is not None:
            shape = np.shape(image)[:2]
            kwargs["scale"] = scale_for_shape(shape, kwargs.get("scale"), output_shape)
        options = AdaptOptions(**kwargs)
    apply = apply if apply is not None else ApplyOptions()
    data = image_data(
        image, rgb=rgb, normalization=options.normalization, percentiles=options.percentiles
    )
    return (yield from super_resolve_image(data, options, apply))


def super_resolve(
    image: object,
    *,
    scale: float | Sequence[float] | None = None,
    output_shape: Sequence[int] | None = None,
    kernel: object = None,
    steps: int = 10,
    model: str | os.PathLike | MZSRModel | None = None,
    device: str | torch.device = "auto",
    progress: ProgressCallback | None = None,
    cancel: Callable[[], bool] | None = None,
    seed: int = 0,
    lr: float | Sequence[Sequence[float]] | None = None,
    normalization: str | IntensityMap = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    rgb: bool | None = None,
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
    """Super-resolve one 2D image with MZSR: adapt theta_M to the image, then upscale.

    Parameters
    ----------
    image : ndarray or dask array, shape (H, W), (H, W, 3) or (H, W, 4)
        Grayscale or RGB(A); any integer or float dtype (see ``normalization``). Never
        modified. The alpha channel of RGBA is resized bicubically, not learned. For
        stacks and other N-D data see :func:`super_resolve_stack`.
    scale : float or (float, float), optional
        Super-resolution factor, one for both axes or ``(sy, sx)``; default 2. It must
        be one the model serves.
    output_shape : (int, int), optional
        Output height and width instead of ``scale`` (the factors become
        ``output_shape / (H, W)``); with both, they must agree.
    kernel : ndarray, float, (l1, l2, theta), str, Path or None
        Blur kernel of the image's acquisition (see
        :func:`napari_mzsr.core.kernels.as_kernel`): array, isotropic variance,
        anisotropic Gaussian, preset name or file. Default (None or ``"auto"``): the
        ``"photo"`` preset's assumption, no blur beyond the downscale's own, with a
        bicubic-subsampling model; for an image of unknown origin, with ``noise`` and
        ``self_check`` keeping the result from falling below bicubic. ``"microscope"``
        is the former default (variance 2.0, direct subsampling). ``"estimate"`` fits
        a Gaussian to the image itself (:func:`napari_mzsr.estimate_kernel`, a
        fraction of a second) before adapting;
        :func:`iter_adapt`'s result keeps it as ``kernel_estimate``.
    steps : int
        Adaptation steps (the paper uses 1 or 10). 0 applies theta_M unadapted, which
        is not meant to give good results. A step that raises the self-supervised loss
        is undone (see :mod:`napari_mzsr.core.adaptation`).
    model : str, path, MZSRModel or None
        Shipped model name (``"direct-x2"``, ...) or theta_M file. Default: the shipped
        model for the scale and the image's channels
        (:func:`~napari_mzsr.pipeline.options.choose_model`).
    device : str or torch.device
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda:1"``, ``"mps"``.
    progress : callable(step, loss), optional
        Called after each step with the number of steps done and the L1 loss.
    cancel : callable() -> bool, optional
        Checked between steps; when it returns True, :class:`Cancelled` is raised.
    seed : int
        Seed of torch's random generator for the run and of the patch positions of crop
        adaptation (the whole-image meta-test is itself deterministic on CPU).
    lr : float or [[step, lr], ...], optional
        Overrides the model's step learning-rate schedule; rates must be finite and > 0.
    normalization : {"auto", "dtype", "percentile", "minmax"}
        How intensities map to the network's range (see
        :mod:`napari_mzsr.core.intensity`). ``"auto"``: uint8 and float data in [0, 1]
        as they are, everything else by its 0.1/99.9 percentiles.
    percentiles : (float, float)
        Low/high percentiles for ``normalization="percentile"`` (and ``"auto"``).
    rgb : bool, optional
        Whether a last axis of size 3 or 4 holds colours (default: guessed from shape).
    output_dtype : dtype, optional
        Output dtype (default: the input's). Values are in the input's units; integer
        outputs are rounded to the nearest integer and clipped to the dtype's range.
    precision : {"auto", "float32", "bfloat16"}
        ``"auto"`` uses bfloat16 autocast with float32 weights where the device
        computes bfloat16 natively, float32 elsewhere.
    adapt_patch : "auto", int or None
        Crop adaptation: each step fits ``adapt_patches`` random patches of
        ``adapt_patch`` pixels (clipped to the image), placed by a generator seeded with
        ``seed``, instead of the whole image. ``None`` always adapts on the whole image.
        ``"auto"``: 2 patches of 96 pixels per step whatever the image size, or the
        whole image where that costs no more (up to 23,040 pixels; see
        :meth:`~napari_mzsr.pipeline.options.AdaptOptions.patch_size`).
    adapt_patches : int
        Patches per step of crop adaptation (default 2).
    noise : {"auto", "off"}
        ``"auto"``: estimate the image's noise as a function of intensity
        (:func:`napari_mzsr.core.noise.estimate_noise`) and add to the son what its
        downscale removed, so that the network learns to leave the noise alone rather
        than sharpen it; nothing is added to a clean image. ``"off"``: a clean son.
    self_check : bool
        Score theta_M and the adapted network against bicubic interpolation on the
        image's own son (:mod:`napari_mzsr.core.self_check`): keep theta_M unadapted
        where the steps lowered that score, and give bicubic interpolation where no
        network reaches the threshold (-0.2 dB predicted, +0.3 dB for a JPEG image:
        :data:`~napari_mzsr.pipeline.auto.CHECK_THRESHOLD`; the prediction runs below
        the true gain on photos). Images under 16 pixels plus twice the factor are not
        checked. :func:`iter_adapt`'s result keeps the prediction as ``self_check``.
        False always gives the adapted network's result.
    threads : "auto" or int
        CPU threads (a CPU device only). ``"auto"``: for the adaptation, the physical
        cores this process may use less those other processes keep busy, measured just
        before; for inference, all physical cores
        (:func:`napari_mzsr.core.threads.use_threads`). A count set with
        ``torch.set_num_threads`` or ``OMP_NUM_THREADS`` is kept. On a 2-core machine
        with one core busy elsewhere, adapting with 2 threads ran 1.5 times slower
        than with 1.
    tile : int, optional
        Inference tile side in input pixels (see :meth:`AdaptedModel.apply`); default:
        from the device's free memory. Tiles join exactly; the result does not depend
        on the tile size beyond float rounding.
    ensemble : {None, "mean", "median"}
        Geometric self-ensemble at inference: the flips and rotations that leave the
        kernel (and, for unequal factors, the axes) unchanged, combined by the mean or
        median. Costs one inference per transform. On Set5 with the shipped models:
        +0.1 dB (g^d_ani) to +0.6 dB (g^d_0.2).
    back_projection : int, None or "auto"
        Iterations of back-projection with the kernel after inference (ZSSR used 10);
        0 turns it off. Runs on the whole image; trusts the kernel. On Set5 with the
        shipped models and the true kernel, 10 iterations gained +0.6 to +2.2 dB for
        2 to 5 times the time of one inference; with ``kernel="estimate"`` the gain
        shrinks and turns into a loss where the estimate is too large (g^d_0.2).
        None (default): 1 iteration under the photo assumption (the default kernel or
        ``"photo"``), against a blend of area averaging and bicubic downscaling, since
        the tool that downscaled the image is unknown; 0 with any other kernel, for a
        JPEG image, a camera profile and where the self-check fell back to
        interpolation. In gradual steps the first step's choice holds for every step.

    Returns
    -------
    ndarray, shape (ceil(H * sy), ceil(W * sx)[, C]) or ``output_shape``

    Raises
    ------
    ValueError
        Bad image or option; the message names it.
    Cancelled
        ``cancel()`` returned True.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_mzsr import super_resolve
    >>> lr_img = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    >>> sr = super_resolve(lr_img, scale=2, kernel=2.0, steps=10)  # doctest: +SKIP
    >>> sr.shape, sr.dtype  # doctest: +SKIP
    ((128, 128, 3), dtype('uint8'))
    """
    data = image_data(image, rgb=rgb, normalization=normalization, percentiles=percentiles)
    adapt_options = AdaptOptions(
        scale=scale_for_shape(data.shape, scale, output_shape),
        kernel=kernel,
        steps=steps,
        model=model,
        device=device,
        precision=precision,
        seed=seed,
        lr=lr,
        normalization=data.intensity,
        adapt_patch=adapt_patch,
        adapt_patches=adapt_patches,
        noise=noise,
        self_check=self_check,
        threads=threads,
    )
    apply_options = ApplyOptions(output_dtype, tile, ensemble, back_projection)
    run = super_resolve_image(data, adapt_options, apply_options)
    return drive(run, step_progress(progress), cancel)
