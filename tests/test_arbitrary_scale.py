"""Any factor and factor pairs through the pipeline: shapes, model choice, gradual steps,
self-ensemble, back-projection and kernel estimation for unequal factors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import save_tiny_model

from napari_mzsr import degrade, estimate_kernel, gaussian_kernel, imresize, super_resolve
from napari_mzsr.core.degradation import degrade_tensor
from napari_mzsr.core.gradual import step_factors, step_kernel
from napari_mzsr.core.kernels import kernel_covariance
from napari_mzsr.core.refinement import _upsample_aligned, back_project, self_ensemble
from napari_mzsr.core.tiling import grid_step
from napari_mzsr.io import model_file
from napari_mzsr.pipeline import gradual
from napari_mzsr.pipeline.options import choose_model, scale_for_shape, scale_pair
from napari_mzsr.pipeline.run import iter_super_resolve

pytestmark = pytest.mark.usefixtures("one_thread")
SERVED = [1.0, 1.1, 2.0, 3.0, 4.0]


@pytest.fixture(scope="module")
def arb(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("arb")
    return save_tiny_model(
        folder / "arbitrary.pt",
        "arbitrary",
        features=8,
        scales=SERVED,
        degradation="bicubic",
        adaptation_layers=(2, 5),
    )


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A fake set of shipped models: single-scale x2 (RGB and grey) and x4, the
    scale-aware pair and the plain multiscale model."""

    def ship(*names: str) -> dict[str, Path]:
        folder = tmp_path / f"weights{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        specs = {
            "direct-x2": dict(scales=[2.0]),
            "direct-x2-gray": dict(scales=[2.0], channels=1),
            "direct-x4": dict(scales=[4.0]),
            "arbitrary": dict(scales=SERVED, degradation="bicubic", adaptation_layers=(2, 5)),
            "arbitrary-gray": dict(
                scales=SERVED, degradation="bicubic", adaptation_layers=(2, 5), channels=1
            ),
            "multiscale": dict(scales=SERVED, degradation="bicubic"),
        }
        paths = {n: save_tiny_model(folder / f"{n}.pt", n, features=4, **specs[n]) for n in names}
        monkeypatch.setattr(model_file, "shipped_models", lambda: dict(paths))
        return paths

    return ship


def _image(shape, seed=0):
    return (np.random.default_rng(seed).random(shape) * 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("shape", "scale", "expected"),
    [
        ((100, 100), (2.2, 4.2), (220, 420)),  # no float round-up to 221
        ((33, 41, 3), 2.5, (83, 103, 3)),
        ((33, 41), (3.5, 1.0), (116, 41)),
        ((31, 29, 3), (1.5, 4.0), (47, 116, 3)),
        ((25, 27), 1.1, (28, 30)),
    ],
)
def test_output_shapes_for_odd_sizes_and_pairs(arb, shape, scale, expected):
    sr = super_resolve(_image(shape), scale=scale, model=arb, steps=1, kernel=1.0, device="cpu")
    assert sr.shape == expected and sr.dtype == np.uint8


def test_output_shape_instead_of_scale(arb):
    sr = super_resolve(_image((40, 30)), output_shape=(100, 105), model=arb, steps=1, device="cpu")
    assert sr.shape == (100, 105)
    assert scale_for_shape((40, 30), None, (100, 105)) == (2.5, 3.5)
    with pytest.raises(ValueError, match="does not match"):
        scale_for_shape((40, 30), (2.5, 3.0), (100, 105))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0.5, "between 1 and 16"),
        ((2, 17), "between 1 and 16"),
        ((2,), "pair"),
        ("2x3", "pair"),
        ((2, "3"), "pair"),
        (True, "pair"),
        (math.nan, "finite"),
        ((1, 1), "at least one axis"),
    ],
)
def test_bad_factors_give_one_line_errors(value, message):
    with pytest.raises(ValueError, match=message):
        scale_pair(value)


def test_choose_model_prefers_single_scale_then_scale_aware(shipped):
    shipped("direct-x2", "direct-x2-gray", "direct-x4", "arbitrary", "arbitrary-gray", "multiscale")
    assert choose_model((2.0, 2.0), rgb=True) == "direct-x2"
    assert choose_model((2.0, 2.0), rgb=False) == "direct-x2-gray"
    assert choose_model((4.0, 4.0), rgb=True) == "direct-x4"
    assert choose_model((2.5, 2.5), rgb=True) == "arbitrary"
    assert choose_model((2.0, 3.5), rgb=False) == "arbitrary-gray"
    assert choose_model((3.0, 1.0), rgb=True) == "arbitrary"


