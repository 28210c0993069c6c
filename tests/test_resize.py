import math

import numpy as np
import pytest
import torch

from napari_mzsr import imresize, psnr
from napari_mzsr.core.resize import imresize_tensor, parse_scale


def test_identity_at_scale_one():
    img = np.random.default_rng(0).random((17, 23, 3))
    np.testing.assert_array_equal(imresize(img, 1), img)


def test_constant_stays_constant():
    img = np.full((9, 13), 0.37)
    for scale in (2, 0.5, 1.7, (3, 0.25)):
        np.testing.assert_allclose(imresize(img, scale), 0.37, atol=1e-14)


def test_ramp_exact_values_in_interior():
    # Keys' cubic reproduces linear functions, so away from the borders an upscaled ramp
    # must sit exactly on the MATLAB sample positions (i + 0.5) / s - 0.5.
    ramp = np.tile(np.arange(16, dtype=np.float64), (4, 1))
    out = imresize(ramp, 2)
    positions = (np.arange(32) + 0.5) / 2 - 0.5
    np.testing.assert_allclose(out[0, 4:-4], positions[4:-4], atol=1e-12)
    # Symmetric borders: the first sample reflects about the edge (not extrapolated).
    assert out[0, 0] > positions[0]


def test_downscale_antialias():
    # Antialiasing low-passes before decimating: white noise keeps far less variance
    # than with plain cubic sampling.
    noise = np.random.default_rng(0).random((64, 64))
    smooth = imresize(noise, 0.25)
    aliased = imresize(noise, 0.25, antialias=False)
    assert smooth.shape == aliased.shape == (16, 16)
    assert smooth.std() < 0.4 * aliased.std()
    stripes = np.tile(np.array([0.0, 1.0]), (8, 8))  # Nyquist stripes nearly vanish
    assert np.ptp(imresize(stripes, 0.5)[:, 1:-1]) < 0.03


@pytest.mark.parametrize(
    ("scale", "shape"),
    [(2, (20, 30)), (2.5, (25, 38)), ((1.5, 3), (15, 45)), (0.5, (5, 8)), (1 / 3, (4, 5))],
)
def test_output_shapes(scale, shape):
    assert imresize(np.zeros((10, 15)), scale).shape == shape


def test_ceil_guards_float_noise():
    assert imresize(np.zeros((300, 300)), 1 / 3).shape == (100, 100)


def test_batched_tensor_matches_numpy_and_dtypes():
    rng = np.random.default_rng(0)
    imgs = rng.random((2, 3, 12, 9))
    out = imresize_tensor(torch.from_numpy(imgs), 2.5)
    assert out.shape == (2, 3, 30, 23)
    single = imresize(imgs[1].transpose(1, 2, 0), 2.5)
    np.testing.assert_allclose(out[1].permute(1, 2, 0).numpy(), single, atol=1e-12)
    out32 = imresize_tensor(torch.from_numpy(imgs).float(), 2.5)
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.numpy(), out.numpy(), atol=1e-5)
    assert imresize(imgs[0, 0].astype(np.float32), 2).dtype == np.float32


def test_explicit_output_shape_keeps_scale_positions():
    img = np.random.default_rng(0).random((11, 11))
    a = imresize(img, 2, output_shape=(22, 22))
    b = imresize(img, 2)
    np.testing.assert_allclose(a, b)
    c = imresize(img, output_shape=(30, 12))
    assert c.shape == (30, 12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="positive"):
        parse_scale(0)
    with pytest.raises(ValueError, match="number or a pair"):
        parse_scale("2")
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        imresize(np.zeros(5), 2)
    with pytest.raises(ValueError, match="real numeric"):
        imresize(np.zeros((4, 4), complex), 2)
    with pytest.raises(TypeError, match="floating point"):
        imresize_tensor(torch.zeros(4, 4, dtype=torch.int64), 2)


@pytest.mark.parametrize(
    ("preset", "paper_db"),
    [("g^d_0.2", 30.24), ("g^d_2.0", 28.73), ("g^d_ani", 28.15), ("g^b_1.3", 30.54), (None, 33.64)],
)
def test_bicubic_column_of_the_paper(set5, preset, paper_db):
    """Bicubic interpolation of LR inputs made with the paper's kernels gives the
    paper's "Bicubic" PSNR on Set5 (REFERENCE section 4): checks resize, degradation and
    the metric protocol together."""
    from napari_mzsr import degrade
    from napari_mzsr.core.kernels import PRESETS

    values = []
    for hr8 in set5.values():
        hr = hr8[: hr8.shape[0] // 2 * 2, : hr8.shape[1] // 2 * 2] / 255.0
        if preset is None:
            lr = imresize(hr, 0.5)
        else:
            p = PRESETS[preset]
            lr = degrade(hr, p.kernel(), 2, p.degradation)
        lr = np.rint(np.clip(lr, 0, 1) * 255) / 255
        values.append(psnr(imresize(lr, 2), hr, shave=2))
    assert np.mean(values) == pytest.approx(paper_db, abs=0.015)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("freq", [0.0, 0.05, 0.1])
def test_bicubic_response_is_the_power_gain_of_the_downscale(scale, freq):
    """``bicubic_response`` (used by both kernel estimators) is |H|^2 of imresize's
    antialiased downscale by an integer factor: a cosine below the LR Nyquist comes out
    with its amplitude multiplied by |H| at the output positions."""
    from napari_mzsr.core.resize import bicubic_response

    n = 600
    x = np.cos(2 * np.pi * freq * np.arange(n))
    out = imresize(x[:, None], (1 / scale, 1))[:, 0]
    positions = scale * np.arange(out.size) + (scale - 1) / 2  # HR centre of each output
    inner = slice(10, -10)
    basis = np.stack([np.cos(2 * np.pi * freq * positions), np.sin(2 * np.pi * freq * positions)])
    coef, *_ = np.linalg.lstsq(basis[:, inner].T, out[inner], rcond=None)
    gain = np.hypot(*coef) if freq else out[inner].mean()
    assert bicubic_response(np.array([freq]), scale)[0] == pytest.approx(gain**2, rel=1e-6)


@pytest.mark.parametrize("scale", [2, 2.5, 3])
def test_lanczos3_upscale_matches_pil_inside_the_borders(scale):
    """Lanczos-3 (the self-check's fallback) against PIL's independent implementation
    (same kernel and pixel centres; PIL clamps at the borders where MATLAB mirrors)."""
    from PIL import Image

    img = np.random.default_rng(1).random((20, 30)).astype(np.float32)
    out = imresize(img, scale, kernel="lanczos3")
    pil = np.asarray(Image.fromarray(img).resize(out.shape[::-1], Image.LANCZOS))
    inner = (slice(math.ceil(3 * scale), -math.ceil(3 * scale)),) * 2
    np.testing.assert_allclose(out[inner], pil[inner], atol=1e-5)
    # Sharper than bicubic: it overshoots more on noise, and rings.
    assert out.std() > imresize(img, scale).std()
    with pytest.raises(ValueError, match="resize kernel must be one of"):
        imresize(img, 2, kernel="lanczos")
