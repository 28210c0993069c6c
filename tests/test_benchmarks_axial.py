"""benchmarks/axial.py: the phantom, the interpolation baselines' geometry, the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tiny_models import save_tiny_model

from benchmarks import axial
from benchmarks.axial_phantom import render_phantom
from napari_mzsr.core.axial import degrade_axial

pytestmark = pytest.mark.usefixtures("one_thread")


def test_phantom_is_seeded_and_in_range():
    a = render_phantom((16, 32, 32), filaments=6, blobs=6, seed=1)
    assert a.dtype == np.float32 and a.shape == (16, 32, 32)
    assert 0 <= a.min() and a.max() <= 1 and a.std() > 0.01
    np.testing.assert_array_equal(a, render_phantom((16, 32, 32), filaments=6, blobs=6, seed=1))


@pytest.mark.parametrize("order", [1, 3])
def test_interpolation_puts_input_slice_i_at_output_i_times_f(order):
    truth = np.random.default_rng(0).random((24, 5, 6)).astype(np.float32)
    lr = degrade_axial(truth, 0.0, 4)
    out = axial.interpolate_z(lr, 4, 24, order)
    np.testing.assert_allclose(out[::4], lr, atol=1e-5)
    assert not np.allclose(out[1::4], lr, atol=1e-3)


def test_measure_reports_identical_volumes_as_inf_and_phase_ratios_of_one():
    truth = render_phantom((24, 32, 32), filaments=6, blobs=6)
    scores = axial.measure(truth, truth, 4)
    assert scores["psnr_volume"] == np.inf and scores["ssim_volume"] == pytest.approx(1.0)
    np.testing.assert_allclose(scores["step_ratio_by_phase"], 1.0)
    steps = axial.measure(np.repeat(truth[::4], 4, axis=0), truth, 4)["step_ratio_by_phase"]
    assert max(steps) / max(min(steps), 1e-9) > 10  # nearest neighbour: one phase jumps


def test_benchmark_writes_results_and_figure(tmp_path):
    model = save_tiny_model(tmp_path / "t.pt", "t", channels=1, features=8)
    argv = ["--shape", "32x40x40", "--factors", "4", "--steps", "2", "--patch", "16",
            "--patches", "2", "--model", str(model), "--no-timing", "--out", str(tmp_path),
            "--name", "axial_test"]  # fmt: skip
    assert axial.main(argv) == 0
    data = json.loads((tmp_path / "axial_test.json").read_text())
    assert data["command"].startswith("python -m benchmarks.axial --shape 32x40x40")
    methods = data["factors"]["4"]["methods"]
    assert set(methods) == set(axial.METHODS)
    assert methods["cubic"]["psnr_volume"] > methods["linear"]["psnr_volume"] - 3
    assert (tmp_path / "axial_test_xz.png").is_file()
    assert "MZSR axial, true sigma" in (tmp_path / "axial_test.md").read_text()