def test_choose_model_falls_back_to_multiscale_and_says_what_is_served(shipped):
    shipped("direct-x2", "multiscale")
    assert choose_model((2.5, 1.5), rgb=False) == "multiscale"
    shipped("direct-x2")
    with pytest.raises(ValueError, match=r"serves scale 2.5x2.5 in one step \(shipped: x2\)"):
        choose_model((2.5, 2.5), rgb=True)


def test_gradual_plans():
    arb_info = model_file.ModelInfo(
        "a", SERVED, "bicubic", 3, architecture="scale-aware", adaptation_layers=[2, 5]
    )
    x2 = model_file.ModelInfo("b", [2.0], "direct", 3)
    assert gradual.plan_steps((3.0, 2.5), arb_info) == [(3.0, 2.5)]
    steps = gradual.plan_steps((8.0, 2.0), arb_info)
    assert len(steps) == 2 and all(max(s) <= 4 for s in steps)
    np.testing.assert_allclose(np.prod(steps, axis=0), (8.0, 2.0))
    assert gradual.plan_steps((8.0, 8.0), x2) == [(2.0, 2.0)] * 3
    with pytest.raises(ValueError, match="nor in steps"):
        gradual.plan_steps((6.0, 6.0), x2)
    # Exact sizes: the steps' factors are ratios of whole sizes, tileable, ending on ceil.
    factors = step_factors((100, 37), (8.0, 2.0), steps)
    sizes = [(100, 37)]
    for fy, fx in factors:
        sizes.append((round(sizes[-1][0] * fy), round(sizes[-1][1] * fx)))
    assert sizes[-1] == (800, 74) and sizes[1] == (280, 53)
    assert all(grid_step(f) is not None for pair in factors for f in pair)


def test_gradual_super_resolution_to_x8(arb):
    image = _image((21, 26, 3))
    run = iter_super_resolve(image, scale=8, model=arb, steps=2, kernel=2.0, device="cpu")
    reports = []
    try:
        while True:
            reports.append(next(run))
    except StopIteration as done:
        sr = done.value
    assert sr.shape == (168, 208, 3) and sr.dtype == np.uint8
    # Two gradual steps of two adaptation steps each, numbered across the run.
    assert [r.step for r in reports] == [0, 1, 2, 3] and {r.steps for r in reports} == {4}
    big = _image((40, 44))
    est = super_resolve(big, scale=(8, 3), model=arb, steps=1, kernel="estimate")
    assert est.shape == (320, 132)
    x3 = save_tiny_model(arb.parent / "x3.pt", "x3", features=4, scales=[3.0])
    with pytest.raises(ValueError, match="nor in steps"):
        super_resolve(image, scale=8, model=x3, steps=1)


def test_stacks_run_gradual_steps_and_dask_arrays_refuse_them(arb):
    import dask.array as da

    from napari_mzsr import iter_super_resolve_stack, super_resolve_dask

    stack = np.stack([_image((24, 26), seed) for seed in range(2)])
    run = iter_super_resolve_stack(stack, scale=(8, 2), model=arb, steps=1, kernel=1.0)
    reports = []
    try:
        while True:
            reports.append(next(run))
    except StopIteration as done:
        out = done.value
    assert out.shape == (2, 192, 52) and out.dtype == np.uint8
    # Two gradual steps: each adapts once and applies to both slices.
    assert [r.phase for r in reports] == ["adapt", "apply", "apply"] * 2
    with pytest.raises(ValueError, match="only in steps"):
        super_resolve_dask(da.from_array(stack[0]), scale=8, model=arb, steps=1)


def test_step_kernels_follow_the_step_factors():
    kernel = gaussian_kernel(1.3 * 16, 1.3 * 16, size=41)  # 1.3 (s/2)^2 at x8
    step = step_kernel(kernel, (8.0, 8.0), (4.0, 4.0), 2)
    # 1.3 (4/2)^2, up to the truncation of its +-3 sigma grid.
    np.testing.assert_allclose(kernel_covariance(step), np.eye(2) * 1.3 * 4, rtol=0.02, atol=1e-9)
    assert step_kernel(kernel, (8.0, 8.0), (8.0, 8.0), 1) is kernel


def test_self_ensemble_keeps_the_axes_for_unequal_factors():
    seen = []

    def upscale(x):
        seen.append(tuple(x.shape[-2:]))
        return torch.nn.functional.interpolate(x, size=(x.shape[-2] * 2, x.shape[-1] * 3))

    x = torch.rand(1, 1, 6, 7)
    out = self_ensemble(upscale, x, (2.0, 3.0), "bicubic")
    assert out.shape[-2:] == (12, 21) and len(seen) == 4 and set(seen) == {(6, 7)}
    seen.clear()

    def double(x):
        seen.append(tuple(x.shape[-2:]))
        return torch.nn.functional.interpolate(x, scale_factor=2)

    self_ensemble(double, x, (2.0, 2.0), "bicubic")
    assert len(seen) == 8 and (7, 6) in seen


