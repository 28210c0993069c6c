"""Axial (Z) super-resolution of anisotropic stacks from their own lateral slices.

A Z stack ``(Z, Y, X)`` is sampled ``z_factor`` times more coarsely along Z than in Y and
X, and blurred more along Z. Its XY slices show the sample at full lateral resolution.
Degrading them along ONE axis the way Z was degraded (a 1-D Gaussian, then subsampling
by ``z_factor``) gives training pairs for the meta-test; the adapted network is then
applied to every XZ and YZ plane, whose Z axis is degraded in the same way.

Conventions
-----------
Degradation along the first image axis (rows, tensor axis -2) of an ``(..., H, W)``
array: correlate with a centred 1-D Gaussian of standard deviation ``sigma`` (in pixels
of the high-resolution axis, that is in lateral pixels; symmetric borders, truncated at
``int(4 sigma + 0.5)`` as :func:`scipy.ndimage.gaussian_filter1d`), then

- integer ``z_factor`` (``"direct"``): keep rows ``[0::z_factor]``, as
  :func:`napari_mzsr.core.degradation.degrade_tensor` (``"direct"``) with a column kernel
  (equal up to float rounding: the blur is computed as a 1-D convolution);
- any other factor (``"bicubic"``): the MATLAB bicubic downscale by ``1 / z_factor``
  (:func:`napari_mzsr.core.resize.imresize_tensor`), as ZSSR and ArbSR do.

Geometry (:func:`axial_positions`): with ``"direct"`` input slice ``i`` lies at output
slice ``i * z_factor``, so output slice ``j`` lies at input position ``j / z_factor``;
with ``"bicubic"``, output slice ``j`` lies at input position
``(j + 0.5) / z_factor - 0.5`` (both grids span the same extent). The output has
``round(Z * z_factor)`` slices (:func:`axial_output_length`, halves rounded up).

Orientation: during adaptation the degraded axis of a training pair is always tensor
axis -2 (an XY slice degraded along Y as it is, one degraded along X transposed), and
every XZ and YZ plane is fed with Z on axis -2, so the network learns one
restoration, specific to that axis.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from .adaptation import Clamp, StepReport, adapt, autocast, infer, prepare, prepare_net
from .kernels import MAX_KERNEL_SIZE
from .resize import imresize_tensor
from .scale_aware import receptive_radius
from .tiling import Tile, for_each_tile, region_output_shape, tile_margin

# Kernel radius in sigmas, as scipy.ndimage.gaussian_filter1d (truncate=4.0).
TRUNCATE = 4.0
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
# degrade_axial blurs this many lines of the array at a time.
_LINES_PER_CHUNK = 4096
# Factors within this distance of an integer count as that integer ("direct").
_INTEGER_TOLERANCE = 1e-9


def sigma_from_fwhm(fwhm: float) -> float:
    """Standard deviation of a Gaussian of full width at half maximum ``fwhm``.

    Examples
    --------
    >>> round(sigma_from_fwhm(2.3548), 3)
    1.0
    """
    if not (math.isfinite(fwhm) and fwhm >= 0):
        raise ValueError(f"fwhm must be a finite number >= 0, got {fwhm!r}")
    return fwhm / FWHM_PER_SIGMA


def axial_kernel(sigma: float) -> np.ndarray:
    """Centred 1-D Gaussian of standard deviation ``sigma`` pixels, normalised to sum 1.

    Parameters
    ----------
    sigma : float
        >= 0; 0 gives the identity ``[1.0]``.

    Returns
    -------
    ndarray of float64, shape (2 * int(4 * sigma + 0.5) + 1,)
        The weights of :func:`scipy.ndimage.gaussian_filter1d` with the same sigma.

    Examples
    --------
    >>> axial_kernel(1.0).shape
    (9,)
    """
    if not (
        isinstance(sigma, (int, float, np.integer, np.floating)) and not isinstance(sigma, bool)
    ):
        raise ValueError(f"sigma must be a number, got {sigma!r}")
    sigma = float(sigma)
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    radius = int(TRUNCATE * sigma + 0.5)
    if 2 * radius + 1 > MAX_KERNEL_SIZE:
        limit = ((MAX_KERNEL_SIZE // 2) - 0.5) / TRUNCATE
        raise ValueError(f"sigma must be at most {limit:g} pixels, got {sigma:g}")
    if radius == 0:
        return np.ones(1)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (x / sigma) ** 2)
    return weights / weights.sum()


def column_kernel(kernel_1d: np.ndarray) -> np.ndarray:
    """The square 2-D kernel that blurs along rows only: ``kernel_1d`` down the middle
    column, zeros elsewhere (float64, shape (k, k))."""
    k = np.asarray(kernel_1d, dtype=np.float64)
    square = np.zeros((k.size, k.size))
    square[:, k.size // 2] = k
    return square


def is_integer_factor(z_factor: float) -> bool:
    return abs(z_factor - round(z_factor)) < _INTEGER_TOLERANCE * max(1.0, z_factor)


def axial_method(z_factor: float) -> str:
    """``"direct"`` for an integer factor, ``"bicubic"`` otherwise (module docstring)."""
    return "direct" if is_integer_factor(z_factor) else "bicubic"


def check_z_factor(z_factor: object, low: float = 1.0, high: float = math.inf) -> float:
    """``z_factor`` as a float, checked to be a finite number in ``(low, high]``."""
    if isinstance(z_factor, bool) or not isinstance(
        z_factor, (int, float, np.integer, np.floating)
    ):
        raise ValueError(f"z_factor must be a number, got {z_factor!r}")
    value = float(z_factor)
    if not (math.isfinite(value) and low < value <= high):
        raise ValueError(f"z_factor must be a finite number in ({low:g}, {high:g}], got {value!r}")
    if is_integer_factor(value):
        value = float(round(value))
    return value


def axial_output_length(length: int, z_factor: float) -> int:
    """Output slices of ``length`` input slices: ``round(length * z_factor)``, halves up.

    Examples
    --------
    >>> axial_output_length(16, 4), axial_output_length(7, 2.5), axial_output_length(5, 2.25)
    (64, 18, 11)
    """
    # The tolerance keeps 0.29 * 100 = 28.999999999999996 at 29.
    return max(1, math.floor(length * z_factor + 0.5 + 1e-9))


def axial_positions(length_out: int, z_factor: float) -> np.ndarray:
    """Input Z position (in input slices, slice ``i`` at ``i``) of each output slice.

    ``j / z_factor`` for an integer factor ("direct"), ``(j + 0.5) / z_factor - 0.5``
    otherwise ("bicubic"). Float64, shape (length_out,).

    Examples
    --------
    >>> axial_positions(8, 4)
    array([0.  , 0.25, 0.5 , 0.75, 1.  , 1.25, 1.5 , 1.75])
    >>> axial_positions(3, 2.5)
    array([-0.3,  0.1,  0.5])
    """
    j = np.arange(length_out, dtype=np.float64)
    if axial_method(z_factor) == "direct":
        return j / z_factor
    return (j + 0.5) / z_factor - 0.5


def degrade_axial_tensor(x: torch.Tensor, sigma: float, z_factor: float) -> torch.Tensor:
    """Blur ``x`` (N, C, H, W), float, along H with a Gaussian of ``sigma`` pixels and
    subsample H by ``z_factor`` (module docstring). Not clipped.

    Returns
    -------
    Tensor, shape (N, C, ceil(H / z_factor), W), same dtype and device
    """
    blurred = blur_axial_tensor(x, sigma)
    if axial_method(z_factor) == "bicubic":
        return imresize_tensor(blurred, (1.0 / z_factor, 1.0))
    return blurred[..., :: round(z_factor), :]


def blur_axial_tensor(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Correlate every column of ``x`` (N, C, H, W) with :func:`axial_kernel`, symmetric
    borders: :func:`napari_mzsr.core.degradation.blur_tensor` with :func:`column_kernel`,
    computed as a 1-D convolution (a k x k one costs k times more and, in float64,
    an im2col buffer of k^2 values per pixel)."""
    kernel = axial_kernel(sigma)
    pad = kernel.size // 2
    if pad == 0:
        return x.clone()
    # Half-sample symmetric indices (d c b a | a b c d | d c b a), for any pad.
    index = np.pad(np.arange(x.shape[-2]), pad, mode="symmetric")
    padded = x.index_select(-2, torch.from_numpy(index).to(x.device))
    n, c = x.shape[:2]
    weight = torch.from_numpy(kernel).to(x).reshape(1, 1, -1, 1).expand(c, 1, -1, 1)
    return torch.nn.functional.conv2d(padded, weight, groups=c).reshape(n, c, *x.shape[-2:])


