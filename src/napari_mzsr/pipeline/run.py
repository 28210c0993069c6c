"""Public scripting API: super-resolve a numpy image with MZSR.

Data flow: validate the input, map intensities to [0, 1], arrange channels for the
model, adapt a fresh copy of theta_M (:mod:`.meta_test`), infer, map back.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Sequence
from functools import partial
from typing import TypeVar

import numpy as np
import torch

from ..core.adaptation import Cancelled, StepReport, adapt, adapt_on_patches, infer, patch_corners
from ..core.checks import check_image, is_dask
from ..core.devices import resolve_device, resolve_precision
from ..core.intensity import IntensityMap, intensity_map
from ..core.kernel_estimation import KernelEstimate, estimate_kernel
from ..core.kernels import ESTIMATE, as_kernel
from ..core.refinement import COMBINE, TRANSFORMS, back_project, kernel_symmetries, self_ensemble
from ..core.resize import imresize_tensor
from ..core.tiling import Region, Tile, auto_tile, for_each_tile, region_output_shape, tile_margin
from ..io.model_file import ModelInfo, MZSRModel, load_model, lr_schedule_from, schedule_lr

ProgressCallback = Callable[[int, float], None]
T = TypeVar("T")

# adapt_patch="auto": images up to this many pixels adapt on the whole image; larger ones
# on AUTO_PATCHES random patches of AUTO_PATCH pixels per step: 65,536 pixels, a whole
# 256 x 256 image (the size of the paper's LR test images). On four Set14 images (x2,
# g^d_2.0, direct-x2, 10 steps) 4 patches of 128 were within 0.08 dB of whole-image
# adaptation (-0.08 to +0.06) and 8 patches no closer.
AUTO_WHOLE_IMAGE_PIXELS = 512 * 512
AUTO_PATCH = 128
AUTO_PATCHES = 4
# kernel="estimate" reads at most this central square of a big image (a lazy one is
# never read whole); 1024 x 1024 pixels give hundreds of spectrum windows.
ESTIMATE_SIDE = 1024


def _read_regions(image: object, regions: Sequence[Region]) -> list[np.ndarray]:
    """The ``image[region]`` arrays; for a dask array, computed together and checked for
    NaN/inf (its whole-image check would read it all)."""
    if not is_dask(image):
        return [np.asarray(image[region]) for region in regions]
    import dask

    values = [np.asarray(v) for v in dask.compute(*(image[region] for region in regions))]
    for v in values:
        if np.issubdtype(v.dtype, np.floating) and not np.all(np.isfinite(v)):
            raise ValueError("image contains NaN or infinite values")
    return values


def resolve_kernel(
    kernel: object, image: object, rgb: bool, scale: float, degradation: str
) -> tuple[np.ndarray, KernelEstimate | None]:
    """The kernel array for any kernel spec of :func:`super_resolve`, and the estimate
    when ``kernel`` is ``"estimate"``.

    Parameters
    ----------
    kernel : object
        A spec accepted by :func:`napari_mzsr.kernels.as_kernel`, or ``"estimate"``:
        then the kernel is estimated (:func:`~napari_mzsr.kernel_estimation.estimate_kernel`)
        from the centre of ``image``, at most :data:`ESTIMATE_SIDE` pixels square.
    image : ndarray or dask array, shape (H, W) or (H, W, 3|4)
        The low-resolution image.
    rgb : bool
        Whether its last axis holds colours.
    scale : float
        Super-resolution factor.
    degradation : {"direct", "bicubic"}
        Subsampling of the model the kernel is for.

    Returns
    -------
    kernel : ndarray of float64
    estimate : KernelEstimate or None
    """
    if not (isinstance(kernel, str) and kernel == ESTIMATE):
        return as_kernel(kernel), None
    height, width = image.shape[:2]
    top, left = max(0, (height - ESTIMATE_SIDE) // 2), max(0, (width - ESTIMATE_SIDE) // 2)
    (centre,) = _read_regions(
        image, [(slice(top, top + ESTIMATE_SIDE), slice(left, left + ESTIMATE_SIDE))]
    )
    estimate = estimate_kernel(centre, scale, degradation, rgb=rgb)
    return estimate.kernel, estimate


def _to_batch(unit: np.ndarray, rgb: bool, channels: int) -> torch.Tensor:
    """(H, W[, 3]) unit-range array -> (N, channels, H, W) tensor for the model."""
    t = torch.from_numpy(np.ascontiguousarray(unit))
    if rgb:
        t = t.permute(2, 0, 1)  # (3, H, W)
        return t[None] if channels == 3 else t[:, None]
    t = t[None, None]
    return t.expand(1, channels, *t.shape[-2:]).contiguous()


def _from_batch(out: torch.Tensor, rgb: bool) -> np.ndarray:
    """Inverse of :func:`_to_batch` for the network's output."""
    if rgb:
        t = out[0] if out.shape[0] == 1 else out[:, 0]
        return t.permute(1, 2, 0).cpu().numpy()
    # A 3-channel model sees a grey image as three equal channels; average them back.
    return out[0].mean(dim=0).cpu().numpy()


