"""Isotropic Z (issue 19): axial degradation, geometry, kernel estimation, the block-wise
and lazy runs, channels, cancellation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from tiny_models import save_tiny_model

from napari_mzsr.core.adaptation import Cancelled, make_son
from napari_mzsr.core.axial import (
    axial_kernel,
    axial_output_length,
    axial_positions,
    axial_son,
    axial_step,
    column_kernel,
    degrade_axial,
    degrade_axial_tensor,
    network_radius,
    output_voxel_geometry,
    patch_plan,
    sigma_from_fwhm,
    z_factor_from_scale,
)
from napari_mzsr.core.axial_estimation import estimate_axial_sigma
from napari_mzsr.core.degradation import degrade_tensor
from napari_mzsr.core.gradual import plan_gradual_steps
from napari_mzsr.core.network import MZSRNet
from napari_mzsr.core.resize import imresize
from napari_mzsr.pipeline.axial import (
    iter_adapt_axial,
    iter_apply_axial,
    iter_super_resolve_axial,
    stage_kernels,
    super_resolve_axial,
    super_resolve_axial_dask,
)
from napari_mzsr.pipeline.axial_options import AxialOptions, axial_sigma

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def axial_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "tiny-axial.pt"
    return save_tiny_model(path, "tiny-axial", channels=1, features=8)


def _options(model, **extra):
    options = dict(kernel=1.0, steps=2, model=model, device="cpu", precision="float32")
    options.update(adapt_patch=16, adapt_patches=2)
    return {**options, **extra}


def _apply(model, **extra):
    return AxialOptions(**_options(model, **extra))


def _smooth_volume(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(ndimage.gaussian_filter(rng.random(shape), 1.5) * 3 - 1, 0, 1).astype(np.float32)


def _isotropic_field(shape, seed=0) -> np.ndarray:
    """A statistically isotropic volume: white noise with an isotropic power-law
    spectrum (|k|^-2) and an isotropic Gaussian PSF of sigma 1 voxel."""
    rng = np.random.default_rng(seed)
    freqs = np.meshgrid(*(np.fft.fftfreq(n) for n in shape), indexing="ij")
    radius = np.sqrt(sum(f**2 for f in freqs))
    radius[0, 0, 0] = 1.0
    amplitude = radius**-1.0 * np.exp(-2 * np.pi**2 * radius**2)
    field = np.fft.ifftn(np.fft.fftn(rng.normal(size=shape)) * amplitude).real
    return field / np.ptp(field)


# --- degradation and geometry -----------------------------------------------------------


def test_direct_degradation_keeps_every_factor_th_slice_and_matches_scipy():
    volume = np.random.default_rng(0).random((23, 64, 70))  # more lines than one chunk
    ramp = np.broadcast_to(np.arange(23.0)[:, None, None], (23, 2, 2))
    # Without blur, the kept slices are 0, f, 2f, ...: input slice i is output slice i f.
    np.testing.assert_array_equal(degrade_axial(ramp, 0.0, 3)[:, 0, 0], np.arange(0, 23, 3))
    for sigma, factor in [(2.0, 4), (1.3, 3)]:
        expected = ndimage.gaussian_filter1d(volume, sigma, axis=0, mode="reflect")[::factor]
        np.testing.assert_allclose(degrade_axial(volume, sigma, factor), expected, atol=1e-12)
    lateral = degrade_axial(volume, 1.0, 2, axis=2)
    np.testing.assert_allclose(
        lateral, ndimage.gaussian_filter1d(volume, 1.0, axis=2, mode="reflect")[..., ::2]
    )


def test_non_integer_degradation_is_blur_then_matlab_bicubic():
    image = np.random.default_rng(1).random((29, 7))
    blurred = ndimage.gaussian_filter1d(image, 1.5, axis=0, mode="reflect")
    expected = imresize(blurred, (1 / 2.5, 1.0))
    np.testing.assert_allclose(degrade_axial(image, 1.5, 2.5), expected, atol=1e-12)
    assert degrade_axial(image, 1.5, 2.5).shape == (12, 7)


def test_son_is_the_meta_tests_son_with_a_column_kernel():
    """The axial son is make_son with the axial Gaussian down one column and the scale
    pair (f, 1): direct [0::f] rows for integers, MATLAB bicubic otherwise."""
    targets = torch.rand(3, 1, 24, 10, dtype=torch.float64)
    for sigma, factor in [(0.0, 4), (1.7, 3), (1.2, 2.5)]:
        kernel = torch.from_numpy(column_kernel(axial_kernel(sigma)))
        method = "direct" if factor == int(factor) else "bicubic"
        expected = make_son(targets, kernel, (factor, 1.0), method)
        torch.testing.assert_close(axial_son(targets, sigma, factor), expected)
        torch.testing.assert_close(
            degrade_axial_tensor(targets, sigma, factor),
            degrade_tensor(targets, kernel, (factor, 1.0), method),
        )
    # A kernel wider than the image still mirrors like scipy's "reflect".
    thin = torch.rand(1, 1, 5, 3, dtype=torch.float64)
    expected = ndimage.gaussian_filter1d(thin[0, 0].numpy(), 3.0, axis=0, mode="reflect")
    np.testing.assert_allclose(degrade_axial_tensor(thin, 3.0, 1)[0, 0].numpy(), expected)


def test_output_length_and_positions():
    assert axial_output_length(16, 4) == 64
    assert axial_output_length(7, 2.5) == 18  # 17.5 rounds up
    assert axial_output_length(5, 2.25) == 11  # 11.25, not MATLAB's ceil 12
    assert axial_output_length(100, 2.9) == 290  # no float round-down to 289
    np.testing.assert_allclose(axial_positions(9, 4)[::4], [0, 1, 2])  # slice i at i f
    np.testing.assert_allclose(axial_positions(5, 2.5), (np.arange(5) + 0.5) / 2.5 - 0.5)


def test_factor_from_voxel_size_and_output_geometry_overlays_the_input():
    assert z_factor_from_scale((2.0, 0.8, 0.2, 0.2)) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="square"):
        z_factor_from_scale((1.0, 0.2, 0.3))
    with pytest.raises(ValueError, match="positive"):
        z_factor_from_scale((0.0, 0.2, 0.2))
    # Output slice j lies at world translate + scale * j = input world of its position.
    for factor in (4, 2.5):
        scale, translate = output_voxel_geometry((0.8, 0.2, 0.2), (5.0, 1.0, 2.0), factor)
        world_out = translate[0] + scale[0] * np.arange(7)
        world_in = 5.0 + 0.8 * axial_positions(7, factor)
        np.testing.assert_allclose(world_out, world_in)
        assert scale[1:] == (0.2, 0.2) and translate[1:] == (1.0, 2.0)


def test_planes_are_placed_where_they_belong():
    """With a network that adds nothing (zero weights), each XZ plane and each YZ plane
    is the MATLAB bicubic resize of that plane along Z: the result must be the volume
    resized along Z, voxel for voxel (no transposed or swapped planes)."""
    net = MZSRNet(1, 4)
    for p in net.parameters():
        torch.nn.init.zeros_(p)
    volume = _smooth_volume((6, 11, 9))
    out = axial_step(net, torch.from_numpy(volume), 3.0, 18, slice(2, 10), slice(1, 9))
    expected = np.stack([imresize(volume[:, :, x], (3.0, 1.0)) for x in range(9)], axis=-1)
    np.testing.assert_allclose(out.numpy(), np.clip(expected, 0, 1)[:, 2:10, 1:9], atol=1e-6)


@pytest.mark.parametrize(
    ("shape", "factor", "out_z"),
    [((7, 19, 23), 3, 21), ((7, 19, 23), 2.5, 18), ((5, 17, 16), 2.25, 11), ((3, 20, 21), 8, 24)],
)
def test_output_shape_and_dtype(axial_model, shape, factor, out_z):
    volume = np.rint(_smooth_volume(shape) * 60000).astype(np.uint16)
    out = super_resolve_axial(volume, z_factor=factor, **_options(axial_model, max_step=4))
    assert out.shape == (out_z, *shape[1:]) and out.dtype == np.uint16


def test_gradual_plan_and_stage_kernels():
    assert plan_gradual_steps(4, 6) == [4.0]
    assert plan_gradual_steps(8, 4) == [4.0, 2.0]
    assert plan_gradual_steps(6, 2) == [3.0, 2.0]  # integer steps keep the direct geometry
    steps = plan_gradual_steps(6.5, 4)
    assert len(steps) == 2 and np.isclose(np.prod(steps), 6.5)
    # The blur variance splits so that the stages add up to the whole kernel.
    sigma, factors = 3.0, [3.0, 2.0]
    (s1, spacing1), (s2, spacing2) = stage_kernels(sigma, factors)
    assert (spacing1, spacing2) == (2.0, 1.0)
    assert np.isclose((s1 * spacing1) ** 2 + (s2 * spacing2) ** 2, sigma**2)


def test_axial_sigma_specs():
    assert axial_sigma("estimate") is None
    assert axial_sigma(2) == 2.0
    assert np.isclose(axial_sigma({"fwhm": 4.71}), sigma_from_fwhm(4.71))
    assert np.isclose(sigma_from_fwhm(2 * np.sqrt(2 * np.log(2))), 1.0)
    for bad in (-1.0, {"sigma": 1, "fwhm": 2}, "wide", {"fwhm": "x"}, float("nan")):
        with pytest.raises(ValueError, match=r"kernel|sigma"):
            axial_sigma(bad)


def test_patch_plan_alternates_orientations_within_bounds():
    plan = patch_plan(5, (30, 40), 16, 4, 3, np.random.default_rng(0))
    assert plan.shape == (3, 4, 4)
    assert plan[..., 0].max() < 5 and plan[..., 1].max() <= 14 and plan[..., 2].max() <= 24
    assert (plan[..., 3].sum(axis=1) == 2).all()  # half the patches transposed, each step


# --- kernel estimation ------------------------------------------------------------------


@pytest.mark.parametrize(("sigma", "factor"), [(2.0, 4), (1.5, 3), (1.5, 2.5)])
def test_axial_kernel_estimate_within_20_percent(sigma, factor):
    truth = _isotropic_field((96, 64, 64))
    stack = degrade_axial(truth, sigma, factor)
    estimate = estimate_axial_sigma(stack, factor)
    assert abs(estimate.sigma / sigma - 1) < 0.2, estimate


def test_axial_kernel_estimate_of_a_dask_stack_equals_numpy():
    da = pytest.importorskip("dask.array")
    stack = degrade_axial(_isotropic_field((64, 48, 40), seed=1), 2.0, 4)
    lazy = da.from_array(stack, chunks=(4, 16, 16))
    expected = estimate_axial_sigma(stack, 4)
    assert estimate_axial_sigma(lazy, 4).sigma == pytest.approx(expected.sigma, rel=1e-6)


def test_axial_kernel_estimate_refuses_small_or_constant_stacks():
    with pytest.raises(ValueError, match="too small"):
        estimate_axial_sigma(np.zeros((4, 64, 64)), 4)
    with pytest.raises(ValueError, match="constant"):
        estimate_axial_sigma(np.ones((16, 64, 64)), 4)


# --- runs: blocks, lazy, channels, cancellation, input untouched -------------------------


def _adapted(volume, model, factor=3):
    run = iter_adapt_axial(volume, factor, AxialOptions(**_options(model)))
    try:
        while True:
            next(run)
    except StopIteration as done:
        return done.value


def test_blocks_join_exactly_and_input_is_untouched(axial_model):
    volume = _smooth_volume((8, 37, 41))
    before = volume.copy()
    adapted = _adapted(volume, axial_model)
    whole = _run(iter_apply_axial(adapted, volume, _apply(axial_model, block=64)))
    tiled = _run(iter_apply_axial(adapted, volume, _apply(axial_model, block=12)))
    assert whole.shape == (24, 37, 41) and 0 < whole.mean() < 1
    np.testing.assert_allclose(tiled, whole, atol=1e-6)
    np.testing.assert_array_equal(volume, before)


def test_tiles_within_planes_join_exactly(axial_model):
    volume = _smooth_volume((9, 30, 34), seed=2)
    adapted = _adapted(volume, axial_model)
    whole = _run(iter_apply_axial(adapted, volume, _apply(axial_model)))
    np.testing.assert_allclose(
        _run(iter_apply_axial(adapted, volume, _apply(axial_model, tile=8))), whole, atol=1e-6
    )


def test_gradual_stages_join_exactly_in_blocks(axial_model):
    volume = _smooth_volume((4, 30, 29))
    options = _options(axial_model, max_step=2.0)
    whole = super_resolve_axial(volume, z_factor=6, block=64, **options)
    tiled = super_resolve_axial(volume, z_factor=6, block=10, **options)
    assert whole.shape == (24, 30, 29)
    np.testing.assert_allclose(tiled, whole, atol=1e-6)


def test_dask_stack_equals_in_memory(axial_model):
    da = pytest.importorskip("dask.array")
    volume = _smooth_volume((8, 37, 41), seed=3)
    options = _options(axial_model, block=16)
    expected = super_resolve_axial(volume, z_factor=3, **options)
    lazy_input = da.from_array(volume, chunks=(3, 10, 10))
    np.testing.assert_allclose(
        super_resolve_axial(lazy_input, z_factor=3, **options), expected, atol=1e-6
    )
    adapted = _adapted(lazy_input, axial_model)
    lazy = super_resolve_axial_dask(adapted, lazy_input, _apply(axial_model, block=16))
    assert lazy.shape == expected.shape and lazy.numblocks[1] > 1
    np.testing.assert_allclose(lazy.compute(), expected, atol=1e-6)


def test_channels_each_on_its_own(axial_model):
    volume = np.stack([_smooth_volume((6, 20, 18), seed=s) for s in (4, 5)], axis=1)
    volume[:, 1] *= 0.5
    out = super_resolve_axial(volume, z_factor=2, channel_axis=1, **_options(axial_model))
    assert out.shape == (12, 2, 20, 18)
    for c in range(2):
        alone = super_resolve_axial(
            np.ascontiguousarray(volume[:, c]), z_factor=2, **_options(axial_model)
        )
        np.testing.assert_allclose(out[:, c], alone, atol=1e-6)


def test_cancel_stops_the_run(axial_model):
    volume = _smooth_volume((6, 20, 18))
    reports = []
    with pytest.raises(Cancelled):
        super_resolve_axial(
            volume,
            z_factor=2,
            progress=reports.append,
            cancel=lambda: len(reports) >= 2,
            **_options(axial_model, steps=5),
        )
    assert len(reports) == 2 and reports[-1].phase == "adapt"
    run = iter_super_resolve_axial(volume, z_factor=2, **_options(axial_model, steps=5))
    first = next(run)
    run.close()
    assert first.done == 1 and first.total == 5 + 1
    with pytest.raises(StopIteration):
        next(run)


def test_bad_arguments_are_refused(axial_model):
    volume = _smooth_volume((6, 20, 18))
    for factor in (1.0, 11, "x", float("inf")):
        with pytest.raises(ValueError, match="z_factor"):
            super_resolve_axial(volume, z_factor=factor, **_options(axial_model))
    with pytest.raises(ValueError, match="one channel"):
        super_resolve_axial(volume[0], z_factor=2, **_options(axial_model))
    for max_step in (1.0, "2", float("nan")):
        with pytest.raises(ValueError, match="max_step"):
            super_resolve_axial(volume, z_factor=2, **_options(axial_model, max_step=max_step))
    with pytest.raises(ValueError, match="optimizer"):
        super_resolve_axial(volume, z_factor=2, **_options(axial_model, optimizer="lbfgs"))


def test_sgd_is_the_meta_test(axial_model):
    """optimizer="sgd" runs the MZSR meta-test machinery with the column kernel."""
    volume = _smooth_volume((6, 20, 18))
    adapted = _adapted(volume, axial_model)
    out = super_resolve_axial(volume, z_factor=3, **_options(axial_model, optimizer="sgd", lr=1e-2))
    assert out.shape == (18, 20, 18) and len(adapted.losses) == 2


def test_degrade_tensor_keeps_shapes():
    x = torch.rand(2, 1, 17, 5)
    assert degrade_axial_tensor(x, 1.0, 4).shape == (2, 1, 5, 5)
    assert degrade_axial_tensor(x, 1.0, 2.5).shape == (2, 1, 7, 5)


def _run(generator):
    try:
        while True:
            next(generator)
    except StopIteration as done:
        return done.value


def test_public_api_is_keyword_only_and_checked_once(axial_model):
    import napari_mzsr

    assert napari_mzsr.super_resolve_axial is super_resolve_axial
    assert {"super_resolve_axial", "AxialOptions"} <= set(napari_mzsr.__all__)
    volume = _smooth_volume((6, 20, 18))
    with pytest.raises(TypeError):
        super_resolve_axial(volume, 2, **_options(axial_model))  # z_factor is keyword-only
    options = AxialOptions(**_options(axial_model))
    with pytest.raises(ValueError, match="not both"):
        next(iter_super_resolve_axial(volume, options, z_factor=2, steps=3))
    with pytest.raises(ValueError, match="adapt_patch"):
        AxialOptions(**_options(axial_model, adapt_patch=4))


# --- scale-aware models (review 1.1) ------------------------------------------------------


@pytest.fixture(scope="module")
def scale_aware_axial_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "tiny-axial-sa.pt"
    return save_tiny_model(
        path, "tiny-axial-sa", channels=1, features=8, scales=(1.5, 4.0),
        degradation="bicubic", adaptation_layers=(2, 5), experts_std=0.5,
    )  # fmt: skip


def test_scale_aware_model_runs_bound_to_each_stage_and_blocks_join(scale_aware_axial_model):
    """Each stage's network is bound to (stage factor, 1), and the blocks, tiles and
    gradual stages read the network's receptive radius (layers + adaptations) of context."""
    from napari_mzsr.core.scale_aware import ScaleAwareNet

    model = scale_aware_axial_model
    volume = _smooth_volume((4, 40, 38), seed=6)
    options = _options(model, max_step=2.0)
    adapted = _adapted(volume, model, factor=4)
    assert adapted.margin == 14  # 8 layers + 2 adaptations of 3 pixels, one stage
    nets = [s.net for s in _adapted_stages(volume, model, 4, max_step=2.0)]
    assert [n.scale for n in nets] == [(2.0, 1.0), (2.0, 1.0)]
    assert all(isinstance(n, ScaleAwareNet) for n in nets)
    assert network_radius(nets[0]) == 14 and network_radius(MZSRNet(1, 8)) == 8
    whole = super_resolve_axial(volume, z_factor=4, block=64, **options)
    blocks = super_resolve_axial(volume, z_factor=4, block=9, **options)
    tiles = super_resolve_axial(volume, z_factor=4, block=64, tile=8, **options)
    assert whole.shape == (16, 40, 38)
    np.testing.assert_allclose(blocks, whole, atol=1e-6)
    np.testing.assert_allclose(tiles, whole, atol=1e-6)


