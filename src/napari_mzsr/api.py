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

from .devices import resolve_device, resolve_precision
from .intensity import IntensityMap, intensity_map
from .kernels import as_kernel
from .meta_test import Cancelled, StepReport, adapt, adapt_on_patches, infer, patch_corners
from .model_file import ModelInfo, MZSRModel, load_model, lr_schedule_from, schedule_lr
from .resize import imresize_tensor
from .tiling import Region, Tile, auto_tile, for_each_tile, region_output_shape, tile_margin

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


def _is_dask(image: object) -> bool:
    # By module name, so that dask (an optional dependency) is imported only when used.
    return type(image).__module__.split(".")[0] == "dask"


def _read_regions(image: object, regions: Sequence[Region]) -> list[np.ndarray]:
    """The ``image[region]`` arrays; for a dask array, computed together and checked for
    NaN/inf (its whole-image check would read it all)."""
    if not _is_dask(image):
        return [np.asarray(image[region]) for region in regions]
    import dask

    values = [np.asarray(v) for v in dask.compute(*(image[region] for region in regions))]
    for v in values:
        if np.issubdtype(v.dtype, np.floating) and not np.all(np.isfinite(v)):
            raise ValueError("image contains NaN or infinite values")
    return values


def _check_image(image: np.ndarray, rgb: bool | None) -> bool:
    """Validate ``image`` and return whether its last axis holds RGB(A) channels."""
    if image.dtype == bool:
        raise ValueError("boolean images cannot be super-resolved; convert to uint8 first")
    if np.iscomplexobj(image):
        raise ValueError("complex images cannot be super-resolved; take abs() or .real first")
    if not np.issubdtype(image.dtype, np.number):
        raise ValueError(f"image must be numeric, got dtype {image.dtype}")
    if image.size == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    if rgb is None:
        rgb = image.ndim == 3 and image.shape[-1] in (3, 4)
    if rgb:
        if image.ndim != 3 or image.shape[-1] not in (3, 4):
            raise ValueError(f"an RGB(A) image must have shape (H, W, 3|4), got {image.shape}")
    elif image.ndim != 2:
        raise ValueError(
            f"expected a 2D grayscale (H, W) or RGB(A) (H, W, 3|4) image, got shape "
            f"{image.shape}; process stacks slice by slice"
        )
    if (
        np.issubdtype(image.dtype, np.floating)
        and not _is_dask(image)
        and not np.all(np.isfinite(image))
    ):
        raise ValueError("image contains NaN or infinite values")
    return rgb


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
    other of the same kind (same channels), e.g. the other slices of a stack."""

    def __init__(
        self,
        net: torch.nn.Module,
        info: ModelInfo,
        scale: float,
        imap: IntensityMap,
        autocast_dtype: torch.dtype | None,
    ) -> None:
        self.net, self.info, self.scale = net, info, scale
        self.intensity = imap
        self.autocast_dtype = autocast_dtype

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def apply(
        self,
        image: np.ndarray,
        output_dtype: np.dtype | str | None = None,
        rgb: bool | None = None,
        *,
        tile: int | None = None,
        region: Region | None = None,
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

        Returns
        -------
        ndarray, shape (ceil(H * scale), ceil(W * scale)[, C])
            Or the output of ``region``.
        """
        arr = image if _is_dask(image) else np.asarray(image)
        is_rgb = _check_image(arr, rgb)
        if tile is not None and (
            isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < 1
        ):
            raise ValueError(f"tile must be a positive integer, got {tile!r}")
        dtype = arr.dtype if output_dtype is None else np.dtype(output_dtype)
        shape = (arr.shape[0], arr.shape[1])
        margin = tile_margin(self.scale, self.info.layers)
        if tile is None:
            info = self.info
            tile = auto_tile(self.device, self.scale, info.features, info.channels, margin)
        result = np.empty(region_output_shape(shape, self.scale, region) + arr.shape[2:], dtype)
        color = arr[..., :3] if is_rgb else arr
        colors = (slice(0, 3),) if is_rgb else ()

        def super_resolve_tile(t: Tile) -> None:
            (values,) = _read_regions(color, [t.window])
            x = _to_batch(self.intensity.forward(values), is_rgb, self.info.channels)
            sr = infer(self.net, x.to(self.device), self.scale, self.autocast_dtype)
            unit = _from_batch(sr[..., t.crop[0], t.crop[1]], is_rgb)
            result[(*t.target, *colors)] = self.intensity.inverse(unit, dtype)

        tile = for_each_tile(super_resolve_tile, shape, self.scale, margin, tile, region)
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
    arr = image if _is_dask(image) else np.asarray(image)
    is_rgb = _check_image(arr, rgb)
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
    k = as_kernel(kernel)
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
    return AdaptedModel(net, info, scale, imap, autocast_dtype)


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
    return adapted.apply(image, output_dtype, rgb, tile=tile)


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
        isotropic variance 2.0.
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