class AdaptedModel:
    """theta_M adapted to one image; :meth:`apply` super-resolves that image or any
    other of the same kind (same channels), e.g. the other slices of a stack.

    ``kernel`` is the blur kernel it was adapted with (needed for back-projection) and
    ``kernel_estimate`` the :class:`~napari_mzsr.kernel_estimation.KernelEstimate` it
    came from when it was estimated from the image (``kernel="estimate"``).
    """

    def __init__(
        self,
        net: torch.nn.Module,
        info: ModelInfo,
        scale: float,
        imap: IntensityMap,
        autocast_dtype: torch.dtype | None,
        kernel: np.ndarray | None = None,
        kernel_estimate: KernelEstimate | None = None,
    ) -> None:
        self.net, self.info, self.scale = net, info, scale
        self.intensity = imap
        self.autocast_dtype = autocast_dtype
        self.kernel, self.kernel_estimate = kernel, kernel_estimate

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def _upscale(self, x: torch.Tensor, ensemble: str | None) -> torch.Tensor:
        def upscale(batch: torch.Tensor) -> torch.Tensor:
            return infer(self.net, batch, self.scale, self.autocast_dtype)

        if ensemble is None:
            return upscale(x)
        # Without a known kernel, trust all eight transforms (an isotropic blur).
        transforms = TRANSFORMS if self.kernel is None else kernel_symmetries(self.kernel)
        return self_ensemble(upscale, x, self.scale, self.info.degradation, transforms, ensemble)

    def _back_project(self, unit_sr: np.ndarray, color: np.ndarray, iterations: int) -> np.ndarray:
        """Back-project the unit-range result (H, W[, 3]) onto ``color``, the input."""

        def batch(a: np.ndarray) -> torch.Tensor:
            t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
            t = t.permute(2, 0, 1) if t.ndim == 3 else t[None]
            return t[None].to(self.device)

        kernel = torch.from_numpy(self.kernel).float().to(self.device)
        lr = batch(self.intensity.forward(color))
        sr = back_project(batch(unit_sr), lr, kernel, self.scale, self.info.degradation, iterations)
        sr = sr[0].permute(1, 2, 0) if unit_sr.ndim == 3 else sr[0, 0]
        return sr.cpu().numpy()

    def apply(
        self,
        image: np.ndarray,
        output_dtype: np.dtype | str | None = None,
        rgb: bool | None = None,
        *,
        tile: int | None = None,
        region: Region | None = None,
        ensemble: str | None = None,
        back_projection: int = 0,
    ) -> np.ndarray:
        """Super-resolve ``image`` (H, W) or (H, W, 3|4) with the adapted network.

        Intensities are mapped with the adaptation image's map, so the slices of a
        stack stay comparable. The image runs in tiles (:mod:`napari_mzsr.tiling`)
        whose seams are exact, so the memory needed is about that of the result.

        Parameters
        ----------
        image : ndarray or dask array, shape (H, W) or (H, W, 3|4)
            As in :func:`super_resolve`; a dask array is read tile by tile.
        output_dtype : dtype, optional
            Output dtype (default: the input's).
        rgb : bool, optional
            Whether the last axis holds colours (default: guessed from the shape).
        tile : int, optional
            Tile side in input pixels. Default: from the device's free memory
            (:func:`napari_mzsr.tiling.auto_tile`). A CUDA out-of-memory error halves
            it and retries.
        region : (slice, slice), optional
            Compute only the output of these input rows and columns, reading the rest
            of the image as context. Bounds must be multiples of
            :func:`napari_mzsr.tiling.grid_step` of the scale, or the image end.
        ensemble : {None, "mean", "median"}
            Geometric self-ensemble (:func:`napari_mzsr.refinement.self_ensemble`) over
            the flips and rotations that leave the adaptation kernel unchanged, combined
            by the mean or median; None runs the image once.
        back_projection : int
            Iterations of back-projection with the adaptation kernel
            (:func:`napari_mzsr.refinement.back_project`), done on the whole image after
            the tiles; 0 turns it off. Not with ``region``.

        Returns
        -------
        ndarray, shape (ceil(H * scale), ceil(W * scale)[, C])
            Or the output of ``region``.
        """
        arr = image if is_dask(image) else np.asarray(image)
        is_rgb = check_image(arr, rgb)
        if tile is not None and (
            isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < 1
        ):
            raise ValueError(f"tile must be a positive integer, got {tile!r}")
        if ensemble is not None and ensemble not in COMBINE:
            raise ValueError(f"ensemble must be None or one of {COMBINE}, got {ensemble!r}")
        if (
            isinstance(back_projection, bool)
            or not isinstance(back_projection, (int, np.integer))
            or back_projection < 0
        ):
            raise ValueError(
                f"back_projection must be a non-negative integer, got {back_projection!r}"
            )
        if back_projection and (self.kernel is None or region is not None):
            raise ValueError(
                "back-projection needs the adaptation kernel and the whole image (no region)"
            )
        dtype = arr.dtype if output_dtype is None else np.dtype(output_dtype)
        shape = (arr.shape[0], arr.shape[1])
        margin = tile_margin(self.scale, self.info.layers)
        if tile is None:
            info = self.info
            tile = auto_tile(self.device, self.scale, info.features, info.channels, margin)
        out_shape = region_output_shape(shape, self.scale, region)
        result = np.empty(out_shape + arr.shape[2:], dtype)
        color = arr[..., :3] if is_rgb else arr
        colors = (slice(0, 3),) if is_rgb else ()
        # Back-projection needs the whole result in unit range before mapping it back.
        unit_shape = out_shape + ((3,) if is_rgb else ())
        unit_sr = np.empty(unit_shape, np.float32) if back_projection else None

        def super_resolve_tile(t: Tile) -> None:
            (values,) = _read_regions(color, [t.window])
            x = _to_batch(self.intensity.forward(values), is_rgb, self.info.channels)
            sr = self._upscale(x.to(self.device), ensemble)
            unit = _from_batch(sr[..., t.crop[0], t.crop[1]], is_rgb)
            if unit_sr is None:
                result[(*t.target, *colors)] = self.intensity.inverse(unit, dtype)
            else:
                unit_sr[t.target] = unit

        tile = for_each_tile(super_resolve_tile, shape, self.scale, margin, tile, region)
        if unit_sr is not None:
            refined = self._back_project(unit_sr, np.asarray(color), back_projection)
            result[(slice(None), slice(None), *colors)] = self.intensity.inverse(refined, dtype)
        if is_rgb and arr.shape[-1] == 4:

            def resize_alpha_tile(t: Tile) -> None:
                (alpha,) = _read_regions(arr[..., 3], [t.window])
                up = _resize_alpha(alpha, self.scale, dtype)
                result[t.target[0], t.target[1], 3] = up[t.crop[0], t.crop[1], 0]

            for_each_tile(resize_alpha_tile, shape, self.scale, margin, tile, region)
        return result


