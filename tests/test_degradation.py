import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from scipy.io import loadmat

from napari_mzsr import degrade, gaussian_kernel, imresize
from napari_mzsr.core.degradation import blur_tensor, decimated_axes, degrade_tensor
from napari_mzsr.core.resize import imresize_tensor


def test_conformance_with_official_lr_inputs(data_dir, set5):
    """Bit-exact reproduction of MZSR's official Set5 g^d_2.0 inputs (REFERENCE s. 2)."""
    kernel = loadmat(data_dir / "mzsr_g20_set5" / "kernel.mat")["kernel"]
    for name, hr in set5.items():
        lr = degrade(hr / 255.0, kernel, 2, "direct")
        lr8 = np.rint(np.clip(lr, 0, 1) * 255).astype(np.uint8)
        official = np.asarray(Image.open(data_dir / "mzsr_g20_set5" / f"{name}.png"))
        assert lr8.shape == official.shape, name
        assert np.abs(lr8.astype(int) - official).max() == 0, name


def test_float32_tensor_path_matches_fixture_closely(data_dir, set5):
    kernel = torch.from_numpy(loadmat(data_dir / "mzsr_g20_set5" / "kernel.mat")["kernel"])
    hr = torch.from_numpy(set5["bird"] / 255.0).permute(2, 0, 1)[None].float()
    lr = degrade_tensor(hr, kernel.float(), 2)[0].permute(1, 2, 0).numpy()
    official = np.asarray(Image.open(data_dir / "mzsr_g20_set5" / "bird.png"))
    diff = np.abs(np.rint(np.clip(lr, 0, 1) * 255) - official)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_blur_matches_scipy_correlate_for_asymmetric_kernel():
    rng = np.random.default_rng(0)
    img = rng.random((13, 9))  # smaller than twice the padding: mirroring must wrap
    k = rng.random((11, 11))
    k /= k.sum()
    ours = blur_tensor(torch.from_numpy(img)[None, None], torch.from_numpy(k))[0, 0]
    np.testing.assert_allclose(ours.numpy(), ndimage.correlate(img, k, mode="reflect"))


def test_bicubic_method_is_blur_then_imresize():
    img = np.random.default_rng(0).random((20, 24, 3))
    k = gaussian_kernel(1.3)
    blurred = np.stack([ndimage.correlate(img[..., c], k, mode="reflect") for c in range(3)], -1)
    np.testing.assert_allclose(degrade(img, k, 2, "bicubic"), imresize(blurred, 0.5))


def test_shapes_and_noninteger_direct():
    img = np.zeros((25, 31))
    k = gaussian_kernel(1.0, size=7)
    assert degrade(img, k, 2).shape == (13, 16)
    assert degrade(img, k, 4).shape == (7, 8)
    assert degrade(img, k, 2.5).shape == (10, 13)
    assert degrade(img, k, (2, 3), "bicubic").shape == (13, 11)
    assert degrade(img, k, (2.2, 4.2)).shape == (12, 8)
    assert degrade(img, k, (3.5, 1)).shape == (8, 31)


def test_noninteger_direct_is_blur_then_bicubic_per_axis():
    """The convention for factors without a decimation: integer axes keep [0::s] (up to
    float rounding: torch sums the blur), the others get the MATLAB bicubic downscale of the
    blurred image."""
    img = np.random.default_rng(1).random((30, 28, 3))
    k = gaussian_kernel(1.7, 0.9, 0.4, size=9)
    blurred = np.stack([ndimage.correlate(img[..., c], k, mode="reflect") for c in range(3)], -1)
    np.testing.assert_allclose(degrade(img, k, 2.5), imresize(blurred, 1 / 2.5), atol=1e-12)
    np.testing.assert_allclose(degrade(img, k, 2.5, "bicubic"), degrade(img, k, 2.5))
    mixed = degrade(img, k, (2, 3.5))
    # torch's float64 convolution against scipy's correlate: the same sums in another order.
    np.testing.assert_allclose(mixed, imresize(blurred[::2], (1, 1 / 3.5)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(degrade(img, k, (3, 1)), blurred[::3], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(degrade(img, k, (2.0 + 1e-12, 2)), degrade(img, k, 2))
    assert decimated_axes((2, 3.5)) == (True, False)
    assert decimated_axes((1.5, 4), "bicubic") == (False, False)


def test_input_untouched_and_errors():
    img = np.random.default_rng(0).random((16, 16))
    before = img.copy()
    degrade(img, gaussian_kernel(2.0, size=5), 2)
    np.testing.assert_array_equal(img, before)
    with pytest.raises(ValueError, match="method"):
        degrade(img, gaussian_kernel(2.0), 2, "nearest")
    with pytest.raises(ValueError, match=">= 1"):
        degrade(img, gaussian_kernel(2.0), 0.5)
    with pytest.raises(ValueError, match="odd"):
        degrade(img, np.ones((4, 4)), 2)


def test_area_degradation_averages_blocks_with_bicubic_centres():
    """Area averaging (the photo preset's subsampling): the mean of s x s blocks for an
    integer factor, and MATLAB's box resize (same pixel centres as bicubic) otherwise."""
    img = np.random.default_rng(3).random((24, 30, 3))
    blocks = img.reshape(8, 3, 10, 3, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(degrade(img, np.ones((1, 1)), 3, "area"), blocks, atol=1e-12)
    k = gaussian_kernel(1.0, size=5)
    blurred = np.stack([ndimage.correlate(img[..., c], k, mode="reflect") for c in range(3)], -1)
    np.testing.assert_allclose(
        degrade(img, k, 2, "area"), blurred.reshape(12, 2, 15, 2, 3).mean(axis=(1, 3)), atol=1e-12
    )
    ramp = np.tile(np.arange(50.0), (10, 1))
    # Non-integer: each LR pixel is the mean over its footprint, centred on (i + 0.5) s
    # - 0.5; the pixels cut by its edges weigh by their overlap (no shift on average).
    centres = (np.arange(2, 18) + 0.5) * 2.5 - 0.5
    sampled = degrade(ramp, np.ones((1, 1)), 2.5, "area")[2, 2:-2]
    assert np.abs(sampled - centres).max() <= 0.05 + 1e-9
    assert abs(np.mean(sampled - centres)) < 0.01
    with pytest.raises(ValueError, match="resize kernel"):
        imresize_tensor(torch.zeros(1, 4, 4), 0.5, kernel="lanczos")
