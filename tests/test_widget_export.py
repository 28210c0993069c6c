"""The widget's "Export..." buttons: a BioImage.IO package of the last run's adapted model
and of the last camera profile (napari, under ``xvfb-run -a``)."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import yaml
from gui_support import TIMEOUT_MS, click_run, fresh_choices, require_gui
from test_widget_calibration import _calibrate, real_like_pair
from test_widget_calibration import _dock as _calibration_dock
from tiny_models import save_tiny_model

require_gui()
bioimageio_core = pytest.importorskip("bioimageio.core")

from napari_mzsr.io.model_file import load_model
from napari_mzsr.plugin.widget import FROM_FILE

pytestmark = pytest.mark.gui
__all__ = ["fresh_choices"]  # autouse: no remembered choices leak between tests


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("models") / "t.pt", "tiny-export")


@pytest.fixture
def save_as(monkeypatch, tmp_path):
    """The save dialog answers with ``tmp_path / name``."""
    chosen = {}

    def answer(parent, suggestion):
        chosen["suggestion"] = suggestion
        return tmp_path / "package.zip"

    monkeypatch.setattr("napari_mzsr.plugin.export_job.ask_package_path", answer)
    return chosen


def _wait_export(qtbot, owner) -> None:
    qtbot.waitUntil(lambda: owner._exporter.worker is None, timeout=TIMEOUT_MS)


def test_export_after_a_run(make_napari_viewer, qtbot, model_path, save_as, tmp_path):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    viewer.add_image(rng.integers(0, 200, (32, 40, 3)).astype(np.uint8), name="photo", rgb=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-mzsr", "MZSR super-resolution")
    widget._model.value = FROM_FILE
    widget._model_file.value = model_path
    widget._device.value = "cpu"
    widget._steps.value = 1
    assert not widget._export_button.enabled  # nothing to export before a run
    widget._preview_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert not widget._export_button.enabled  # a preview is not a model of the image
    click_run(qtbot, widget)
    assert widget._export_button.enabled, widget._status.value
    widget._export_button.native.click()
    _wait_export(qtbot, widget)
    assert widget._status.value.startswith("exported package.zip"), widget._status.value
    assert save_as["suggestion"] == "tiny-export-adapted.zip"
    model = load_model(tmp_path / "package.zip")
    assert model.info.training["adapted"]["steps_taken"] == 1
    rdf = yaml.safe_load(zipfile.ZipFile(tmp_path / "package.zip").read("rdf.yaml"))
    assert rdf["inputs"][0]["axes"][1]["channel_names"] == ["red", "green", "blue"]
    assert bioimageio_core.test_model(str(tmp_path / "package.zip")).status == "passed"


def test_export_after_a_calibration(make_napari_viewer, qtbot, model_path, save_as, tmp_path):
    viewer = make_napari_viewer()
    lr, hr = real_like_pair(0)
    viewer.add_image(lr, name="short focal", rgb=True)
    viewer.add_image(hr, name="long focal", rgb=True)
    section = _calibration_dock(viewer, model_path).calibration
    section._lr.value = viewer.layers["short focal"]
    section._hr.value = viewer.layers["long focal"]
    section._save_to.value = tmp_path / "camera.pt"
    assert not section._export_button.enabled
    _calibrate(qtbot, section)
    assert section._export_button.enabled, section._status.value
    section._export_button.native.click()
    _wait_export(qtbot, section)
    assert section._status.value.startswith("exported package.zip"), section._status.value
    rdf = yaml.safe_load(zipfile.ZipFile(tmp_path / "package.zip").read("rdf.yaml"))
    assert rdf["config"]["napari-mzsr"]["kind"] == "camera profile"
    assert rdf["config"]["napari-mzsr"]["scale"] == [2.5, 2.5]
    assert bioimageio_core.test_model(str(tmp_path / "package.zip")).status == "passed"
