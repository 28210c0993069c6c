"""theta_M adapted to one image, and inference with it: tiled, with the refinements."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import torch

from ..core.adaptation import infer
from ..core.intensity import IntensityMap, intensity_map
from ..core.kernel_estimation import KernelEstimate
from ..core.refinement import (
    PHOTO_DEGRADATION,
    TRANSFORMS,
    back_project,
    kernel_symmetries,
    self_ensemble,
)
from ..core.resize import imresize_tensor
from ..core.self_check import FALLBACK, FALLBACK_KERNEL, SelfCheck
from ..core.tensors import from_batch, to_batch
from ..core.threads import use_threads
from ..core.tiling import Region, Tile, auto_tile, for_each_tile, region_output_shape, tile_margin
from ..io.model_file import ModelInfo
from .images import ImageData, image_data
from .options import ApplyOptions

# Back-projection iterations of ``back_projection=None`` (auto) under the photo
# assumption (a son made by area averaging for a bicubic model). Validation split
# (benchmarks/results/validation/photo_back_projection_probe.md): 3 iterations gained up to
# 0.08 dB more than 1 on clean photos but put the noise back into noisy ones (worst
# image -0.26 dB against bicubic, 1 iteration -0.03); gating them on the noise
# estimate lost half the gain or more, as it reads texture as noise on clean photos.
PHOTO_BACK_PROJECTION = 1


class AdaptedModel:
    """theta_M adapted to one image; :meth:`apply` super-resolves that image or any
    other of the same kind (same channels), e.g. the other slices of a stack.

    Attributes
    ----------
    net : MZSRNet
        The adapted network.
    info : ModelInfo
        Metadata of the theta_M it started from.
    scale : (float, float)
        Factors ``(sy, sx)`` it was adapted for.
    intensity : IntensityMap
        The adaptation image's intensity map, used for every image it is applied to.
    autocast_dtype : torch.dtype or None
        Precision of its forward passes.
    kernel : ndarray
        The blur kernel it was adapted with (needed for back-projection).
    kernel_estimate : KernelEstimate or None
        Where the kernel was estimated from the image (``kernel="estimate"``).
    steps_taken : int
        Adaptation steps kept (fewer than asked when steps that raised the son loss
        were undone, or adaptation stopped early; 0 when the self-check kept theta_M).
    self_check : SelfCheck or None
        What the self-check predicted and chose (None when it was off). Where it fell
        back (``"lanczos"``), :meth:`apply` gives Lanczos-3 interpolation (no refinements).
    threads : "auto" or int
        CPU threads of its runs (:func:`napari_mzsr.core.threads.use_threads`).
    threads_used : dict
        The CPU threads its adaptation (``"adaptation"``) and its last inference
        (``"inference"``) ran with; empty on a GPU.
    son_degradation : str or None
        How its son was subsampled; ``"area"`` on a bicubic model is the photo
        assumption, under which back-projection compares with a blend of area
        averaging and bicubic downscaling (:data:`~napari_mzsr.core.refinement.
        PHOTO_DEGRADATION`) and runs by default (:meth:`back_projection_for`).
    jpeg_quality : int or None
        The JPEG quality its image was recognised as saved at (None: not compressed, or
        not looked for: ``noise="off"``).
    back_projection_used : int or None
        Back-projection iterations of its last inference (None before any).
    """

    def __init__(
        self,
        net: torch.nn.Module,
        info: ModelInfo,
        scale: tuple[float, float],
        intensity: IntensityMap,
        autocast_dtype: torch.dtype | None,
        kernel: np.ndarray | None = None,
        kernel_estimate: KernelEstimate | None = None,
        steps_taken: int = 0,
        self_check: SelfCheck | None = None,
        threads: int | str = "auto",
        son_degradation: str | None = None,
        jpeg_quality: int | None = None,
    ) -> None:
        self.net, self.info, self.scale = net, info, scale
        self.son_degradation, self.jpeg_quality = son_degradation, jpeg_quality
        self.back_projection_used: int | None = None
        self.intensity = intensity
        self.autocast_dtype = autocast_dtype
        self.kernel, self.kernel_estimate = kernel, kernel_estimate
        self.steps_taken = steps_taken
        self.self_check = self_check
        self.threads = threads
        self.threads_used: dict[str, int] = {}

    @property
    def uses_network(self) -> bool:
        """False where the self-check fell back to interpolation."""
        return self.self_check is None or self.self_check.choice != FALLBACK

    @property
    def photo_assumption(self) -> bool:
        """Whether it was adapted under the photo assumption: no blur (a 1 x 1 kernel),
        an area-averaged son, a bicubic model, not a camera profile (a profile's
        downscale is its own; the blend of :data:`~napari_mzsr.core.refinement.
        PHOTO_DEGRADATION` was not validated there)."""
        no_blur = self.kernel is not None and self.kernel.shape == (1, 1)
        photo_son = self.son_degradation == "area" and self.info.degradation == "bicubic"
        return no_blur and photo_son and not self.calibrated

    @property
    def calibrated(self) -> bool:
        """Whether it started from a camera profile (:mod:`~napari_mzsr.pipeline.
        calibrate`), which learnt its camera's downscale from real pairs."""
        return self.info.training.get("stage") == "calibration"

    def back_projection_for(self, requested: int | None, region: Region | None = None) -> int:
        """Back-projection iterations of an inference: ``requested``, or for None
        :data:`PHOTO_BACK_PROJECTION` under the photo assumption
        (:attr:`photo_assumption`) on a whole image that is not JPEG-compressed, and 0
        elsewhere; always 0 where the self-check fell back to interpolation.

        Raises
        ------
        ValueError
            Iterations requested without the adaptation kernel or for a region.
        """
        if not self.uses_network:
            # Refinements sharpen towards the kernel: nothing to refine in interpolation.
            return 0
        if requested is None:
            # A JPEG's blocks are left alone, as in its son: not projected back in.
            auto = self.photo_assumption and region is None and self.jpeg_quality is None
            return PHOTO_BACK_PROJECTION if auto else 0
        if requested and (self.kernel is None or region is not None):
            raise ValueError(
                "back_projection needs the adaptation kernel and the whole image (no region)"
            )
        return requested

    def with_intensity(self, intensity: IntensityMap) -> AdaptedModel:
        """The same adapted network (shared, not copied) for images mapped by
        ``intensity``: one adaptation applied to other channels or layers."""
        other = copy.copy(self)
        other.intensity, other.threads_used = intensity, dict(self.threads_used)
        return other

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def apply(
        self,
        image: object,
        *,
        output_dtype: np.dtype | str | None = None,
        rgb: bool | None = None,
        tile: int | None = None,
        region: Region | None = None,
        ensemble: str | None = None,
        back_projection: int | None = None,
    ) -> np.ndarray:
        """Super-resolve ``image`` (H, W) or (H, W, 3|4) with the adapted network.

        Intensities are mapped with the adaptation image's map, so the slices of a
        stack stay comparable. The image runs in tiles (:mod:`napari_mzsr.core.tiling`)
        whose seams are exact, so the memory needed is about that of the result.

        Parameters
        ----------
        image : ndarray or dask array, shape (H, W) or (H, W, 3|4)
            As in :func:`napari_mzsr.super_resolve`; a dask array is read tile by tile.
        output_dtype : dtype, optional
            Output dtype (default: the input's).
        rgb : bool, optional
            Whether the last axis holds colours (default: guessed from the shape).
        tile : int, optional
            Tile side in input pixels. Default: from the device's free memory
            (:func:`napari_mzsr.core.tiling.auto_tile`). A CUDA out-of-memory error
            halves it and retries.
        region : (slice, slice), optional
            Compute only the output of these input rows and columns, reading the rest
            of the image as context. Bounds must be multiples of
            :func:`napari_mzsr.core.tiling.grid_step` of the scale, or the image end.
        ensemble : {None, "mean", "median"}
            Geometric self-ensemble (:func:`napari_mzsr.core.refinement.self_ensemble`)
            over the flips and rotations that leave the adaptation kernel unchanged,
            combined by the mean or median; None runs the image once.
        back_projection : int, None or "auto"
            Iterations of back-projection with the adaptation kernel
            (:func:`napari_mzsr.core.refinement.back_project`), done on the whole image
            after the tiles; 0 turns it off. Not with ``region``. None or "auto" (default):
            :data:`PHOTO_BACK_PROJECTION` (1) under the photo assumption, else 0
            (:meth:`back_projection_for`).

        Returns
        -------
        ndarray, shape (ceil(H * sy), ceil(W * sx)[, C])
            Or the output of ``region``.
        """
        data = image_data(image, rgb=rgb, normalization=self.intensity)
        options = ApplyOptions(output_dtype, tile, ensemble, back_projection)
        return self.render(data, options, region)

    def render(
        self, image: ImageData, options: ApplyOptions, region: Region | None = None
    ) -> np.ndarray:
        """:meth:`apply` for a checked 2-D image and checked options (the pipeline's
        entry; nothing is checked again). Its intensity map must be this model's."""
        iterations = self.back_projection_for(options.back_projection, region)
        options = replace(options, back_projection=iterations)
        self.back_projection_used = iterations
        if not self.uses_network:
            options = replace(options, ensemble=None)
        dtype = image.intensity.dtype if options.output_dtype is None else options.output_dtype
        if self.device.type == "cpu":
            self.threads_used["inference"] = use_threads(self.threads, stage="inference")
        shape = image.shape
        margin = tile_margin(self.scale, self.info.radius)
        tile = options.tile
        if tile is None:
            info = self.info
            tile = auto_tile(self.device, self.scale, info.features, info.channels, margin)
        out_shape = region_output_shape(shape, self.scale, region)
        channels = image.array.shape[-1] if image.rgb else None
        result = np.empty(out_shape + ((channels,) if channels else ()), dtype)
        colors = (slice(0, 3),) if image.rgb else ()
        clamp = self.intensity.unit_range
        # Back-projection needs the whole result in network units before mapping it back.
        unit_sr = None
        if options.back_projection:
            unit_sr = np.empty(out_shape + ((3,) if image.rgb else ()), np.float32)

        def super_resolve_tile(t: Tile) -> None:
            x = to_batch(image.unit(t.window), self.info.channels).to(self.device)
            sr = self._upscale(x, options.ensemble, clamp)
            unit = from_batch(sr[..., t.crop[0], t.crop[1]], image.rgb)
            if not np.isfinite(unit).all():
                # Never hand back NaN as a result; say what to change instead.
                raise ValueError(
                    "the adapted network gave non-finite values; lower the learning rate (lr)"
                )
            if unit_sr is None:
                result[(*t.target, *colors)] = self.intensity.inverse(unit, dtype)
            else:
                unit_sr[t.target] = unit

        tile = for_each_tile(super_resolve_tile, shape, self.scale, margin, tile, region)
        if unit_sr is not None:
            refined = self._back_project(unit_sr, image, options.back_projection, clamp)
            result[(slice(None), slice(None), *colors)] = self.intensity.inverse(refined, dtype)
        if image.has_alpha:

            def resize_alpha_tile(t: Tile) -> None:
                up = _resize_alpha(image.read(t.window, alpha=True), self.scale, dtype)
                result[t.target[0], t.target[1], 3] = up[t.crop[0], t.crop[1]]

            for_each_tile(resize_alpha_tile, shape, self.scale, margin, tile, region)
        return result

    def _upscale(
        self, x: torch.Tensor, ensemble: str | None, clamp: tuple[float, float]
    ) -> torch.Tensor:
        if not self.uses_network:
            return imresize_tensor(x, self.scale, kernel=FALLBACK_KERNEL).clamp_(*clamp)

        def upscale(batch: torch.Tensor) -> torch.Tensor:
            return infer(self.net, batch, self.scale, self.autocast_dtype, clamp=clamp)

        if ensemble is None:
            return upscale(x)
        # Without a known kernel, trust all eight transforms (an isotropic blur).
        transforms = TRANSFORMS if self.kernel is None else kernel_symmetries(self.kernel)
        return self_ensemble(upscale, x, self.scale, self.info.degradation, transforms, ensemble)

    def _back_project(
        self, unit_sr: np.ndarray, image: ImageData, iterations: int, clamp: tuple[float, float]
    ) -> np.ndarray:
        """Back-project the result in network units (H, W[, 3]) onto the input."""
        kernel = torch.from_numpy(self.kernel).float().to(self.device)
        # One image of all its colours: back-projection works channel by channel.
        channels = 3 if image.rgb else 1
        lr = to_batch(image.unit(), channels).to(self.device)
        sr = to_batch(unit_sr, channels).to(self.device)
        degradation = PHOTO_DEGRADATION if self.photo_assumption else self.info.degradation
        try:
            sr = back_project(sr, lr, kernel, self.scale, degradation, iterations, clamp)
        except torch.cuda.OutOfMemoryError:
            # The whole image at once (no tiles): the CPU's memory is the larger.
            torch.cuda.empty_cache()
            cpu = torch.device("cpu")
            sr = back_project(sr.to(cpu), lr.to(cpu), kernel.to(cpu), self.scale, degradation,
                              iterations, clamp)  # fmt: skip
        return from_batch(sr.cpu(), image.rgb)


def _resize_alpha(alpha: np.ndarray, scale: tuple[float, float], dtype: np.dtype) -> np.ndarray:
    """The alpha channel resized bicubically (it is not learned), as ``dtype``."""
    imap = intensity_map(alpha, "dtype") if alpha.dtype.kind in "ui" else None
    unit = imap.forward(alpha) if imap else alpha.astype(np.float32)
    up = imresize_tensor(torch.from_numpy(unit)[None], scale)[0].clamp_(0, 1).numpy()
    return imap.inverse(up, dtype) if imap else up.astype(dtype)
