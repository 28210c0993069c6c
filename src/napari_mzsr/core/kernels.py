"""Blur kernels: Gaussian construction, the paper's presets, loading and validation.

Convention (REFERENCE section 2): a kernel is a 2D float64 array of odd size whose centre
is the middle pixel ``(size // 2, size // 2)``; it is applied by *correlation* and is never
shifted by half a pixel. Kernels from tools that shift them (ZSSR, KernelGAN) must be
re-centred with :func:`center_kernel` before use.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_KERNEL_SIZE = 101
# The kernel spec that asks for an estimate from the image itself; only the functions
# that see the image (napari_mzsr.api) can resolve it.
ESTIMATE = "estimate"
# The kernel spec (and the meaning of None) for an image of unknown origin: the "photo"
# preset's assumption, with the noise matched and the result self-checked
# (napari_mzsr.pipeline.auto).
AUTO = "auto"


@dataclass(frozen=True)
class KernelPreset:
    """A named degradation: a Gaussian blur and the subsampling after it.

    The paper's Table 2 kernels (REFERENCE section 4) and two assumptions about an
    image's origin for users who know it (``"photo"``, ``"microscope"``); ``size`` 1
    is no blur at all.
    """

    name: str
    l1: float
    l2: float
    theta: float
    degradation: str
    size: int = 21
    description: str = ""

    def kernel(self) -> np.ndarray:
        return gaussian_kernel(self.l1, self.l2, self.theta, size=self.size)


PRESETS: dict[str, KernelPreset] = {
    p.name: p
    for p in (
        KernelPreset(
            "photo", 1.0, 1.0, 0.0, "area", size=1,
            description="downscaled by software or a camera (area, bicubic, Lanczos): no blur "
            "beyond area averaging, the sharpest of them (a bicubic model adapted to it)",
        ),
        KernelPreset(
            "microscope", 2.0, 2.0, 0.0, "direct",
            description="optical blur of variance 2 px^2 at the result's pixel size, then "
            "direct subsampling (a camera pixel every s pixels; the paper's g^d_2.0)",
        ),
        KernelPreset("g^d_0.2", 0.2, 0.2, 0.0, "direct", description="paper Table 2"),
        KernelPreset("g^d_2.0", 2.0, 2.0, 0.0, "direct", description="paper Table 2"),
        KernelPreset("g^d_ani", 4.0, 1.0, -0.5, "direct", description="paper Table 2"),
        KernelPreset("g^b_1.3", 1.3, 1.3, 0.0, "bicubic", description="paper Table 2"),
    )
}  # fmt: skip


def gaussian_kernel(
    l1: float, l2: float | None = None, theta: float = 0.0, size: int = 21
) -> np.ndarray:
    """Anisotropic Gaussian blur kernel with the paper's covariance convention.

    ``Sigma = R(theta) diag(l1, l2) R(theta)^T`` and ``k(x) ~ exp(-x^T Sigma^-1 x / 2)``
    on a ``size x size`` grid centred on the middle pixel, normalised to sum 1.

    Parameters
    ----------
    l1 : float
        Variance (not standard deviation) along the first principal axis, in pixels^2.
    l2 : float, optional
        Variance along the second axis; defaults to ``l1`` (isotropic kernel).
    theta : float
        Rotation of the first principal axis in radians, counter-clockwise from the
        x (column) axis.
    size : int
        Odd side length of the kernel grid.

    Returns
    -------
    kernel : ndarray of float64, shape (size, size)
        Non-negative, sums to 1.

    Examples
    --------
    >>> k = gaussian_kernel(2.0)            # g^d_2.0, sigma = sqrt(2)
    >>> k.shape, round(float(k.sum()), 12)
    ((21, 21), 1.0)
    >>> k_ani = gaussian_kernel(4.0, 1.0, theta=-0.5)
    """
    if l2 is None:
        l2 = l1
    for name, value in (("l1", l1), ("l2", l2), ("theta", theta)):
        if not math.isfinite(value):
            raise ValueError(f"kernel {name} must be finite, got {value!r}")
    if l1 <= 0 or l2 <= 0:
        raise ValueError(f"kernel variances must be positive, got l1={l1}, l2={l2}")
    check_kernel_size(size)
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    sigma = rotation @ np.diag([l1, l2]) @ rotation.T
    inv_sigma = np.linalg.inv(sigma)
    r = np.arange(size, dtype=np.float64) - size // 2
    # Grid as (x, y) with x along columns, so theta is measured from the image x axis.
    xx, yy = np.meshgrid(r, r)
    coords = np.stack([xx, yy], axis=-1)
    mahalanobis = np.einsum("...i,ij,...j->...", coords, inv_sigma, coords)
    kernel = np.exp(-0.5 * mahalanobis)
    return kernel / kernel.sum()


def model_subsampling(degradation: str) -> str:
    """The subsampling of the models made for data subsampled by ``degradation``: area
    averaging has bicubic's pixel centres, so its models are the bicubic ones."""
    return "bicubic" if degradation == "area" else degradation


