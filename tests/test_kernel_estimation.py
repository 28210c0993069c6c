"""Kernel estimation: recovery of known kernels, input handling, errors."""

import math

import numpy as np
import pytest

from napari_mzsr import degrade, gaussian_kernel
from napari_mzsr.core.kernel_estimation import MIN_IMAGE_SIDE, KernelEstimate, estimate_kernel
from napari_mzsr.core.kernels import as_kernel, kernel_covariance


def _power_law_image(size: int = 512, slope: float = 2.0, seed: int = 0) -> np.ndarray:
    """Grey texture in [0, 1] whose power spectrum is ``|f|^-slope`` (natural-image-like)."""
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(size)
    radius = np.hypot(*np.meshgrid(f, f, indexing="ij"))
    radius[0, 0] = 1.0
    spectrum = np.fft.fft2(rng.standard_normal((size, size))) * radius ** (-slope / 2)
    image = np.fft.ifft2(spectrum).real
    return (image - image.min()) / np.ptp(image)


def _lr(hr: np.ndarray, kernel: np.ndarray, method: str = "direct") -> np.ndarray:
    unit = hr.astype(np.float64) / (255.0 if hr.dtype == np.uint8 else 1.0)
    return np.rint(np.clip(degrade(unit, kernel, 2, method), 0, 1) * 255).astype(np.uint8)


def _error(estimate: KernelEstimate, kernel: np.ndarray) -> float:
    sigma = kernel_covariance(kernel)
    return float(np.linalg.norm(kernel_covariance(estimate.kernel) - sigma) / np.linalg.norm(sigma))


def _angle_gap(a: float, b: float) -> float:
    gap = abs(a - b) % math.pi
    return min(gap, math.pi - gap)


@pytest.mark.parametrize(
    ("params", "method", "tolerance"),
    [
        ((2.0, 2.0, 0.0), "direct", 0.1),
        ((4.0, 1.0, -0.5), "direct", 0.1),
        ((3.0, 1.5, 1.2), "direct", 0.1),
        ((1.3, 1.3, 0.0), "bicubic", 0.15),
    ],
)
def test_recovers_kernels_of_a_power_law_texture(params, method, tolerance):
    kernel = gaussian_kernel(*params)
    estimate = estimate_kernel(_lr(_power_law_image(), kernel, method), 2, method)
    assert _error(estimate, kernel) < tolerance
    assert 1.5 < estimate.slope < 2.5
    if params[0] != params[1]:
        assert _angle_gap(estimate.theta, params[2]) < 0.1


@pytest.mark.parametrize(
    ("stem", "params"),
    [("woman", (2.0, 2.0, 0.0)), ("head", (2.0, 2.0, 0.0)), ("woman", (4.0, 1.0, -0.5))],
)
def test_recovers_kernels_of_photographs(set5, stem, params):
    """Set5 images, the paper's g^d_2.0 and g^d_ani: covariance within 25 %, the
    anisotropic kernel's orientation within 0.2 rad."""
    hr = set5[stem][: set5[stem].shape[0] // 2 * 2, : set5[stem].shape[1] // 2 * 2]
    kernel = gaussian_kernel(*params)
    estimate = estimate_kernel(_lr(hr, kernel), 2)
    assert _error(estimate, kernel) < 0.25
    if params[0] != params[1]:
        assert _angle_gap(estimate.theta, params[2]) < 0.2
        assert estimate.l1 / estimate.l2 > 2.5


def test_result_is_a_valid_kernel_in_the_package_convention():
    lr = _lr(_power_law_image(256), gaussian_kernel(4.0, 1.0, -0.5))
    estimate = estimate_kernel(lr, 2, size=25)
    assert estimate.kernel.shape == (25, 25)
    assert math.isclose(estimate.kernel.sum(), 1.0)
    assert estimate.l1 >= estimate.l2 > 0 and 0 <= estimate.theta < math.pi
    np.testing.assert_allclose(as_kernel(estimate.params, size=25), estimate.kernel)
    np.testing.assert_allclose(
        estimate.covariance, kernel_covariance(gaussian_kernel(*estimate.params, size=101)),
        atol=1e-6,
    )  # fmt: skip
    assert estimate.describe().startswith("Gaussian, l1 ")


def test_input_kinds_agree_and_input_is_untouched():
    hr = _power_law_image(256)
    rgb = np.repeat(_lr(hr, gaussian_kernel(2.0))[..., None], 3, axis=-1)
    copy = rgb.copy()
    reference = estimate_kernel(rgb, 2)
    np.testing.assert_array_equal(rgb, copy)
    rgba = np.concatenate([rgb, np.full_like(rgb[..., :1], 255)], axis=-1)
    for image in (rgb[..., 0], rgba, rgb.astype(np.float32) / 255, rgb.astype(np.uint16) * 257):
        covariance = estimate_kernel(image, 2).covariance
        np.testing.assert_allclose(covariance, reference.covariance, atol=1e-5)


def test_isotropic_kernel_is_described_by_its_variance():
    estimate = estimate_kernel(_lr(_power_law_image(256, seed=3), gaussian_kernel(2.5)), 2)
    assert estimate.describe().startswith("Gaussian, variance ")


@pytest.mark.parametrize(
    ("image", "kwargs", "message"),
    [
        (np.zeros((64, 64)), {}, "constant"),
        (np.ones((MIN_IMAGE_SIDE - 1, 64)), {}, "too small"),
        (np.full((64, 64), np.nan), {}, "NaN"),
        (np.ones((2, 64, 64, 3)), {}, "expected a 2D"),
        (np.ones((64, 64), bool), {}, "boolean"),
        (np.ones((64, 64, 2)), {"rgb": True}, "RGB"),
        (np.eye(64), {"degradation": "nearest"}, "degradation"),
        (np.eye(64), {"scale": 0.5}, "scale"),
        (np.eye(64), {"scale": (2, 0.5)}, "scale"),
        (np.eye(64), {"window": 8}, "window"),
        (np.eye(64), {"size": 20}, "odd"),
    ],
)
def test_bad_input_gives_clear_errors(image, kwargs, message):
    with pytest.raises(ValueError, match=message):
        estimate_kernel(image, **{"scale": 2, **kwargs})


def test_as_kernel_refuses_estimate_and_points_to_the_api():
    with pytest.raises(ValueError, match="needs the image"):
        as_kernel("estimate")