def iter_adapt(
    image: np.ndarray,
    scale: float = 2,
    kernel: object = None,
    steps: int = 10,
    model: str | os.PathLike | MZSRModel = "direct-x2",
    device: str | torch.device = "auto",
    seed: int = 0,
    *,
    lr: float | Sequence[Sequence[float]] | None = None,
    normalization: str | IntensityMap = "dtype",
    percentiles: tuple[float, float] = (0.1, 99.9),
    rgb: bool | None = None,
    precision: str = "auto",
    adapt_patch: int | str | None = "auto",
    adapt_patches: int = AUTO_PATCHES,
) -> Generator[StepReport, None, AdaptedModel]:
    """Adapt theta_M to ``image``, yielding a :class:`StepReport` after every step and
    returning an :class:`AdaptedModel` (``StopIteration.value``).

    All arguments are checked before the first step. Closing the generator between
    steps cancels the run. Parameters as in :func:`super_resolve`; ``normalization`` may
    also be an :class:`~napari_mzsr.intensity.IntensityMap` fitted elsewhere (e.g. on a
    whole stack). ``image`` may be a dask array: crop adaptation reads only its patches.
    """
    arr = image if is_dask(image) else np.asarray(image)
    is_rgb = check_image(arr, rgb)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if (
        isinstance(adapt_patches, bool)
        or not isinstance(adapt_patches, (int, np.integer))
        or adapt_patches < 1
    ):
        raise ValueError(f"adapt_patches must be a positive integer, got {adapt_patches!r}")
    mzsr = load_model(model)
    info = mzsr.info
    scale = float(scale)
    if not info.supports_scale(scale):
        allowed = (
            f"{min(info.scales):g} to {max(info.scales):g}"
            if len(info.scales) > 1
            else f"{info.scales[0]:g}"
        )
        raise ValueError(f"model {info.name!r} supports scale {allowed}, not {scale:g}")
    k, estimate = resolve_kernel(kernel, arr, is_rgb, scale, info.degradation)
    height, width = arr.shape[:2]
    if min(height, width) < k.shape[0]:
        raise ValueError(
            f"image of {height}x{width} pixels is too small for a {k.shape[0]}x"
            f"{k.shape[0]} kernel: each side needs at least {k.shape[0]} pixels"
        )
    patch = _adaptation_patch(adapt_patch, (height, width), k.shape[0])
    schedule = info.lr_schedule if lr is None else lr_schedule_from(lr)
    dev = resolve_device(device)
    autocast_dtype = resolve_precision(precision, dev)
    color = arr[..., :3] if is_rgb else arr
    if isinstance(normalization, IntensityMap):
        imap = normalization
    else:
        imap = intensity_map(color, normalization, percentiles)

    torch.manual_seed(seed)
    net = mzsr.network(dev)
    kt = torch.from_numpy(k).float().to(dev)
    step_lr = partial(schedule_lr, schedule)
    if patch is None:
        x = _to_batch(imap.forward(np.asarray(color)), is_rgb, info.channels).to(dev)
        yield from adapt(net, x, kt, scale, steps, step_lr, info.degradation, autocast_dtype)
    else:
        rng = np.random.default_rng(seed)
        corners = patch_corners((height, width), patch, adapt_patches, steps, rng)

        def read(step_corners: np.ndarray) -> torch.Tensor:
            regions = [(slice(y, y + patch[0]), slice(x, x + patch[1])) for y, x in step_corners]
            crops = [imap.forward(c) for c in _read_regions(color, regions)]
            return torch.cat([_to_batch(c, is_rgb, info.channels) for c in crops]).to(dev)

        batches = (read(step_corners) for step_corners in corners)
        yield from adapt_on_patches(
            net, batches, kt, scale, steps, step_lr, info.degradation, autocast_dtype
        )
    return AdaptedModel(net, info, scale, imap, autocast_dtype, k, estimate)