def preset_kernel(name: str) -> np.ndarray:
    """Kernel of one of the paper's named test presets (``g^d_0.2``, ``g^d_2.0``,
    ``g^d_ani``, ``g^b_1.3``); see :data:`PRESETS` for their degradation method.

    Examples
    --------
    >>> preset_kernel("g^d_2.0").shape
    (21, 21)
    """
    try:
        return PRESETS[name].kernel()
    except KeyError:
        raise ValueError(
            f"unknown kernel preset {name!r}; choose one of {', '.join(PRESETS)}"
        ) from None


def validate_kernel(kernel: np.ndarray) -> np.ndarray:
    """Check a blur kernel and return a float64 copy normalised to sum 1.

    Raises
    ------
    ValueError
        If the kernel is not a square 2D array of odd size between 1 and
        ``MAX_KERNEL_SIZE``, holds non-finite or clearly negative values, or sums to
        (nearly) zero.

    Examples
    --------
    >>> validate_kernel(np.ones((3, 3))).sum()
    1.0
    """
    k = np.asarray(kernel)
    if k.dtype == bool or not np.issubdtype(k.dtype, np.number):
        raise ValueError(f"kernel must be a numeric array, got dtype {k.dtype}")
    if np.iscomplexobj(k):
        raise ValueError("kernel must be real, got a complex array")
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"kernel must be a square 2D array, got shape {k.shape}")
    check_kernel_size(k.shape[0])
    k = k.astype(np.float64)
    if not np.all(np.isfinite(k)):
        raise ValueError("kernel contains NaN or infinite values")
    total = k.sum()
    if abs(total) < 1e-12 * max(1.0, np.abs(k).sum()) or total <= 0:
        raise ValueError(f"kernel must have a positive sum, got {total:g}")
    negative_mass = -k[k < 0].sum()
    if negative_mass > 1e-3 * total:
        raise ValueError(
            f"kernel has negative mass ({negative_mass / total:.2%} of its sum); "
            "a blur kernel must be non-negative"
        )
    k = np.clip(k, 0.0, None)
    total = k.sum()
    # A kernel already normalised is returned as it is: dividing by a sum that is 1 up to
    # rounding would change its last bits by an amount that depends on the CPU's SIMD width
    # (numpy's summation order), so a kernel checked twice would differ between machines.
    if abs(total - 1.0) <= k.size * np.finfo(np.float64).eps:
        return k
    return k / total


