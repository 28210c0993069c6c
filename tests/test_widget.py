"""The napari plugin driven as a user drives it: dock the widget, pick options, click Run.

Needs napari, pytest-qt and an X display; run headless with ``xvfb-run -a pytest``.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
from gui_support import TIMEOUT_MS, click_run, require_gui
from tiny_models import save_tiny_model

require_gui()

from napari_mzsr.plugin.widget import FROM_FILE, MZSRWidget

pytestmark = pytest.mark.gui

PLUGIN = "napari-mzsr"
WIDGET = "MZSR super-resolution"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return save_tiny_model(
        tmp_path_factory.mktemp("models") / "tiny.pt", "tiny-gui", degradation="bicubic"
    )


@pytest.fixture
def errors(monkeypatch) -> list[str]:
    """Messages the widget shows as napari error notifications."""
    shown: list[str] = []
    monkeypatch.setattr("napari_mzsr.plugin.widget.show_error", shown.append)
    return shown


def _image(shape, dtype=np.uint8, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 200, shape).astype(dtype)


def _dock(viewer, model_path=None) -> MZSRWidget:
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    assert isinstance(widget, MZSRWidget)
    if model_path is not None:
        widget._model.value = FROM_FILE
        widget._model_file.value = model_path
    widget._device.value = "cpu"
    widget._steps.value = 2
    return widget


def test_dock_widget_opens_from_the_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    from napari_mzsr.io.model_file import shipped_models

    shipped = sorted(shipped_models())
    if shipped:  # the first shipped model is selected and described
        assert widget._model.value in shipped
        assert widget._model_info.value.startswith(f"{widget._model.value}:")
    else:
        assert widget._model_info.value.startswith("choose a model file")
    assert not widget._cancel_button.enabled
    assert widget._device.choices[-1] == "cpu"
    assert widget._device.native.itemText(0).startswith("auto (")  # the detected device


def _manifest():
    from npe2 import PluginManifest

    return PluginManifest.from_distribution(PLUGIN)


def test_manifest_contributions():
    contributions = _manifest().contributions
    assert [w.display_name for w in contributions.widgets] == [WIDGET]
    widget_command = contributions.widgets[0].command
    assert [m.command for m in contributions.menus["napari/layers/filter"]] == [widget_command]
    properties = contributions.configurations["defaults"].properties
    assert set(properties) == {"model", "device", "steps"}


def test_plugin_settings_are_the_widget_defaults(make_napari_viewer, plugin_settings, npe2pm):
    from napari.settings import get_plugin_settings

    npe2pm.register(_manifest())  # plugin_settings isolates the plugin manager

    defaults = get_plugin_settings(PLUGIN).defaults
    assert (defaults.steps, defaults.device, defaults.model) == (10, "auto", "")
    defaults.steps = 3
    defaults.device = "cpu"
    _, widget = make_napari_viewer().window.add_plugin_dock_widget(PLUGIN, WIDGET)
    assert widget._steps.value == 3
    assert widget._device.value == "cpu"


def test_run_adds_one_layer_that_overlays_the_input(make_napari_viewer, qtbot, model_path):
    viewer = make_napari_viewer()
    layer = viewer.add_image(
        _image((30, 24), np.uint16),
        name="cells",
        scale=(0.5, 0.25),
        translate=(10.0, -4.0),
        colormap="magma",
        blending="additive",
        contrast_limits=(5, 150),
        units=("um", "um"),
        axis_labels=("y", "x"),
    )
    widget = _dock(viewer, model_path)
    click_run(qtbot, widget)

    assert len(viewer.layers) == 2
    out = viewer.layers[-1]
    assert out.name == "cells x2 (MZSR)"
    assert out.data.shape == (60, 48)
    assert out.data.dtype == np.uint16
    np.testing.assert_allclose(out.scale, [0.25, 0.125])
    np.testing.assert_allclose(out.translate, [10.0 - 0.125, -4.0 - 0.0625])
    assert out.colormap.name == "magma"
    assert out.blending == "additive"
    assert tuple(out.contrast_limits) == (5, 150)
    assert out.units == layer.units
    assert out.axis_labels == ("y", "x")
    assert out.metadata["mzsr"]["model"] == "tiny-gui"
    assert out.metadata["mzsr"]["steps"] == 2
    assert widget._progress.value == widget._progress.max == 3  # 2 steps + 1 slice
    assert "loss" in widget._status.value
    np.testing.assert_array_equal(layer.data, _image((30, 24), np.uint16))


def test_float_output_and_replace(make_napari_viewer, qtbot, model_path):
    viewer = make_napari_viewer()
    viewer.add_image(_image((24, 24)), name="scene")
    widget = _dock(viewer, model_path)
    widget._float_output.value = True
    click_run(qtbot, widget)
    assert viewer.layers[-1].data.dtype == np.float32

    widget._float_output.value = False
    click_run(qtbot, widget)  # without "replace" a re-run adds another layer
    assert [layer.name for layer in viewer.layers][1:] == ["scene x2 (MZSR)", "scene x2 (MZSR) [1]"]

    widget._replace.value = True
    click_run(qtbot, widget)
    assert len(viewer.layers) == 2
    assert viewer.layers[1].data.dtype == np.uint8


def test_cancel_stops_and_adds_nothing(make_napari_viewer, qtbot, model_path):
    viewer = make_napari_viewer()
    viewer.add_image(_image((24, 24)), name="cells")
    widget = _dock(viewer, model_path)
    widget._steps.value = 1000
    widget._run_button.native.click()
    qtbot.waitUntil(lambda: widget._progress.value >= 1, timeout=TIMEOUT_MS)
    assert widget._cancel_button.enabled and not widget._run_button.enabled
    widget._cancel_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)

    assert len(viewer.layers) == 1
    assert widget._status.value == "cancelled"
    assert widget._progress.value < widget._progress.max
    assert widget._run_button.enabled and not widget._cancel_button.enabled


def test_bad_kernel_shows_an_error_and_changes_nothing(
    make_napari_viewer, qtbot, model_path, errors
):
    viewer = make_napari_viewer()
    viewer.add_image(_image((24, 24)), name="cells")
    viewer.add_image(np.ones((4, 6)), name="not a kernel")
    widget = _dock(viewer, model_path)
    widget._kernel_kind.value = "layer"
    widget._kernel_layer.value = viewer.layers["not a kernel"]
    assert "square" in widget._kernel_preview.native.text()
    before = [(layer.name, layer.data.copy()) for layer in viewer.layers]

    widget._run_button.native.click()
    assert not widget.running
    assert len(errors) == 1 and "square" in errors[0]
    assert len(viewer.layers) == len(before)
    for (name, data), layer in zip(before, viewer.layers, strict=True):
        assert layer.name == name
        np.testing.assert_array_equal(layer.data, data)


def test_errors_in_the_worker_are_shown_plainly(make_napari_viewer, qtbot, model_path, errors):
    viewer = make_napari_viewer()
    viewer.add_image(_image((12, 12)), name="tiny")  # smaller than the 21x21 kernel
    widget = _dock(viewer, model_path)
    click_run(qtbot, widget)
    assert len(viewer.layers) == 1
    assert len(errors) == 1 and "too small" in errors[0]
    assert "Traceback" not in errors[0]


def test_corrupt_model_file_is_reported(make_napari_viewer, qtbot, tmp_path, errors):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a model")
    viewer = make_napari_viewer()
    viewer.add_image(_image((24, 24)), name="cells")
    widget = _dock(viewer, bad)
    assert "not a readable theta_M file" in widget._model_info.value
    widget._run_button.native.click()
    assert not widget.running
    assert len(viewer.layers) == 1
    assert len(errors) == 1 and "not a readable theta_M file" in errors[0]


def test_stack_keeps_its_axes(make_napari_viewer, qtbot, model_path):
    viewer = make_napari_viewer()
    viewer.add_image(_image((3, 24, 24)), name="zstack", scale=(2.0, 1.0, 1.0))
    widget = _dock(viewer, model_path)
    assert widget._stack_mode.enabled
    widget._stack_mode.value = "per_slice"
    click_run(qtbot, widget)
    out = viewer.layers[-1]
    assert out.data.shape == (3, 48, 48)
    np.testing.assert_allclose(out.scale, [2.0, 0.5, 0.5])
    np.testing.assert_allclose(out.translate, [0.0, -0.25, -0.25])
    assert widget._progress.max == 3 * 2 + 3
    assert out.metadata["mzsr"]["stack_mode"] == "per_slice"


def test_current_slice_only(make_napari_viewer, qtbot, model_path):
    viewer = make_napari_viewer()
    viewer.add_image(_image((3, 24, 24)), name="zstack", scale=(2.0, 1.0, 1.0))
    viewer.dims.set_current_step(0, 2)
    widget = _dock(viewer, model_path)
    widget._current_only.value = True
    click_run(qtbot, widget)
    out = viewer.layers[-1]
    assert out.name == "zstack x2 (MZSR, current slice)"
    assert out.data.shape == (1, 48, 48)
    np.testing.assert_allclose(out.translate, [4.0, -0.25, -0.25])
    assert out.metadata["mzsr"]["slice"] == [2]


def test_multichannel_and_rgb_keep_their_axes(make_napari_viewer, qtbot, model_path):
    viewer = make_napari_viewer()
    viewer.add_image(_image((2, 2, 24, 24)), name="tcyx")  # time and channel axes
    rgb = viewer.add_image(_image((24, 24, 3), seed=1), name="photo", rgb=True)
    widget = _dock(viewer, model_path)
    widget._steps.value = 1
    widget._image.value = viewer.layers["tcyx"]
    click_run(qtbot, widget)
    assert viewer.layers[-1].data.shape == (2, 2, 48, 48)

    widget._image.value = rgb
    assert not widget._stack_mode.enabled
    click_run(qtbot, widget)
    out = viewer.layers[-1]
    assert out.rgb and out.data.shape == (48, 48, 3)
    np.testing.assert_allclose(out.translate, [-0.25, -0.25])


def test_split_channels_are_separate_layers(make_napari_viewer, qtbot, model_path):
    viewer = make_napari_viewer()
    viewer.add_image(_image((2, 24, 24)), channel_axis=0, name=["DNA", "actin"])
    widget = _dock(viewer, model_path)
    widget._image.value = viewer.layers["actin"]
    click_run(qtbot, widget)
    assert viewer.layers[-1].name == "actin x2 (MZSR)"
    assert viewer.layers[-1].data.shape == (48, 48)


@pytest.mark.parametrize("key", [sample.key for sample in _manifest().contributions.sample_data])
def test_every_sample_opens(make_napari_viewer, key):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, key)
    assert len(viewer.layers) == (3 if key == "cells" else 1)
    for layer in viewer.layers:
        assert layer.data.dtype == np.uint8
        assert layer.data.shape[:2] == ((128, 128) if "degraded" in key else (256, 256))
    if "degraded" in key:
        layer = viewer.layers[0]
        assert "g^d_2.0" in layer.name
        info = layer.metadata["mzsr_degradation"]
        assert info["factor"] == 2 and "variance 2" in info["kernel"]
        np.testing.assert_allclose(layer.scale, [2.0, 2.0])
        np.testing.assert_allclose(layer.translate, [0.0, 0.0])  # direct: pixel i = 2i


def test_direct_model_result_lands_on_the_original_grid(make_napari_viewer, qtbot, tmp_path):
    """A direct-subsampling model puts output pixel 2i on input pixel i, so the x2 result
    of the degraded sample overlays the original sample pixel for pixel."""
    direct = save_tiny_model(tmp_path / "direct.pt", "tiny-direct")
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "landsat_degraded")
    widget = _dock(viewer, direct)
    click_run(qtbot, widget)
    out = viewer.layers[-1]
    assert out.data.shape[:2] == (256, 256)
    np.testing.assert_allclose(out.scale, [1.0, 1.0])
    np.testing.assert_allclose(out.translate, [0.0, 0.0])


def test_napari_with_plugin_docks_the_widget():
    """``napari --with napari-mzsr`` (the CLI's viewer set-up, without its event loop)."""
    import subprocess

    script = (
        "import sys; sys.argv = ['napari', '--with', 'napari-mzsr']\n"
        "from napari.__main__ import _build_viewer\n"
        "viewer = _build_viewer()\n"
        "print(list(viewer.window.dock_widgets))\n"
        "viewer.close()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert f"{WIDGET} ({PLUGIN})" in done.stdout
