import math

import numpy as np
import pytest

from napari_mzsr import psnr, ssim
from napari_mzsr.core.metrics import luminance


def test_identical_images_give_infinite_psnr_and_unit_ssim():
    img = np.random.default_rng(0).integers(0, 256, (32, 40, 3)).astype(np.uint8)
    assert psnr(img, img) == math.inf
    assert ssim(img, img) == pytest.approx(1.0)


def test_known_psnr_value_on_gray():
    a = np.zeros((10, 10), np.uint8)
    b = a.copy()
    b[:5] = 10  # MSE = 50
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 50))


def test_luminance_formula_and_rounding():
    px = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], np.uint8)
    np.testing.assert_array_equal(luminance(px)[0], [81, 145, 41, 235])
    np.testing.assert_array_equal(luminance(px / 255.0), luminance(px))


def test_shave_ignores_borders():
    a = np.full((20, 20), 100, np.uint8)
    b = a.copy()
    b[0, :] = 0
    assert psnr(a, b, shave=1) == math.inf
    assert psnr(a, b) < 40


def test_ssim_decreases_with_noise():
    rng = np.random.default_rng(0)
    img = np.tile(np.linspace(0, 255, 64), (64, 1)).astype(np.uint8)
    values = [
        ssim(img, np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8))
        for sigma in (2, 10, 40)
    ]
    assert 1 > values[0] > values[1] > values[2] > 0


def test_metric_errors():
    with pytest.raises(ValueError, match="shape"):
        psnr(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="too small"):
        psnr(np.zeros((4, 4)), np.zeros((4, 4)), shave=2)
    with pytest.raises(ValueError, match="uint8 or float"):
        psnr(np.zeros((4, 4), np.int32), np.zeros((4, 4), np.int32))
    with pytest.raises(ValueError, match="11x11"):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)))


def test_ssim_matches_the_reference_gaussian_ssim():
    """The paper's SSIM (Gaussian window, sigma 1.5, population covariance) as
    scikit-image computes it, on the same Y channel."""
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (40, 52, 3)).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-25, 25, a.shape), 0, 255).astype(np.uint8)
    reference = structural_similarity(
        luminance(a), luminance(b), gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=255,
    )  # fmt: skip
    assert ssim(a, b) == pytest.approx(reference, abs=1e-9)


def test_floats_on_another_scale_are_refused():
    """0..255 floats used to score 4.4 dB against themselves divided by 255."""
    from napari_mzsr import psnr

    image = np.random.default_rng(0).integers(0, 256, (16, 16)).astype(np.float64)
    with pytest.raises(ValueError, match=r"float images in \[0, 1\].*from 0 to 255"):
        psnr(image, image / 255)
    # A result's overshoot is still clipped, not refused.
    assert psnr(np.full((8, 8), 1.2), np.ones((8, 8))) == float("inf")
