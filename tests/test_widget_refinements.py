"""The widget's kernel estimate and refinements, driven as a user drives them.

Needs napari, pytest-qt and an X display; run headless with ``xvfb-run -a pytest``.
"""

from pathlib import Path

import numpy as np
import pytest
from gui_support import click_run, fresh_choices, require_gui
from tiny_models import save_tiny_model

require_gui()

from napari_mzsr import degrade, gaussian_kernel, imresize
from napari_mzsr.plugin.widget import FROM_FILE, MZSRWidget

pytestmark = pytest.mark.gui
__all__ = ["fresh_choices"]  # autouse: no remembered choices leak between tests


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny.pt", "tiny-direct")


def _blurred(shape=(64, 64), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hr = imresize(rng.random((shape[0] // 2, shape[1] // 2)), 4)
    lr = degrade(hr, gaussian_kernel(2.0), 2)
    return np.clip(lr * 255, 0, 255).astype(np.uint8)


def _dock(viewer, model_path) -> MZSRWidget:
    widget = MZSRWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget._model.value = FROM_FILE
    widget._model_file.value = model_path
    widget._device.value = "cpu"
    widget._steps.value = 1
    return widget


def test_estimated_kernel_is_reported_and_stored(
    make_napari_viewer, qtbot, model_path, monkeypatch
):
    shown = []
    on_progress = MZSRWidget._on_progress
    monkeypatch.setattr(
        MZSRWidget, "_on_progress", lambda self, p: (shown.append(p), on_progress(self, p))
    )
    viewer = make_napari_viewer()
    viewer.add_image(_blurred(), name="cells")
    widget = _dock(viewer, model_path)
    widget._kernel_kind.value = "estimate"
    assert not widget._variance.visible
    assert "estimated" in widget._kernel_preview.native.text()
    click_run(qtbot, widget)

    assert len(viewer.layers) == 2
    settings = viewer.layers[-1].metadata["mzsr"]
    assert settings["kernel"].startswith("estimated: Gaussian")
    estimate = settings["kernel_estimate"]
    assert estimate["l1"] >= estimate["l2"] > 0
    assert np.asarray(estimate["covariance"]).shape == (2, 2)
    assert shown[0] == "estimating the kernel..."
    assert shown[1].startswith("estimated kernel: Gaussian")
    assert widget._status.value.startswith("done") and "kernel Gaussian" in widget._status.value


def test_estimate_on_a_stack_uses_the_current_slice(make_napari_viewer, qtbot, model_path):
    viewer = make_napari_viewer()
    viewer.add_image(np.stack([_blurred(seed=s) for s in range(3)]), name="stack")
    widget = _dock(viewer, model_path)
    widget._kernel_kind.value = "estimate"
    widget._stack_mode.value = "per_slice"
    click_run(qtbot, widget)
    out = viewer.layers[-1]
    assert out.data.shape == (3, 128, 128)
    assert out.metadata["mzsr"]["kernel_estimate"]["slice"] == [1]


def test_refinements_are_applied_and_recorded(make_napari_viewer, qtbot, model_path):
    viewer = make_napari_viewer()
    viewer.add_image(_blurred(), name="cells")
    widget = _dock(viewer, model_path)
    click_run(qtbot, widget)
    plain = viewer.layers[-1].data
    widget._ensemble.value = "median"
    widget._back_projection.value = 2
    click_run(qtbot, widget)
    out = viewer.layers[-1]
    assert out.data.shape == plain.shape
    assert np.abs(out.data.astype(int) - plain).max() > 0
    assert out.metadata["mzsr"]["self_ensemble"] == "median"
    assert out.metadata["mzsr"]["back_projection"] == 2