def _adaptation_patch(
    adapt_patch: int | str | None, shape: tuple[int, int], min_size: int
) -> tuple[int, int] | None:
    """Patch height and width of crop adaptation, or None for the whole image."""
    if isinstance(adapt_patch, str):
        if adapt_patch != "auto":
            raise ValueError(f"adapt_patch must be 'auto', None or an integer, got {adapt_patch!r}")
        if shape[0] * shape[1] <= AUTO_WHOLE_IMAGE_PIXELS:
            return None
        adapt_patch = max(AUTO_PATCH, min_size)
    if adapt_patch is None:
        return None
    if (
        isinstance(adapt_patch, bool)
        or not isinstance(adapt_patch, (int, np.integer))
        or adapt_patch < min_size
    ):
        raise ValueError(
            f"adapt_patch must be 'auto', None or an integer of at least {min_size} (the "
            f"kernel size), got {adapt_patch!r}"
        )
    return min(int(adapt_patch), shape[0]), min(int(adapt_patch), shape[1])


def iter_super_resolve(
    image: np.ndarray,
    scale: float = 2,
    kernel: object = None,
    steps: int = 10,
    model: str | os.PathLike | MZSRModel = "direct-x2",
    device: str | torch.device = "auto",
    seed: int = 0,
    *,
    lr: float | Sequence[Sequence[float]] | None = None,
    normalization: str | IntensityMap = "dtype",
    percentiles: tuple[float, float] = (0.1, 99.9),
    rgb: bool | None = None,
    output_dtype: np.dtype | str | None = None,
    precision: str = "auto",
    adapt_patch: int | str | None = "auto",
    adapt_patches: int = AUTO_PATCHES,
    tile: int | None = None,
    ensemble: str | None = None,
    back_projection: int = 0,
) -> Generator[StepReport, None, np.ndarray]:
    """Generator form of :func:`super_resolve`: yields a :class:`StepReport` after every
    adaptation step and returns the result (``StopIteration.value``).

    Closing the generator between steps cancels the run; nothing is computed after.
    Use it to drive progress bars or GUI workers. Parameters as in :func:`super_resolve`.
    """
    adapted = yield from iter_adapt(
        image,
        scale,
        kernel,
        steps,
        model,
        device,
        seed,
        lr=lr,
        normalization=normalization,
        percentiles=percentiles,
        rgb=rgb,
        precision=precision,
        adapt_patch=adapt_patch,
        adapt_patches=adapt_patches,
    )
    return adapted.apply(
        image, output_dtype, rgb, tile=tile, ensemble=ensemble, back_projection=back_projection
    )


