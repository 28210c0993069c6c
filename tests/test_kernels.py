import numpy as np
import pytest
from scipy.io import savemat

from napari_mzsr.core.kernels import (
    PRESETS,
    as_kernel,
    center_kernel,
    gaussian_kernel,
    kernel_covariance,
    load_kernel,
    preset_kernel,
    validate_kernel,
)


def test_isotropic_mass_symmetry_and_variance():
    k = gaussian_kernel(2.0, size=21)
    assert k.shape == (21, 21)
    assert k.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(k >= 0)
    np.testing.assert_allclose(k, k.T)
    np.testing.assert_allclose(k, k[::-1, ::-1])
    assert np.unravel_index(k.argmax(), k.shape) == (10, 10)
    np.testing.assert_allclose(kernel_covariance(k), np.diag([2.0, 2.0]), atol=1e-6)


def test_variances_not_sigmas():
    # l is a variance: the 1D profile of gaussian_kernel(4) falls to exp(-0.5) at x = 2.
    k = gaussian_kernel(4.0, size=21)
    assert k[10, 12] / k[10, 10] == pytest.approx(np.exp(-0.5))


@pytest.mark.parametrize("theta", [0.0, -0.5, 0.7, np.pi / 2])
def test_anisotropic_covariance_follows_rotation(theta):
    k = gaussian_kernel(4.0, 1.0, theta, size=31)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    expected = rot @ np.diag([4.0, 1.0]) @ rot.T
    np.testing.assert_allclose(kernel_covariance(k), expected, atol=1e-4)


def test_rotation_by_half_pi_transposes():
    a = gaussian_kernel(4.0, 1.0, 0.0)
    b = gaussian_kernel(4.0, 1.0, np.pi / 2)
    np.testing.assert_allclose(a, b.T, atol=1e-12)
    assert not np.allclose(a, b)


def test_presets_match_reference_table():
    assert set(PRESETS) == {"photo", "microscope", "g^d_0.2", "g^d_2.0", "g^d_ani", "g^b_1.3"}
    assert PRESETS["g^b_1.3"].degradation == "bicubic"
    # The assumptions for users who know their data: no blur and area averaging (photo);
    # the paper's g^d_2.0 (microscope, the default before the self-checked "auto").
    np.testing.assert_array_equal(PRESETS["photo"].kernel(), np.ones((1, 1)))
    assert PRESETS["photo"].degradation == "area"
    np.testing.assert_allclose(PRESETS["microscope"].kernel(), PRESETS["g^d_2.0"].kernel())
    np.testing.assert_allclose(preset_kernel("g^d_ani"), gaussian_kernel(4.0, 1.0, -0.5))
    np.testing.assert_allclose(preset_kernel("g^d_0.2"), gaussian_kernel(0.2))
    with pytest.raises(ValueError, match="unknown kernel preset"):
        preset_kernel("g^d_9")


def test_fixture_kernel_is_preset_g20(data_dir):
    k = load_kernel(data_dir / "mzsr_g20_set5" / "kernel.mat")
    np.testing.assert_allclose(k, preset_kernel("g^d_2.0"), atol=1e-9)


def test_load_formats(tmp_path):
    k = gaussian_kernel(1.5, 0.8, 0.3, size=15)
    savemat(tmp_path / "upper.mat", {"Kernel": k * 3})
    np.save(tmp_path / "k.npy", k)
    import tifffile

    tifffile.imwrite(tmp_path / "k.tif", k.astype(np.float32))
    for name in ("upper.mat", "k.npy", "k.tif"):
        np.testing.assert_allclose(load_kernel(tmp_path / name), k, atol=1e-7)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_kernel(tmp_path / "missing.npy")
    savemat(tmp_path / "other.mat", {"psf": np.ones((3, 3))})
    with pytest.raises(ValueError, match="no variable 'kernel'"):
        load_kernel(tmp_path / "other.mat")
    (tmp_path / "k.txt").write_text("1")
    with pytest.raises(ValueError, match="unsupported kernel file"):
        load_kernel(tmp_path / "k.txt")
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="could not read"):
        load_kernel(tmp_path / "bad.npy")


@pytest.mark.parametrize(
    ("kernel", "message"),
    [
        (np.full((3, 3), np.nan), "NaN"),
        (np.array([[0, -1, 0], [-1, 1, -1], [0, -1, 0]], float), "positive sum"),
        (np.array([[0, -0.5, 0], [0, 2, 0], [0, 0, 0]], float), "negative mass"),
        (np.zeros((3, 3)), "positive sum"),
        (np.ones((4, 4)), "odd"),
        (np.ones((3, 5)), "square"),
        (np.ones((201, 201)), "between 1 and"),
        (np.ones((3, 3), bool), "numeric"),
        (np.ones((3, 3), complex), "real"),
    ],
)
def test_validation_errors(kernel, message):
    with pytest.raises(ValueError, match=message):
        validate_kernel(kernel)


def test_validation_normalises_and_copies():
    raw = np.ones((3, 3))
    k = validate_kernel(raw)
    assert k.sum() == pytest.approx(1.0)
    assert raw.sum() == 9  # input untouched


def test_validation_is_idempotent_bit_for_bit():
    """A kernel checked twice (an estimate handed back as ``kernel=``) must not change:
    a second division by a sum that is 1 up to rounding moved its last bits by an amount
    that depends on the CPU's summation order, so two runs differed between machines."""
    rng = np.random.default_rng(7)
    for size in (3, 9, 21, 41):
        for _ in range(10):
            once = validate_kernel(rng.random((size, size)) ** 3)
            twice = validate_kernel(once)
            np.testing.assert_array_equal(twice, once)
            assert twice is not once
    # Further than rounding from 1: still normalised.
    assert validate_kernel(np.full((3, 3), 1.001 / 9)).sum() == pytest.approx(1.0, abs=1e-15)


def test_gaussian_parameter_errors():
    with pytest.raises(ValueError, match="positive"):
        gaussian_kernel(-1.0)
    with pytest.raises(ValueError, match="finite"):
        gaussian_kernel(float("inf"))
    with pytest.raises(ValueError, match="odd"):
        gaussian_kernel(1.0, size=20)


def test_as_kernel_specs(data_dir):
    np.testing.assert_array_equal(as_kernel(None), np.ones((1, 1)))  # "auto": the photo preset
    np.testing.assert_array_equal(as_kernel("auto"), np.ones((1, 1)))
    np.testing.assert_allclose(as_kernel("microscope"), gaussian_kernel(2.0))
    np.testing.assert_allclose(as_kernel(1.3), gaussian_kernel(1.3))
    np.testing.assert_allclose(as_kernel((4.0, 1.0, -0.5)), preset_kernel("g^d_ani"))
    np.testing.assert_allclose(as_kernel("g^b_1.3"), gaussian_kernel(1.3))
    assert as_kernel(str(data_dir / "mzsr_g20_set5" / "kernel.mat")).shape == (21, 21)
    with pytest.raises(ValueError, match="cannot make a kernel"):
        as_kernel(object())


def test_center_kernel_removes_half_pixel_shift():
    from scipy import ndimage

    k = gaussian_kernel(2.0, size=21)
    shifted = ndimage.shift(k, (0.5, 0.5), order=1)
    centred = center_kernel(shifted)
    com = ndimage.center_of_mass(centred)
    np.testing.assert_allclose(com, (10, 10), atol=1e-6)