def load_kernel(path: str | Path) -> np.ndarray:
    """Load a blur kernel from ``.mat`` (variable ``kernel`` or ``Kernel``), ``.npy`` or
    ``.tif``/``.tiff`` and return it validated and normalised (float64, sums to 1).

    The kernel is used as stored: a kernel written by a tool that shifts kernels by half a
    pixel (KernelGAN) should be passed through :func:`center_kernel`.

    Examples
    --------
    >>> k = load_kernel("kernel.mat")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"kernel file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in (".mat", ".npy", ".tif", ".tiff"):
        raise ValueError(f"unsupported kernel file type {suffix!r}; use .mat, .npy or .tif")
    try:
        if suffix == ".mat":
            from scipy.io import loadmat

            contents = loadmat(path)
        elif suffix == ".npy":
            data = np.load(path, allow_pickle=False)
        else:
            import tifffile

            data = tifffile.imread(path)
    except Exception as exc:
        raise ValueError(f"could not read kernel file {path}: {exc}") from exc
    if suffix == ".mat":
        names = [k for k in contents if not k.startswith("__")]
        key = next((k for k in ("kernel", "Kernel") if k in contents), None)
        if key is None:
            raise ValueError(f"{path.name} has no variable 'kernel' or 'Kernel' (found: {names})")
        data = contents[key]
    return validate_kernel(np.squeeze(np.asarray(data)))


def center_kernel(kernel: np.ndarray, size: int | None = None) -> np.ndarray:
    """Shift a kernel so that its centre of mass lies on the middle pixel.

    Converts kernels from tools that shift them by half a pixel (ZSSR, KernelGAN) to this
    project's convention. The shift is done by bilinear interpolation; ``size`` (odd)
    sets the output size (default: the input size, made odd).
    """
    from scipy import ndimage

    k = np.asarray(kernel, dtype=np.float64)
    if size is None:
        size = k.shape[0] if k.shape[0] % 2 else k.shape[0] + 1
    check_kernel_size(size)
    canvas = np.zeros((size + 4, size + 4))
    oy, ox = (canvas.shape[0] - k.shape[0]) // 2, (canvas.shape[1] - k.shape[1]) // 2
    canvas[oy : oy + k.shape[0], ox : ox + k.shape[1]] = k
    com = np.array(ndimage.center_of_mass(canvas))
    shifted = ndimage.shift(canvas, (canvas.shape[0] // 2) - com, order=1)
    return validate_kernel(shifted[2:-2, 2:-2])


def kernel_covariance(kernel: np.ndarray) -> np.ndarray:
    """Second central moment (2x2, in (x, y) order) of a kernel, in pixels^2.

    For a Gaussian that is not truncated by its grid this equals ``Sigma``.
    """
    k = validate_kernel(kernel)
    r = np.arange(k.shape[0], dtype=np.float64) - k.shape[0] // 2
    xx, yy = np.meshgrid(r, r)
    mx, my = (k * xx).sum(), (k * yy).sum()
    dx, dy = xx - mx, yy - my
    cxy = (k * dx * dy).sum()
    return np.array([[(k * dx * dx).sum(), cxy], [cxy, (k * dy * dy).sum()]])


def check_kernel_size(size: int) -> None:
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool):
        raise ValueError(f"kernel size must be an integer, got {size!r}")
    if size % 2 == 0:
        raise ValueError(f"kernel size must be odd so that it has a centre pixel, got {size}")
    if not 1 <= size <= MAX_KERNEL_SIZE:
        raise ValueError(f"kernel size must be between 1 and {MAX_KERNEL_SIZE}, got {size}")


def as_kernel(spec: object = None, size: int = 21) -> np.ndarray:
    """Turn any accepted kernel description into a validated kernel.

    Parameters
    ----------
    spec : ndarray, float, (l1, l2, theta), str, Path or None
        An explicit kernel array; an isotropic variance; an anisotropic Gaussian
        ``(l1, l2, theta)``; a preset name (``"g^d_2.0"``) or a file path (``.mat``,
        ``.npy``, ``.tif``); ``None`` or :data:`AUTO` for the default, the ``"photo"``
        preset's kernel (no blur: 1 x 1). :data:`ESTIMATE` (``"estimate"``) is refused here: it
        needs the image (see :func:`napari_mzsr.super_resolve`).
    size : int
        Grid size for kernels built from parameters.

    Examples
    --------
    >>> as_kernel(1.3).shape
    (21, 21)
    >>> np.allclose(as_kernel("g^d_ani"), gaussian_kernel(4.0, 1.0, -0.5))
    True
    """
    if spec is None or (isinstance(spec, str) and spec == AUTO):
        return PRESETS["photo"].kernel()
    if isinstance(spec, numbers.Real) and not isinstance(spec, bool):
        return gaussian_kernel(float(spec), size=size)
    if isinstance(spec, str) and spec == ESTIMATE:
        raise ValueError(
            f"kernel {ESTIMATE!r} needs the image: pass it to super_resolve or iter_adapt, "
            "or call napari_mzsr.estimate_kernel"
        )
    if isinstance(spec, str) and spec in PRESETS:
        return preset_kernel(spec)
    if isinstance(spec, str | Path):
        return load_kernel(spec)
    if isinstance(spec, tuple | list) and len(spec) == 3 and all(_is_number(v) for v in spec):
        l1, l2, theta = (float(v) for v in spec)
        return gaussian_kernel(l1, l2, theta, size=size)
    if isinstance(spec, np.ndarray | tuple | list):
        try:
            array = np.asarray(spec, dtype=np.float64)
        except (TypeError, ValueError):
            array = None
        if array is not None and array.ndim == 2:
            return validate_kernel(array)
        shape = "" if array is None else f" of shape {array.shape}"
        raise ValueError(
            f"cannot make a kernel from a {type(spec).__name__}{shape}: give a square 2D "
            f"array, a variance, (l1, l2, theta), a preset ({', '.join(PRESETS)}) or a file"
        )
    raise ValueError(
        f"cannot make a kernel from a {type(spec).__name__}: give an array, a variance, "
        f"(l1, l2, theta), a preset ({', '.join(PRESETS)}), a file path or {ESTIMATE!r}"
    )


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def stretch_kernel(kernel: np.ndarray, factors: tuple[float, float]) -> np.ndarray:
    """The Gaussian with ``kernel``'s covariance stretched by ``(fy, fx)`` per axis:
    ``Sigma' = D Sigma D`` with ``D = diag(fx, fy)`` in (x, y) order.

    Used for the steps of gradual super-resolution (the blur of a whole factor ``s``
    re-expressed for a step ``s_j``: ``factors = s_j / s`` per axis). A kernel whose
    stretched variances are both below 1e-3 px^2 becomes the 1x1 identity; otherwise
    the grid covers +-3 standard deviations (odd, at most :data:`MAX_KERNEL_SIZE`).

    Examples
    --------
    >>> k = stretch_kernel(gaussian_kernel(4.0), (0.5, 0.5))
    >>> bool(np.allclose(kernel_covariance(k), np.eye(2), atol=0.02)), k.shape
    (True, (7, 7))
    """
    fy, fx = (float(f) for f in factors)
    stretch = np.diag([fx, fy])
    covariance = stretch @ kernel_covariance(kernel) @ stretch
    values, vectors = np.linalg.eigh((covariance + covariance.T) / 2)
    if values[1] < 1e-3:
        return np.ones((1, 1))
    low = max(float(values[0]), 1e-3)
    size = min(2 * math.ceil(3 * math.sqrt(values[1])) + 1, MAX_KERNEL_SIZE)
    theta = math.atan2(vectors[1, 1], vectors[0, 1])
    return gaussian_kernel(float(values[1]), low, theta, size=size)