def degrade_axial(array: np.ndarray, sigma: float, z_factor: float, *, axis: int = 0) -> np.ndarray:
    """Axial degradation of an N-D array along ``axis`` (see the module docstring).

    Parameters
    ----------
    array : ndarray
        Real values of any shape (e.g. an isotropic volume (Z, Y, X)); computed in
        float64, not rescaled, not clipped, never modified.
    sigma : float
        Gaussian standard deviation along ``axis``, in input pixels (>= 0).
    z_factor : float
        Subsampling factor (>= 1).
    axis : int
        The axis to degrade.

    Returns
    -------
    ndarray of float64
        ``array``'s shape with ``axis`` of length ``ceil(n / z_factor)``.

    Examples
    --------
    >>> degrade_axial(np.zeros((64, 8, 8)), 2.0, 4).shape
    (16, 8, 8)
    """
    arr = np.asarray(array)
    if arr.dtype == bool or np.iscomplexobj(arr) or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"degrade_axial expects a real numeric array, got dtype {arr.dtype}")
    if arr.ndim < 1:
        raise ValueError("degrade_axial expects an array with at least one axis")
    moved = np.moveaxis(np.asarray(arr, dtype=np.float64), axis, -1)
    lines = moved.reshape(-1, moved.shape[-1])
    # Each line along `axis` becomes one column of a (1, 1, n, lines) image, a chunk of
    # lines at a time to bound the convolution's workspace.
    chunks = []
    for start in range(0, lines.shape[0], _LINES_PER_CHUNK):
        chunk = torch.from_numpy(np.ascontiguousarray(lines[start : start + _LINES_PER_CHUNK].T))
        chunks.append(degrade_axial_tensor(chunk[None, None], sigma, z_factor)[0, 0].T.numpy())
    out = np.concatenate(chunks).reshape(*moved.shape[:-1], -1)
    return np.moveaxis(out, -1, axis)