def test_self_ensemble_moves_only_the_decimated_axis_back():
    """With factors (2, 2.5) and direct subsampling the rows are decimated (LR row i on
    HR row 2 i: a mirror moves that grid) and the columns resized (centred: it does
    not). An upscaler with exactly that geometry must come back from every
    axis-preserving transform unchanged (away from the borders)."""
    x = torch.rand(1, 1, 20, 18, dtype=torch.float64)
    scale = (2.0, 2.5)

    for degradation in ("direct", "bicubic"):

        def upscale(t, degradation=degradation):
            shape = (math.ceil(t.shape[-2] * 2), math.ceil(t.shape[-1] * 2.5))
            return _upsample_aligned(t, shape, scale, degradation)

        reference = upscale(x)
        out = self_ensemble(upscale, x, scale, degradation)
        inner = (slice(None), slice(None), slice(4, -4), slice(4, -4))
        torch.testing.assert_close(out[inner], reference[inner], atol=1e-9, rtol=0)


def test_back_projection_for_factor_pairs():
    rng = np.random.default_rng(2)
    hr = imresize(rng.random((13, 11)), 3)[:-2, :-1]  # 37 x 32: sizes that do not divide
    kernel = gaussian_kernel(1.3, 2.0, 0.3, size=9)
    for scale, method in (((1.5, 3.0), "bicubic"), ((2.0, 2.5), "direct"), ((3.0, 1.0), "direct")):
        lr = degrade(hr, kernel, scale, method)
        lr_t = torch.from_numpy(lr)[None, None]
        sr = torch.from_numpy(imresize(lr, scale))[None, None]
        k = torch.from_numpy(kernel)

        def misfit(x, k=k, scale=scale, method=method, lr=lr_t):
            degraded = degrade_tensor(x, k, scale, method, output_shape=lr.shape[-2:])
            return float((degraded - lr).abs().mean())

        refined = back_project(sr, lr_t, k, scale, method, iterations=5, clamp=(-1.0, 2.0))
        assert refined.shape == sr.shape
        assert misfit(refined) < 0.5 * misfit(sr)


def test_kernel_estimation_for_factor_pairs(set5):
    """The covariance comes back in HR pixels, along each axis for its own factor."""
    gray = set5["bird"].astype(np.float64).mean(axis=-1) / 255
    true = gaussian_kernel(1.3, 1.3 * 1.5**2, 0.0, size=21)  # x: 1.3 at x2, y: at x3
    lr = degrade(gray, true, (3.0, 2.0), "bicubic")
    cov = estimate_kernel(lr, (3.0, 2.0), "bicubic").covariance  # (x, y) order
    # A rough estimate (see core/kernel_estimation.py), but along the right axes.
    np.testing.assert_allclose(np.diag(cov), np.diag(kernel_covariance(true)), rtol=0.6)
    assert cov[1, 1] > 1.4 * cov[0, 0]
    swapped = estimate_kernel(lr.T.copy(), (2.0, 3.0), "bicubic").covariance
    np.testing.assert_allclose(np.diag(swapped)[::-1], np.diag(cov), rtol=0.1)


def test_stacks_and_dask_arrays_take_factor_pairs(arb):
    import dask.array as da

    from napari_mzsr import super_resolve_dask, super_resolve_stack

    stack = np.stack([_image((30, 34), seed) for seed in range(2)])
    out = super_resolve_stack(stack, scale=(2.5, 1.5), model=arb, steps=1, kernel=1.0)
    assert out.shape == (2, 75, 51)
    image = _image((40, 36))
    args = dict(scale=(2.5, 1.5), model=arb, steps=1, kernel=1.0, device="cpu")
    lazy = super_resolve_dask(da.from_array(image, chunks=20), **args, output_dtype=np.float32)
    eager = super_resolve(image, **args, output_dtype=np.float32, tile=20)
    assert lazy.shape == (100, 54)
    np.testing.assert_allclose(lazy.compute(), eager, atol=1e-3)


def test_kernel_estimate_at_a_factor_pair(arb):
    from napari_mzsr import iter_adapt
    from napari_mzsr.pipeline.run import drive

    image = _image((48, 40, 3))
    adapted = drive(iter_adapt(image, scale=(2.5, 1.5), kernel="estimate", model=arb, steps=1))
    assert adapted.kernel_estimate is not None and adapted.scale == (2.5, 1.5)
    assert adapted.apply(image).shape == (120, 60, 3)
