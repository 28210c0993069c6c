"""The widget's "calibrate from pairs" section (napari, under ``xvfb-run -a``)."""

from __future__ import annotations

import numpy as np
import pytest
from gui_support import TIMEOUT_MS, fresh_choices, require_gui
from PIL import Image as PILImage
from tiny_models import save_tiny_model

require_gui()

from napari_mzsr.core.degradation import degrade
from napari_mzsr.core.kernels import gaussian_kernel
from napari_mzsr.core.resize import imresize
from napari_mzsr.io.model_file import load_model
from napari_mzsr.plugin.jobs import AUTO
from napari_mzsr.plugin.widget import FROM_FILE, MZSRWidget

pytestmark = pytest.mark.gui
__all__ = ["fresh_choices"]  # autouse: no remembered choices leak between tests
PLUGIN, WIDGET = "napari-mzsr", "MZSR super-resolution"
SCALE = 2.5


def real_like_pair(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    hr = np.clip(imresize(rng.random((54, 54, 3)), 3)[:160, :160], 0, 1)
    lr = np.clip(degrade(hr, gaussian_kernel(3.0, size=15), SCALE, "bicubic"), 0, 1)
    return (np.rint(lr * 255).astype(np.uint8), np.rint(hr * 255).astype(np.uint8))


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny.pt", "tiny-cal")


def _dock(viewer, model_path) -> MZSRWidget:
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    widget._model.value = FROM_FILE
    widget._model_file.value = model_path
    widget._device.value = "cpu"
    section = widget.calibration
    section._show.value = True
    section._scale.value = SCALE
    section._method.value = "finetune"
    section._steps.value = 3
    return widget


def _calibrate(qtbot, section) -> None:
    section._calibrate_button.native.click()
    qtbot.waitUntil(lambda: not section.running, timeout=TIMEOUT_MS)


def test_calibrate_from_layers_saves_and_selects_the_profile(
    make_napari_viewer, qtbot, model_path, tmp_path
):
    viewer = make_napari_viewer()
    lr, hr = real_like_pair(0)
    viewer.add_image(lr, name="short focal", rgb=True)
    viewer.add_image(hr, name="long focal", rgb=True)
    widget = _dock(viewer, model_path)
    section = widget.calibration
    section._lr.value = viewer.layers["short focal"]
    section._hr.value = viewer.layers["long focal"]
    target = tmp_path / "camera.pt"
    section._save_to.value = target
    _calibrate(qtbot, section)
    assert section._status.value.startswith("saved camera.pt"), section._status.value
    assert section._progress.value == 3
    profile = load_model(target)
    assert profile.info.training["method"] == "finetune"
    assert profile.info.training["pairs"][0]["name"] == "short focal / long focal"
    assert profile.info.training["base_model"]["name"] == "tiny-cal"
    # The profile is now the chosen model, at its scale, and a run uses it.
    assert widget._model.value == str(target)
    assert widget._scale.value == SCALE
    assert widget.current_model().info.name == "camera"
    # Adding a layer refreshes every list of the widget: the profile stays chosen.
    viewer.add_image(lr[:, :, 0], name="another")
    assert widget._model.value == str(target)
    widget._image.value = viewer.layers["short focal"]
    widget._steps.value = 1
    widget._run_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert viewer.layers[-1].data.shape == hr.shape, widget._status.value
    # Never overwritten without the box ticked.
    before = target.read_bytes()
    _calibrate(qtbot, section)
    assert "camera.pt exists: tick 'replace existing file'" in section._status.value
    assert target.read_bytes() == before
    section._overwrite.value = True
    _calibrate(qtbot, section)
    assert section._status.value.startswith("saved camera.pt") and target.read_bytes() != before


def test_a_saved_profile_is_listed_after_a_restart_until_removed(make_napari_viewer, tmp_path):
    profile_path = save_tiny_model(tmp_path / "camera.pt", "camera")
    first = make_napari_viewer()
    _, widget = first.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    widget.calibration.add_profile(load_model(profile_path), profile_path)
    first.close()
    second = make_napari_viewer()
    second.add_image(np.zeros((8, 8)), name="image")
    _, widget = second.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    assert str(profile_path) in widget._model.choices
    # The last session's choice comes back with it.
    assert widget._model.value == str(profile_path)
    assert not widget._forget_model.native.isHidden()
    widget._forget_model.native.click()
    assert str(profile_path) not in widget._model.choices
    assert widget._model.value == AUTO and profile_path.is_file()
    _, third = make_napari_viewer().window.add_plugin_dock_widget(PLUGIN, WIDGET)
    assert str(profile_path) not in third._model.choices


def test_a_profile_joins_the_loaded_models(
    make_napari_viewer, qtbot, model_path, tmp_path, monkeypatch
):
    viewer = make_napari_viewer()
    lr, hr = real_like_pair(0)
    viewer.add_image(lr, name="lr", rgb=True)
    viewer.add_image(hr, name="hr", rgb=True)
    widget = _dock(viewer, model_path)
    base = widget.current_model()
    section = widget.calibration
    section._lr.value, section._hr.value = viewer.layers["lr"], viewer.layers["hr"]
    section._save_to.value = tmp_path / "camera.pt"
    _calibrate(qtbot, section)
    assert widget.current_model().info.name == "camera", section._status.value

    def no_reading(source):
        raise AssertionError(f"read {source} again")

    # Back to the starting model: still loaded, not read from its file again.
    monkeypatch.setattr("napari_mzsr.io.model_file.load_model", no_reading)
    widget._model.value = FROM_FILE
    assert widget.current_model() is base


def test_calibrate_from_a_folder_and_a_misregistered_pair(
    make_napari_viewer, qtbot, model_path, tmp_path
):
    folder = tmp_path / "pairs"
    folder.mkdir()
    for i in (1, 2):
        lr, hr = real_like_pair(i)
        PILImage.fromarray(lr).save(folder / f"{i:03d}_LR.png")
        PILImage.fromarray(hr).save(folder / f"{i:03d}_HR.png")
    viewer = make_napari_viewer()
    widget = _dock(viewer, model_path)
    section = widget.calibration
    section._source.value = "folder"
    section._folder.value = folder
    section._save_to.value = tmp_path / "scope"
    _calibrate(qtbot, section)
    assert section._status.value.startswith("saved scope.pt"), section._status.value
    assert [p["name"] for p in load_model(tmp_path / "scope.pt").info.training["pairs"]] == [
        "001",
        "002",
    ]
    # A shifted HR image: refused before anything runs, with the measured shift.
    hr = np.asarray(PILImage.open(folder / "002_HR.png"))
    PILImage.fromarray(np.roll(hr, 5, axis=1)).save(folder / "002_HR.png")
    section._save_to.value = tmp_path / "other.pt"
    _calibrate(qtbot, section)
    assert "002: misregistered: measured shift" in section._status.value
    assert not (tmp_path / "other.pt").exists()


def test_the_pair_scale_is_measured_unless_typed_and_a_wrong_one_is_refused(
    make_napari_viewer, qtbot, model_path, tmp_path
):
    """City100 stores the short-focal shot at the long-focal size: from layers, 'auto'
    measures its interpolation period and calibrates at it; a typed factor that does
    not fit is refused with the measured one (it used to calibrate a wrong profile)."""
    lr, hr = real_like_pair(0)
    stored = imresize(lr.astype(np.float64), output_shape=hr.shape[:2])
    stored = np.clip(np.rint(stored), 0, 255).astype(np.uint8)
    viewer = make_napari_viewer()
    viewer.add_image(stored, name="short", rgb=True)
    viewer.add_image(hr, name="long", rgb=True)
    widget = _dock(viewer, model_path)
    section = widget.calibration
    section._scale.value = section._scale.min  # 'auto', as after Reset
    assert section._scale.native.text().startswith("auto")
    section._lr.value, section._hr.value = viewer.layers["short"], viewer.layers["long"]
    section._save_to.value = tmp_path / "city.pt"
    seen = []
    section._calibrate_button.native.click()
    # Queued to this thread, so connected before the first update arrives.
    section.worker.yielded.connect(lambda _: seen.append(section._status.value))
    qtbot.waitUntil(lambda: not section.running, timeout=TIMEOUT_MS)
    assert section._status.value.startswith("saved city.pt"), section._status.value
    assert "x2.5" in section._status.value
    (measured,) = load_model(tmp_path / "city.pt").info.scales
    assert measured == pytest.approx(2.5, abs=2e-3) and widget._scale.value == measured
    assert any(text.endswith(" left") for text in seen), seen
    section._scale.value = 2.0
    section._overwrite.value = True
    _calibrate(qtbot, section)
    refusal = f"'pair scale' 2 does not fit short / long: measured {measured:g}"
    assert refusal in section._status.value


def test_calibration_can_be_cancelled(make_napari_viewer, qtbot, model_path, tmp_path):
    viewer = make_napari_viewer()
    lr, hr = real_like_pair(3)
    viewer.add_image(lr, name="lr", rgb=True)
    viewer.add_image(hr, name="hr", rgb=True)
    widget = _dock(viewer, model_path)
    section = widget.calibration
    section._lr.value, section._hr.value = viewer.layers["lr"], viewer.layers["hr"]
    section._steps.value = 10_000
    section._save_to.value = tmp_path / "never.pt"
    section._calibrate_button.native.click()
    qtbot.waitUntil(lambda: section._progress.value >= 1, timeout=TIMEOUT_MS)
    section._cancel_button.native.click()
    qtbot.waitUntil(lambda: not section.running, timeout=TIMEOUT_MS)
    assert "cancelled" in section._status.value and not (tmp_path / "never.pt").exists()
