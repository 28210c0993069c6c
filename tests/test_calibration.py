"""Few-shot calibration (DRTL): pair checks, distortions, relations, profiles."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from synthetic_pairs import scene as synthetic_scene
from tiny_models import save_tiny_model

from napari_mzsr.core import calibration as cal
from napari_mzsr.core.distortions import (
    Distortion,
    auxiliary_distortions,
    fit_kernel,
    motion_kernel,
    synthetic_batch,
)
from napari_mzsr.core.kernels import gaussian_kernel, kernel_covariance
from napari_mzsr.core.pair_checks import (
    aligned_scores,
    check_pair,
    interpolation_period,
    measure_pair,
    native_grid,
    phase_correlation,
)
from napari_mzsr.core.resize import imresize
from napari_mzsr.io.model_file import load_model, save_model
from napari_mzsr.pipeline.calibrate import calibrate_profile

pytestmark = pytest.mark.usefixtures("one_thread")


def scene(side: int = 192, seed: int = 0, channels: int = 3) -> np.ndarray:
    """A smooth random colour scene in [0, 1] with detail at every scale."""
    return synthetic_scene(side, seed, detail=(4, 8, 16), channels=channels)


def pair_from(hr: np.ndarray, distortion: Distortion, scale: float, seed: int = 0):
    t = torch.from_numpy(hr.astype(np.float32)).permute(2, 0, 1)[None]
    lr = distortion.apply(t, scale, np.random.default_rng(seed))
    return lr[0].permute(1, 2, 0).numpy(), hr.astype(np.float32)


# --- pair checks ---------------------------------------------------------------------


def test_phase_correlation_finds_a_subpixel_shift():
    base = scene(128, channels=1)[..., 0]
    moved = imresize(np.roll(base, (3, -5), axis=(0, 1)), 1.0)
    shift, peak = phase_correlation(moved, base)
    np.testing.assert_allclose(shift, [3, -5], atol=0.05)
    assert peak > 0.5


def test_registered_pair_is_accepted_with_its_ratio():
    hr = scene(240)
    lr = imresize(hr, 1 / 2.5)
    reg = check_pair(lr, hr, 2.5)
    assert abs(reg.ratio - 2.5) < 0.02
    assert reg.error < 0.3 and reg.correlation > 0.9


def test_shifted_pair_is_refused_and_the_message_gives_the_shift():
    big = scene(220)
    hr = big[:192, :192]
    lr = imresize(big[3:195, :192], 1 / 2)  # HR shows the scene 3 px lower than LR
    reg = measure_pair(lr, hr, 2.0)
    assert abs(reg.shift[0] - 3) < 0.2 and abs(reg.shift[1]) < 0.2
    with pytest.raises(ValueError, match="misregistered") as err:
        check_pair(lr, hr, 2.0, name="pair 2")
    message = str(err.value)
    assert "\n" not in message and message.startswith("pair 2: ")
    dy = float(re.search(r"shift \(([-+\d.]+),", message).group(1))
    assert abs(dy - 3) < 0.2


def test_pair_with_a_different_ratio_is_refused_with_the_ratio():
    # Same shapes as a x2 pair, but the LR content is zoomed out by 5 %.
    big = scene(256)
    hr = big[32:224, 32:224]
    wide = imresize(big[27:229, 27:229], 192 / 202)[:192, :192]
    lr = imresize(wide, 0.5)
    reg = measure_pair(lr, hr, 2.0)
    assert abs(reg.ratio - 2.0 * 202 / 192) < 0.03
    with pytest.raises(ValueError, match="misregistered") as err:
        check_pair(lr, hr, 2.0)
    ratio = float(re.search(r"ratio ([\d.]+) \(scale 2\)", str(err.value)).group(1))
    assert abs(ratio - reg.ratio) < 1e-3


def test_pair_whose_shapes_do_not_fit_the_scale_is_refused():
    hr = scene(192)
    with pytest.raises(ValueError, match=r"LR shape \(64, 64\) does not match HR shape"):
        check_pair(imresize(hr, 1 / 3), hr, 2.0)


def test_unrelated_images_are_refused():
    with pytest.raises(ValueError, match="do not show the same scene"):
        check_pair(imresize(scene(192, seed=1), 0.5), scene(192, seed=2), 2.0)


def test_interpolation_period_and_native_grid():
    coarse = np.random.default_rng(3).random((80, 96, 3))
    stored = imresize(coarse, 2.9)
    periods = interpolation_period(stored)
    np.testing.assert_allclose(periods, 2.9, atol=0.01)
    lr = native_grid(stored, 2.9)
    assert lr.shape[:2] == (80, 97)  # ceil(ceil(96 * 2.9) / 2.9): one column of slack
    lr = lr[:, :96]
    # Point sampling recovers the coarse grid far better than the antialiased downscale.
    err_native = np.abs(lr - coarse)[4:-4, 4:-4].mean()
    err_blurred = np.abs(imresize(stored, 1 / 2.9)[:, :96] - coarse)[4:-4, 4:-4].mean()
    assert err_native < 0.5 * err_blurred


def test_aligned_scores_find_the_integer_shift():
    ref = (scene(96) * 255).astype(np.uint8)
    moved = np.roll(ref, (1, -1), axis=(0, 1))
    score = aligned_scores(moved, ref, shave=2, search=1)
    assert score.shift == (1, -1) and math.isinf(score.psnr)
    assert aligned_scores(moved, ref, shave=2, search=0).psnr < 40


# --- distortions ---------------------------------------------------------------------


def test_motion_kernel_is_a_centred_line():
    k = motion_kernel(7.0, math.pi / 2)
    assert k.shape[0] % 2 == 1 and math.isclose(k.sum(), 1.0)
    centre = k.shape[0] // 2
    assert k[:, centre].sum() > 0.5  # vertical motion: mass in the middle column
    np.testing.assert_allclose(k, k[::-1], atol=1e-12)


def test_distortions_make_lr_images_of_the_right_size_and_kind():
    hr = torch.from_numpy(scene(96).astype(np.float32)).permute(2, 0, 1)[None]
    rng = np.random.default_rng(0)
    tasks = auxiliary_distortions(2.5)
    assert len({t.name for t in tasks}) == len(tasks) == 16
    for task in tasks:
        lr = task.apply(hr, 2.5, rng)
        assert lr.shape == (1, 3, 39, 39) and 0 <= lr.min() and lr.max() <= 1
    clean = Distortion("g", gaussian_kernel(2.5)).apply(hr, 2.5, rng)
    noisy = Distortion("g", gaussian_kernel(2.5), noise=5 / 255).apply(hr, 2.5, rng)
    jpeg = Distortion("g", gaussian_kernel(2.5), jpeg=20).apply(hr, 2.5, rng)
    assert 3 / 255 < (noisy - clean).std() < 7 / 255
    assert 0 < (jpeg - clean).abs().mean() < 0.1
    x, y = synthetic_batch(hr, tasks[0], 2.5, rng, margin=16)
    assert x.shape == y.shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match="jpeg quality"):
        Distortion("bad", gaussian_kernel(1.0), jpeg=0)


def test_fit_kernel_recovers_the_blur_of_real_like_pairs():
    truth = gaussian_kernel(4.0, 1.5, 0.6, size=11)
    blur = Distortion("truth", truth, "point", noise=0.002)
    rng = np.random.default_rng(5)
    # Fine detail everywhere, so that every tap is seen.
    textures = [np.clip(imresize(rng.random((80, 80, 3)), 2), 0, 1) for _ in range(2)]
    pairs = [pair_from(t, blur, 2.5, seed=s) for s, t in enumerate(textures)]
    pairs = [(0.9 * lr + 0.05, hr) for lr, hr in pairs]  # a tone change as well
    fitted = fit_kernel(pairs, 2.5, size=11)
    # The covariance (not each tap) is well determined by smooth scenes.
    np.testing.assert_allclose(kernel_covariance(fitted.kernel), kernel_covariance(truth), atol=0.2)
    assert abs(fitted.gain - 0.9) < 0.02 and abs(fitted.offset - 0.05) < 0.01
    assert fitted.residual < 0.01


# --- relations, DRTL and profiles -----------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("calibration") / "tiny.pt"
    return str(save_tiny_model(path, "tiny", features=8))


TOY_TASKS = (
    Distortion("sharp/direct", gaussian_kernel(0.2, size=3), "direct"),
    Distortion("wide", gaussian_kernel(6.0, size=15)),
    Distortion("motion", motion_kernel(6.0, 0.0, size=15)),
    Distortion("noisy", gaussian_kernel(1.0, size=15), noise=0.06),
)


@pytest.mark.parametrize("generator", range(len(TOY_TASKS)))
def test_relations_favour_the_distortion_that_made_the_target(tiny, generator):
    rng = np.random.default_rng(generator)
    truth = TOY_TASKS[generator]
    # Same kind of distortion, other noise draws: the target is not an exact copy.
    pairs = [pair_from(scene(192, seed=s), truth, 2.0, seed=10 + s) for s in range(2)]
    # Direct subsampling is half a pixel off MATLAB's grid: allow it.
    prepared = cal.prepare_pairs(pairs, 2.0, 3, holdout=0.0, max_error=3.0)
    net = load_model(tiny).network()
    sims = cal.measure_relations(net, prepared, TOY_TASKS, 2.0, rng, count=8, size=48)
    assert int(np.argmax(sims)) == generator, sims
    weights = cal.relation_weights(sims)
    assert int(np.argmax(weights)) == generator and math.isclose(weights.sum(), 1.0)


def test_relation_weights_drop_opposed_tasks():
    w = cal.relation_weights(np.array([0.5, -0.1, 0.2]), temperature=0.5)
    assert w[1] == 0 and w[0] > w[2] > 0
    assert not cal.relation_weights(np.array([-0.3, -0.1])).any()


@pytest.fixture(scope="module")
def toy_pairs():
    # Blur, noise and a tone change, as between two real shots: a tiny network learns
    # the tone in a few steps, so the test is quick and the gain large.
    truth = Distortion("truth", gaussian_kernel(2.0, 1.0, 0.5, size=15), noise=0.005)
    pairs = [pair_from(scene(192, seed=s), truth, 2.0, seed=s) for s in range(2)]
    return [(np.clip(0.8 * lr + 0.05, 0, 1).astype(np.float32), hr) for lr, hr in pairs]


@pytest.mark.parametrize("method", cal.METHODS)
def test_calibration_beats_the_starting_point_on_held_back_rows(tiny, toy_pairs, method):
    options = cal.CalibrationOptions(
        steps=30, lr=3e-3, batch=4, patch=32, relation_every=15, holdout=0.25
    )
    result = calibrate_profile(
        toy_pairs, 2.0, model=tiny, method=method, options=options, distortions=TOY_TASKS
    )
    held = result.held_out
    assert held["profile"] > held["base"] + 3.0, held
    assert (len(result.relations) == 2) == (method != "finetune")


def test_profile_round_trip_keeps_weights_and_provenance(tiny, tmp_path):
    pairs = [pair_from(scene(192, seed=s), TOY_TASKS[1], 2.0) for s in range(2)]
    options = cal.CalibrationOptions(steps=4, batch=2, patch=32, relation_every=2, holdout=0.25)
    steps = []
    result = calibrate_profile(
        pairs,
        2.0,
        model=tiny,
        method="drtl",
        options=options,
        distortions=TOY_TASKS,
        names=["a", "b"],
        name="toy-camera",
        progress=steps.append,
    )
    assert [s.step for s in steps] == [0, 1, 2, 3]
    path = save_model(tmp_path / "camera.pt", result.model.state_dict, result.model.info)
    loaded = load_model(path)
    assert loaded.info.name == "toy-camera" and loaded.info.scales == [2.0]
    for key, value in result.model.state_dict.items():
        torch.testing.assert_close(loaded.state_dict[key], value)
    training = loaded.info.training
    assert training["method"] == "drtl" and training["steps"] == 4
    assert [p["name"] for p in training["pairs"]] == ["a", "b"]
    assert all(p["misplacement"] < 1.0 for p in training["pairs"])
    fitted = {"fitted/point", "fitted/point/noise"}
    assert set(training["relation_weights"]) == {t.name for t in TOY_TASKS} | fitted
    assert training["fitted_kernel"]["residual"] < 0.05
    assert math.isclose(sum(training["relation_weights"].values()), 1.0)
    assert set(training["held_out_psnr"]) == {"bicubic", "base", "profile"}
    assert training["base_model"]["name"] == "tiny"
    # A profile is a theta_M like any other: the zero-shot meta-test adapts it further.
    from napari_mzsr import super_resolve

    sr = super_resolve(pairs[0][0], scale=2.0, steps=1, model=loaded, device="cpu")
    assert sr.shape == pairs[0][1].shape


def test_non_integer_profile_uses_the_bicubic_son(tiny):
    truth = Distortion("truth", gaussian_kernel(2.0, size=15))
    pairs = [pair_from(scene(200, seed=4), truth, 2.5)]
    options = cal.CalibrationOptions(steps=1, batch=2, patch=32, holdout=0.0)
    result = calibrate_profile(pairs, 2.5, model=tiny, method="finetune", options=options)
    assert result.model.info.scales == [2.5] and result.model.info.degradation == "bicubic"
    assert "held_out_psnr" in result.model.info.training


def test_bad_calibration_inputs_are_refused(tiny, toy_pairs):
    with pytest.raises(ValueError, match="method must be one of"):
        calibrate_profile(toy_pairs, 2.0, model=tiny, method="magic")
    with pytest.raises(ValueError, match="at least one"):
        calibrate_profile([], 2.0, model=tiny)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        cal.CalibrationOptions(steps=0)
    with pytest.raises(ValueError, match="holdout"):
        cal.CalibrationOptions(holdout=0.6)
    lr, hr = toy_pairs[0]
    with pytest.raises(ValueError, match="pair 1: misregistered"):
        calibrate_profile([(lr, np.roll(hr, 4, axis=1))], 2.0, model=tiny)
    with pytest.raises(ValueError, match="differ in channels"):
        calibrate_profile([(lr[..., 0], hr)], 2.0, model=tiny)
