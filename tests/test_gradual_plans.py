"""Gradual runs: every exact step within the model, one model for all steps, the
kernel estimate kept, values equal to manual stages, shipped metadata read once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny_models import save_tiny_model

from napari_mzsr.core.resize import output_size
from napari_mzsr.io import model_file
from napari_mzsr.pipeline import gradual, options
from napari_mzsr.pipeline.options import AdaptOptions

pytestmark = pytest.mark.usefixtures("one_thread")
SERVED = [1.0, 1.1, 2.0, 3.0, 4.0]
SPECS = {
    "direct-x2": dict(scales=[2.0]),
    "direct-x4": dict(scales=[4.0]),
    "arbitrary": dict(scales=SERVED, degradation="bicubic", adaptation_layers=(2, 5)),
}


@pytest.fixture(scope="module")
def arb(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("arb")
    return save_tiny_model(folder / "arbitrary.pt", "arbitrary", features=4, **SPECS["arbitrary"])


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """Replace the shipped models by tiny ones of the given names."""

    def ship(*names: str) -> dict[str, Path]:
        folder = tmp_path / f"weights{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        paths = {n: save_tiny_model(folder / f"{n}.pt", n, features=4, **SPECS[n]) for n in names}
        monkeypatch.setattr(model_file, "shipped_models", lambda: dict(paths))
        return paths

    return ship


def _sizes(length: int, stages) -> list[int]:
    sizes = [length]
    for stage in stages:
        sizes.append(round(sizes[-1] * stage.scale[0]))
    return sizes


# The review's failing cases (steps of 4.113 and 4.08 with a model serving up to 4),
# then a sweep of factors close to the model's largest two-step factor.
CASES = [(62, 15.9), (125, 15.5)] + [(n, s) for n in (37, 62, 99, 125) for s in (15.0, 15.7)]


@pytest.mark.parametrize(("length", "scale"), CASES)
def test_exact_steps_stay_within_the_given_model(arb, length, scale):
    run = AdaptOptions(scale=scale, model=arb, kernel=1.0, device="cpu")
    stages = run.stages(True, (length, length))
    assert len(stages) == 2
    assert all(run.model.info.supports_scale(stage.scale) for stage in stages)
    assert _sizes(length, stages)[-1] == output_size(length, scale)


@pytest.mark.parametrize(("length", "scale"), [(62, 15.9), (125, 15.5)])
def test_exact_steps_stay_within_the_shipped_model(shipped, length, scale):
    shipped("arbitrary")
    stages = AdaptOptions(scale=scale, kernel=1.0, device="cpu").stages(True, (length, length))
    assert all(stage.model.info.supports_scale(stage.scale) for stage in stages)
    assert _sizes(length, stages)[-1] == output_size(length, scale)


def test_every_exact_step_is_checked_before_any_runs(arb, monkeypatch):
    from napari_mzsr import super_resolve

    def too_large(shape, scale, steps, max_step):
        return [(4.2, 4.2), (scale[0] / 4.2, scale[1] / 4.2)]

    monkeypatch.setattr(options, "step_factors", too_large)
    seen = []
    with pytest.raises(ValueError, match=r"needs a step of 4.2x4.2, which model 'arbitrary'"):
        super_resolve(
            np.zeros((30, 30), np.uint8), scale=15.9, model=arb, steps=1, kernel=1.0,
            progress=lambda *a: seen.append(a),
        )  # fmt: skip
    assert seen == []


def test_one_model_for_every_step(shipped):
    # 15.9 on 62 px: 62 -> 248 -> 986, an exact x4 first step that direct-x4 would serve.
    shipped("direct-x4", "arbitrary")
    run = AdaptOptions(scale=15.9, kernel=1.0, device="cpu")
    stages = run.stages(True, (62, 62))
    assert stages[0].scale[0] == 4.0
    assert {stage.model.info.name for stage in stages} == {"arbitrary"}
    assert run.for_image(True).model.info.name == "arbitrary"
    assert options.model_for((15.9, 15.9), True) == "arbitrary"
    # Powers of a single-scale model keep it at every step.
    shipped("direct-x2", "direct-x4")
    stages = AdaptOptions(scale=16, kernel=1.0, device="cpu").stages(True, (30, 30))
    assert [(s.scale, s.model.info.name) for s in stages] == [((4.0, 4.0), "direct-x4")] * 2


def _finish(run):
    reports = []
    try:
        while True:
            reports.append(next(run))
    except StopIteration as done:
        return reports, done.value


def test_a_gradual_run_keeps_the_kernel_estimate(arb):
    from napari_mzsr.pipeline.options import ApplyOptions
    from napari_mzsr.pipeline.stacks import run_stack, stack_data

    volume = np.stack([(np.random.default_rng(s).random((40, 44)) * 255) for s in (0, 1)])
    run = AdaptOptions(scale=8, model=arb, kernel="estimate", steps=1, device="cpu")
    stack, run = stack_data(volume.astype(np.uint8), run)
    reports, result = _finish(run_stack(stack, run, ApplyOptions()))
    estimates = [r.kernel_estimate for r in reports if r.phase == "kernel"]
    assert len(estimates) == 1 and estimates[0] is not None
    assert result.kernel_estimate is estimates[0]
    assert result.data.shape == (2, 320, 352)


def test_gradual_x8_equals_two_manual_steps_with_float_between(arb):
    from napari_mzsr import super_resolve
    from napari_mzsr.core.kernels import gaussian_kernel, stretch_kernel
    from napari_mzsr.pipeline.images import image_data

    image = (np.random.default_rng(3).random((21, 26, 3)) * 255).astype(np.uint8)
    kernel = gaussian_kernel(1.3 * 16, 0.8 * 16, 0.4, size=41)
    common = dict(model=arb, steps=2, device="cpu", seed=0)
    result = super_resolve(image, scale=8, kernel=kernel, **common)
    first, second = (s.scale for s in AdaptOptions(scale=8, model=arb).stages(True, (21, 26)))
    assert first != second  # exact sizes: 21 -> 60 -> 168 and 26 -> 74 -> 208
    intensity = image_data(image).intensity
    middle = super_resolve(
        image, scale=first, kernel=stretch_kernel(kernel, (first[0] / 8, first[1] / 8)),
        output_dtype=np.float32, **common,
    )  # fmt: skip
    manual = super_resolve(
        middle, scale=second, kernel=stretch_kernel(kernel, (second[0] / 8, second[1] / 8)),
        normalization=intensity, output_dtype=np.uint8, **common,
    )  # fmt: skip
    assert middle.dtype == np.float32 and result.shape == manual.shape == (168, 208, 3)
    np.testing.assert_array_equal(result, manual)


def test_shipped_metadata_are_read_once(shipped, monkeypatch):
    import os

    import torch

    paths = shipped("direct-x2", "direct-x4", "arbitrary")
    run = AdaptOptions(scale=8, kernel=1.0, device="cpu")
    run.stages(True, (30, 30))
    loads = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a[0]) or real(*a, **k))
    gradual.plan_steps((8.0, 8.0))
    options.choose_model((2.5, 2.5), True)
    assert options.model_for((8.0, 8.0), True) == "arbitrary"
    assert loads == []
    # A second plan reads only the weights of the one model it runs.
    stages = run.stages(True, (30, 30))
    assert len(stages) == 2 and loads == [paths["arbitrary"]]
    # A changed file is read again.
    paths["direct-x4"].unlink()
    save_tiny_model(paths["direct-x4"], "direct-x4", features=4, scales=[3.0])
    os.utime(paths["direct-x4"], ns=(1, 1))
    assert model_file.shipped_infos()["direct-x4"].scales == [3.0]


def test_one_core_planner_with_one_tolerance():
    from napari_mzsr.core import gradual as core

    # The isotropic-Z plan of a non-integer factor is the image plan of (z, 1).
    assert core.plan_gradual_steps(6.5, 4) == [s for s, _ in core.equal_steps((6.5, 1.0), 4)]
    assert (
        core.integer_steps(8, 4) == [4, 2] and core.power_steps((8.0, 8.0), 2.0) == [(2.0,) * 2] * 3
    )
    # A factor within the tolerance of the largest step is one step in every planner,
    # as it is for the model (ModelInfo.supports_scale).
    near = 4.0 + 5e-7
    info = model_file.ModelInfo("a", SERVED, "bicubic", 3)
    assert info.supports_scale(near)
    assert core.plan_gradual_steps(near, 4.0) == [near]
    assert core.equal_steps((near, near), 4.0) == [(near, near)]
    assert gradual.plan_steps((near, near), info) == [(near, near)]