# --- adaptation -------------------------------------------------------------------------

OPTIMIZERS = ("adam", "sgd")


def axial_son(
    targets: torch.Tensor, sigma: float, z_factor: float, clamp: Clamp = (0.0, 1.0)
) -> torch.Tensor:
    """The network's training input for ``targets`` (N, C, h, w) in network units:
    degraded along h (:func:`degrade_axial_tensor`), clipped to ``clamp`` (the input
    type's range in network units) and resized back to (h, w) with MATLAB's bicubic,
    exactly as the meta-test's :func:`napari_mzsr.core.adaptation.make_son` does with a
    column kernel and the scale pair ``(z_factor, 1)``."""
    son = degrade_axial_tensor(targets, sigma, z_factor).clamp(*clamp)
    return imresize_tensor(son, (z_factor, 1.0), output_shape=targets.shape[-2:])


def patch_plan(
    slices: int,
    shape: tuple[int, int],
    size: int,
    patches: int,
    steps: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Which square patches of which XY slices each adaptation step fits.

    Parameters
    ----------
    slices : int
        XY slices to draw from.
    shape : (int, int)
        Slice height and width.
    size : int
        Patch side, at most ``min(shape)``.
    patches, steps : int
        Patches per step, adaptation steps.
    rng : numpy.random.Generator
        Random source of the slices and corners.

    Returns
    -------
    ndarray of int64, shape (steps, patches, 4)
        ``(slice, row, column, transposed)`` of each patch. ``transposed`` alternates
        between patches (and steps), so that every step sees both lateral axes in the
        role of Z equally often.
    """
    if not 1 <= size <= min(shape):
        raise ValueError(f"patches of {size} pixels do not fit in slices of {shape}")
    which = rng.integers(0, slices, size=(steps, patches))
    rows = rng.integers(0, shape[0] - size + 1, size=(steps, patches))
    cols = rng.integers(0, shape[1] - size + 1, size=(steps, patches))
    flip = (np.arange(steps)[:, None] + np.arange(patches)[None, :]) % 2
    return np.stack([which, rows, cols, flip], axis=-1).astype(np.int64)


def adapt_axial(
    net: torch.nn.Module,
    batches: Iterable[torch.Tensor],
    sigma: float,
    z_factor: float,
    steps: int,
    *,
    optimizer: str = "adam",
    lr: float | Callable[[int], float] = 1e-3,
    autocast_dtype: torch.dtype | None = None,
    clamp: Clamp = (0.0, 1.0),
) -> Iterator[StepReport]:
    """Adapt ``net`` in place to axial degradation, yielding after every step.

    Parameters
    ----------
    net : MZSRNet or ScaleAwareNet
        Holds theta_M (float32); updated in place. A scale-aware one bound to
        ``(z_factor, 1)`` (:func:`~napari_mzsr.core.scale_aware.bind_scale`).
    batches : iterable of Tensor, shape (B, C, h, w), float32 in network units
        One batch of targets per step (XY patches, the degraded axis on h), on the
        network's device; read lazily. Each is fitted from its son
        (:func:`axial_son`).
    sigma : float
        Axial Gaussian of this step, in pixels of the targets.
    z_factor : float
        Subsampling factor of this step.
    steps : int
        Adaptation steps.
    optimizer : {"adam", "sgd"}
        ``"adam"`` (as ZSSR; the default: on the phantom of ``benchmarks/axial.py`` it
        gained 3.5 dB over cubic interpolation in 100 steps where plain SGD at the
        model's rate gained nothing); ``"sgd"`` is the MZSR meta-test itself
        (:func:`napari_mzsr.core.adaptation.adapt` on patches: a step that raises the
        son loss is undone).
    lr : float or callable(step) -> float
        Learning rate (Adam's, or SGD's step schedule).
    autocast_dtype : torch.dtype or None
        Autocast dtype of the forward pass.
    clamp : (float, float)
        Range of valid values in network units: the sons are clipped to it.

    Yields
    ------
    napari_mzsr.core.adaptation.StepReport
        After each update; stop iterating to cancel.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    lr_at = lr if callable(lr) else (lambda _step: float(lr))
    if optimizer == "sgd":
        kernel = torch.from_numpy(column_kernel(axial_kernel(sigma))).float()
        kernel = kernel.to(next(net.parameters()).device)
        pending = iter(batches)
        yield from adapt(
            net,
            lambda _step: next(pending),
            kernel,
            (z_factor, 1.0),
            steps=steps,
            learning_rate=lr_at,
            degradation=axial_method(z_factor),
            autocast_dtype=autocast_dtype,
            whole_image=False,
            clamp=clamp,
        )
        return
    device = next(net.parameters()).device
    prepare_net(net, training=True)
    params = [p for p in net.parameters() if p.requires_grad]
    adam = torch.optim.Adam(params, lr=lr_at(0))
    net.train()
    for step, targets in zip(range(steps), batches, strict=False):
        for group in adam.param_groups:
            group["lr"] = lr_at(step)
        son_up = prepare(axial_son(targets, sigma, z_factor, clamp), training=True)
        with autocast(device, autocast_dtype):
            out = net(son_up)
        loss = (out.float() - prepare(targets, training=True)).abs().mean()
        adam.zero_grad(set_to_none=True)
        loss.backward()
        adam.step()
        yield StepReport(step, steps, lr_at(step), loss.detach())


# --- inference --------------------------------------------------------------------------


def infer_planes(
    net: torch.nn.Module,
    planes: torch.Tensor,
    z_factor: float,
    length_out: int,
    *,
    autocast_dtype: torch.dtype | None = None,
    tile: int | None = None,
    clamp: Clamp = (0.0, 1.0),
) -> torch.Tensor:
    """Super-resolve side planes along Z with an adapted network.

    Parameters
    ----------
    planes : Tensor, shape (N, C, Z, L), float32 in network units
        XZ or YZ planes with Z on axis -2, on the network's device.
    z_factor : float
        Factor along Z.
    length_out : int
        Output slices (at most ``ceil(Z * z_factor)``): the first ``length_out`` of
        MATLAB's ``ceil(Z * z_factor)``, whose positions follow ``z_factor``.
    tile : int, optional
        Tile side in input pixels (:mod:`napari_mzsr.core.tiling`): the same result
        up to float rounding; None runs the planes whole.
    clamp : (float, float)
        Range of valid values in network units (the input type's): the result is
        clipped to it.

    Returns
    -------
    Tensor, shape (N, C, length_out, L), float32 within ``clamp``
    """
    if tile is None:
        out = infer(net, planes, (z_factor, 1.0), autocast_dtype, clamp=clamp)
    else:
        out = _infer_tiled(net, planes, (z_factor, 1.0), autocast_dtype, tile, clamp)
    if length_out > out.shape[-2]:
        raise ValueError(f"length_out {length_out} exceeds the {out.shape[-2]} slices inferred")
    return out[..., :length_out, :]


def _infer_tiled(
    net: torch.nn.Module,
    image: torch.Tensor,
    scale: tuple[float, float],
    autocast_dtype: torch.dtype | None,
    tile: int,
    clamp: Clamp,
) -> torch.Tensor:
    """:func:`~napari_mzsr.core.adaptation.infer` in tiles of ``tile`` input pixels,
    each read with the margin its output depends on: the same result up to rounding."""
    shape = (image.shape[-2], image.shape[-1])
    margin = tile_margin(scale, network_radius(net))
    out = image.new_empty((*image.shape[:-2], *region_output_shape(shape, scale)))

    def process(t: Tile) -> None:
        sr = infer(net, image[..., t.window[0], t.window[1]], scale, autocast_dtype, clamp=clamp)
        out[..., t.target[0], t.target[1]] = sr[..., t.crop[0], t.crop[1]]

    for_each_tile(process, shape, scale, margin, tile)
    return out


def axial_step(
    net: torch.nn.Module,
    volume: torch.Tensor,
    z_factor: float,
    length_out: int,
    rows: slice,
    cols: slice,
    *,
    autocast_dtype: torch.dtype | None = None,
    tile: int | None = None,
    plane_batch: int = 16,
    clamp: Clamp = (0.0, 1.0),
) -> torch.Tensor:
    """One axial super-resolution step of (part of) a volume: every XZ and every YZ
    plane through ``rows`` x ``cols`` super-resolved along Z, the two results averaged.

    Parameters
    ----------
    net : MZSRNet or ScaleAwareNet
        Adapted network (:func:`adapt_axial`) with C channels; a scale-aware one bound
        to ``(z_factor, 1)``.
    volume : Tensor, shape (Z, H, W), float32 in network units
        The input, on the network's device. An output voxel at lateral position
        ``(y, x)`` reads the XZ plane ``y`` up to :func:`network_radius` pixels either
        side of ``x`` and the YZ plane ``x`` likewise along y, so ``volume`` must hold
        that much lateral context around ``rows`` x ``cols`` (or end where the stack ends).
    z_factor : float
        Factor along Z.
    length_out : int
        Output slices (see :func:`infer_planes`).
    rows, cols : slice
        The lateral region of ``volume`` to produce (steps of 1).
    tile : int, optional
        Tile side within a plane (see :func:`infer_planes`).
    plane_batch : int
        Planes per network call.
    clamp : (float, float)
        Range of valid values in network units (see :func:`infer_planes`).

    Returns
    -------
    Tensor, shape (length_out, len(rows), len(cols)), float32 within ``clamp``
    """
    channels = _net_channels(net)

    def planes_of(stack: torch.Tensor) -> torch.Tensor:
        # stack: (P, Z, L) planes -> (P, L', length_out) with the plane's lateral axis kept.
        outs = []
        for start in range(0, stack.shape[0], plane_batch):
            x = stack[start : start + plane_batch, None].expand(-1, channels, -1, -1)
            sr = infer_planes(
                net,
                x.contiguous(),
                z_factor,
                length_out,
                autocast_dtype=autocast_dtype,
                tile=tile,
                clamp=clamp,
            )
            outs.append(sr.mean(dim=1))
        return torch.cat(outs)

    xz = planes_of(volume[:, rows, :].permute(1, 0, 2))[:, :, cols]  # (ny, Z', nx)
    yz = planes_of(volume[:, :, cols].permute(2, 0, 1))[:, :, rows]  # (nx, Z', ny)
    return 0.5 * (xz.permute(1, 0, 2) + yz.permute(1, 2, 0))


def _net_channels(net: torch.nn.Module) -> int:
    return int(getattr(net, "channels", 1))


def network_radius(net: torch.nn.Module) -> int:
    """Receptive radius in output pixels of an MZSR or scale-aware network: one per
    3x3 layer, plus what its scale-aware adaptations add."""
    return receptive_radius(net.layers, getattr(net, "adaptation_layers", ()))


# --- voxel geometry ---------------------------------------------------------------------


def z_factor_from_scale(scale: Sequence[float]) -> float:
    """``z_factor`` of a stack from its voxel size ``(..., dz, dy, dx)`` (e.g. a napari
    layer's ``scale`` or a file's voxel size): ``dz / dy``, for square lateral pixels.

    Examples
    --------
    >>> z_factor_from_scale((0.8, 0.2, 0.2))
    4.0
    """
    if len(scale) < 3:
        raise ValueError(f"scale needs (dz, dy, dx), got {tuple(scale)!r}")
    dz, dy, dx = (float(s) for s in scale[-3:])
    if not all(math.isfinite(s) and s > 0 for s in (dz, dy, dx)):
        raise ValueError(f"voxel sizes must be finite and positive, got {(dz, dy, dx)!r}")
    if not math.isclose(dy, dx, rel_tol=1e-3):
        raise ValueError(f"lateral pixels must be square for an isotropic Z, got dy={dy}, dx={dx}")
    return dz / dy


def output_voxel_geometry(
    scale: Sequence[float], translate: Sequence[float], z_factor: float
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """World scale and translate of the output, so that it overlays the input.

    ``scale`` and ``translate`` end with the input's (z, y, x) entries (napari layer
    convention: world = translate + scale * index). The output's Z step is
    ``dz / z_factor``; its first slice lies at input position 0 ("direct") or
    ``0.5 / z_factor - 0.5`` ("bicubic") (:func:`axial_positions`).

    Examples
    --------
    >>> output_voxel_geometry((0.8, 0.2, 0.2), (5.0, 0.0, 0.0), 4)
    ((0.2, 0.2, 0.2), (5.0, 0.0, 0.0))
    """
    scale, translate = [float(s) for s in scale], [float(t) for t in translate]
    if len(scale) < 3 or len(translate) != len(scale):
        raise ValueError("scale and translate need the same length, at least 3 (z, y, x)")
    dz = scale[-3]
    scale[-3] = dz / z_factor
    translate[-3] += dz * float(axial_positions(1, z_factor)[0])
    return tuple(scale), tuple(translate)