def _adapted_stages(volume, model, factor, **extra):
    run = iter_adapt_axial(volume, factor, AxialOptions(**_options(model, **extra)))
    try:
        while True:
            next(run)
    except StopIteration as done:
        return done.value.stages


def test_out_must_have_the_output_shape_and_dtype(axial_model):
    """``out`` is checked for the dtype asked for (output_dtype, default the volume's) as
    well as its shape, before any work; a matching one is filled and returned."""
    volume = _smooth_volume((6, 20, 18))
    options = _options(axial_model)
    for out, match in (
        (np.empty((12, 20, 18), np.uint8), "out must have dtype float32"),
        (np.empty((12, 20, 18), np.float64), "out must have dtype float32"),
        (np.empty((12, 20, 17), np.float32), "out must have shape"),
    ):
        with pytest.raises(ValueError, match=match):
            next(iter_super_resolve_axial(volume, z_factor=2, out=out, **options))
    with pytest.raises(ValueError, match="out must have dtype uint16"):
        super_resolve_axial(
            volume, z_factor=2, out=np.empty((12, 20, 18), np.float32),
            output_dtype="uint16", **options,
        )  # fmt: skip
    adapted = _adapted(volume, axial_model, factor=2)
    with pytest.raises(ValueError, match="out must have dtype float32"):
        next(iter_apply_axial(adapted, volume, _apply(axial_model), out=np.empty((12, 20, 18))))
    stacked = np.stack([volume, volume], axis=1)
    with pytest.raises(ValueError, match="out must have dtype float32"):
        next(
            iter_super_resolve_axial(
                stacked, z_factor=2, channel_axis=1, out=np.empty((12, 2, 20, 18)), **options
            )
        )
    out = np.zeros((12, 20, 18), np.float32)
    assert super_resolve_axial(volume, z_factor=2, out=out, **options) is out
    np.testing.assert_allclose(out, super_resolve_axial(volume, z_factor=2, **options))


def test_output_dtype_is_checked_by_one_rule_for_images_and_stacks(axial_model):
    """core.checks.output_dtype is the one check of ``output_dtype`` (image and axial)."""
    from napari_mzsr.core import checks
    from napari_mzsr.pipeline.options import ApplyOptions

    assert checks.output_dtype(None) is None
    assert checks.output_dtype("uint16") == np.dtype(np.uint16)
    assert checks.output_dtype(np.float32) == np.dtype(np.float32)
    for bad, match in (("nonsense", "a numpy dtype"), (bool, "integer or float"), (complex, "")):
        with pytest.raises(ValueError, match=f"output_dtype must be .*{match}") as err:
            checks.output_dtype(bad)
        with pytest.raises(ValueError) as image:
            ApplyOptions(output_dtype=bad)
        with pytest.raises(ValueError) as stack:
            AxialOptions(**_options(axial_model, output_dtype=bad))
        assert str(image.value) == str(stack.value) == str(err.value)
    assert AxialOptions(**_options(axial_model, output_dtype="u2")).output_dtype == np.uint16
    assert ApplyOptions(output_dtype="f4").output_dtype == np.float32