def super_resolve(
    image: np.ndarray,
    scale: float = 2,
    kernel: object = None,
    steps: int = 10,
    model: str | os.PathLike | MZSRModel = "direct-x2",
    device: str | torch.device = "auto",
    progress: ProgressCallback | None = None,
    seed: int = 0,
    *,
    cancel: Callable[[], bool] | None = None,
    lr: float | Sequence[Sequence[float]] | None = None,
    normalization: str = "dtype",
    percentiles: tuple[float, float] = (0.1, 99.9),
    rgb: bool | None = None,
    output_dtype: np.dtype | str | None = None,
    precision: str = "auto",
    adapt_patch: int | str | None = "auto",
    adapt_patches: int = AUTO_PATCHES,
    tile: int | None = None,
    ensemble: str | None = None,
    back_projection: int = 0,
) -> np.ndarray:
    """Super-resolve one 2D image with MZSR: adapt theta_M to the image, then upscale.

    Parameters
    ----------
    image : ndarray, shape (H, W), (H, W, 3) or (H, W, 4)
        Grayscale or RGB(A); uint8, uint16 (any integer) or float in [0, 1]. Never
        modified. The alpha channel of RGBA is resized bicubically, not learned.
    scale : float
        Super-resolution factor; must be one the model was trained for.
    kernel : ndarray, float, (l1, l2, theta), str, Path or None
        Blur kernel of the image's acquisition (see :func:`napari_mzsr.kernels.as_kernel`):
        array, isotropic variance, anisotropic Gaussian, preset name or file. Default:
        isotropic variance 2.0. ``"estimate"`` fits a Gaussian to the image itself
        (:func:`napari_mzsr.kernel_estimation.estimate_kernel`, a fraction of a second)
        before adapting; :func:`iter_adapt`'s result keeps it as ``kernel_estimate``.
    steps : int
        Adaptation steps (the paper uses 1 or 10). 0 applies theta_M unadapted, which
        is not meant to give good results.
    model : str, path or MZSRModel
        Shipped model name (``"direct-x2"``, ...) or theta_M file.
    device : str or torch.device
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda:1"``, ...
    progress : callable(step, loss), optional
        Called after each step with the number of steps done and the L1 loss.
    seed : int
        Seed of torch's random generator for the run and of the patch positions of crop
        adaptation (the whole-image meta-test is itself deterministic on CPU).
    cancel : callable() -> bool, optional
        Checked between steps; when it returns True, :class:`Cancelled` is raised.
    lr : float or [[step, lr], ...], optional
        Overrides the model's step learning-rate schedule.
    normalization : {"dtype", "percentile", "minmax"}
        How intensities map to [0, 1] (see :mod:`napari_mzsr.intensity`).
    percentiles : (float, float)
        Low/high percentiles for ``normalization="percentile"``.
    rgb : bool, optional
        Whether a last axis of size 3 or 4 holds colours (default: guessed from shape).
    output_dtype : dtype, optional
        Output dtype (default: the input's). Values are in the input's units; integer
        outputs are rounded and clipped to the dtype's range.
    precision : {"auto", "float32", "bfloat16"}
        ``"auto"`` uses bfloat16 autocast with float32 weights on CPU and CUDA.
    adapt_patch : "auto", int or None
        Crop adaptation: each step fits ``adapt_patches`` random patches of
        ``adapt_patch`` pixels (clipped to the image), placed by a generator seeded with
        ``seed``, instead of the whole image. ``None`` always adapts on the whole image.
        ``"auto"``: the whole image up to :data:`AUTO_WHOLE_IMAGE_PIXELS` (512 x 512)
        pixels, patches of :data:`AUTO_PATCH` (128) pixels beyond, so that the time and
        memory of adaptation do not grow with the image.
    adapt_patches : int
        Patches per step of crop adaptation (default :data:`AUTO_PATCHES`, 4).
    tile : int, optional
        Inference tile side in input pixels (see :meth:`AdaptedModel.apply`); default:
        from the device's free memory. Tiles join exactly; the result does not depend
        on the tile size beyond float rounding.
    ensemble : {None, "mean", "median"}
        Geometric self-ensemble at inference: the flips and rotations that leave the
        kernel unchanged (all 8 for an isotropic kernel, 2 for a rotated anisotropic
        one), combined by the mean or median. Costs one inference per transform. On
        Set5 with the shipped models: +0.1 dB (g^d_ani) to +0.6 dB (g^d_0.2).
    back_projection : int
        Iterations of back-projection with the kernel after inference (ZSSR used 10);
        0 turns it off. Runs on the whole image; trusts the kernel. On Set5 with the
        shipped models and the true kernel, 10 iterations gained +0.6 to +2.2 dB for
        2 to 5 times the time of one inference; with ``kernel="estimate"`` the gain shrinks
        and turns into a loss where the estimate is too large (g^d_0.2).

    Returns
    -------
    ndarray, shape (ceil(H * scale), ceil(W * scale)[, C])

    Raises
    ------
    ValueError
        Bad image, kernel, scale or option (message says which).
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
    run = iter_super_resolve(
        image,
        scale,
        kernel,
        steps,
        model,
        device,
        seed,
        lr=lr,
        normalization=normalization,
        percentiles=percentiles,
        rgb=rgb,
        output_dtype=output_dtype,
        precision=precision,
        adapt_patch=adapt_patch,
        adapt_patches=adapt_patches,
        tile=tile,
        ensemble=ensemble,
        back_projection=back_projection,
    )
    return _drive(run, progress, cancel)


def _drive(
    run: Generator[StepReport, None, T],
    progress: ProgressCallback | None,
    cancel: Callable[[], bool] | None,
) -> T:
    """Run ``run`` to its end, reporting each step to ``progress`` and checking
    ``cancel`` after it; returns the generator's value."""
    try:
        while True:
            report = next(run)
            if progress is not None:
                progress(report.step + 1, report.loss)
            if cancel is not None and cancel():
                run.close()
                raise Cancelled(f"cancelled after {report.step + 1} of {report.steps} steps")
    except StopIteration as done:
        return done.value


def _resize_alpha(alpha: np.ndarray, scale: float, dtype: np.dtype) -> np.ndarray:
    imap = intensity_map(alpha, "dtype") if alpha.dtype.kind in "ui" else None
    unit = imap.forward(alpha) if imap else alpha.astype(np.float32)
    up = imresize_tensor(torch.from_numpy(unit)[None], scale)[0].clamp_(0, 1).numpy()
    out = imap.inverse(up, dtype) if imap else up.astype(dtype)
    return out[..., None]
