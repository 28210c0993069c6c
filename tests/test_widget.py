"""The napari plugin driven as a user drives it: dock the widget, pick options, click Run.

Needs napari, pytest-qt and an X display; run headless with ``xvfb-run -a pytest``.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
from gui_support import TIMEOUT_MS, click_run, fresh_choices, require_gui
from scipy import ndimage
from tiny_models import save_tiny_model

require_gui()

from napari_mzsr.plugin.jobs import AUTO
from napari_mzsr.plugin.widget import FROM_FILE, TOOLTIPS, MZSRWidget

pytestmark = pytest.mark.gui
__all__ = ["fresh_choices"]  # autouse: no remembered choices leak between tests

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


def _shown(control) -> bool:
    """Shown in the widget (``visible`` is False while the test window is hidden)."""
    return not control.native.isHidden()


def _start_long_run(qtbot, widget) -> None:
    widget._steps.value = 1000
    widget._run_button.native.click()
    qtbot.waitUntil(lambda: widget._progress.value >= 1, timeout=TIMEOUT_MS)
    assert widget.running


def test_dock_widget_opens_from_the_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    from napari_mzsr.io.model_file import shipped_models

    assert widget._model.value == AUTO
    assert widget._model_info.value.startswith("auto: ")
    # The model list gives each shipped model's scale, data and validation PSNR.
    items = [widget._model.native.itemText(i) for i in range(widget._model.native.count())]
    for name in shipped_models():
        (entry,) = [text for text in items if text.startswith(f"{name}:")]
        assert " dB" in entry and ("RGB" in entry or "grey" in entry) and "x" in entry
    assert not widget._cancel_button.enabled
    assert widget._device.choices[-1] == "cpu"
    assert widget._device.native.itemText(0).startswith("auto (")  # the detected device


def test_every_control_has_a_tooltip_and_help_opens(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    controls = [w for w in _leaves(widget) if not _is_display(w)]
    assert len(controls) >= 25
    missing = [w.label or getattr(w, "text", "") for w in controls if not w.tooltip]
    assert missing == []
    assert set(TOOLTIPS) == set(widget._controls)
    widget._help.native.linkActivated.emit("help")
    html = widget._help_dialog.findChildren(_text_browser())[0].toHtml()
    assert "direct-x2" in html and "held-out" in html and "tile size" in html
    # Every control on screen is explained there, the calibration section's too.
    text = widget._help_dialog.findChildren(_text_browser())[0].toPlainText()
    labels = [getattr(w, "text", None) or w.label for w in controls]
    assert [label for label in labels if label and label not in text] == []
    # A zero that means "automatic" says so.
    assert widget._tile.native.text() == "auto (free memory)"
    assert widget._threads.native.text() == "auto (free cores)"
    # The link is light enough for napari's dark theme.
    assert "color: #7fb8ff" in widget._help.value


def _text_browser():
    from qtpy.QtWidgets import QTextBrowser

    return QTextBrowser


def _leaves(container):
    from magicgui.widgets import Container

    for w in container:
        if isinstance(w, Container):
            yield from _leaves(w)
        else:
            yield w


def _is_display(widget) -> bool:
    from magicgui.widgets import Label, ProgressBar

    return isinstance(widget, Label | ProgressBar)


def _manifest():
    from npe2 import PluginManifest

    return PluginManifest.from_distribution(PLUGIN)


def test_manifest_contributions_and_preferences_offer_choices():
    from napari_mzsr.io.model_file import shipped_models

    contributions = _manifest().contributions
    assert [w.display_name for w in contributions.widgets] == [WIDGET]
    widget_command = contributions.widgets[0].command
    assert [m.command for m in contributions.menus["napari/layers/filter"]] == [widget_command]
    properties = contributions.configurations["defaults"].properties
    assert set(properties) == {"model", "device", "steps"}
    assert properties["model"].enum == ["auto", *sorted(shipped_models())]
    assert properties["device"].enum == ["auto", "cpu", "cuda", "mps"]


def test_plugin_settings_are_the_widget_defaults(make_napari_viewer, plugin_settings, npe2pm):
    from napari.settings import get_plugin_settings

    npe2pm.register(_manifest())  # plugin_settings isolates the plugin manager

    defaults = get_plugin_settings(PLUGIN).defaults
    assert (defaults.steps, defaults.device, defaults.model) == (10, "auto", "auto")
    with pytest.raises(ValueError, match="enum"):
        defaults.model = "no-such-model"
    defaults.steps = 3
    defaults.device = "cpu"
    defaults.model = "direct-x2-gray"
    _, widget = make_napari_viewer().window.add_plugin_dock_widget(PLUGIN, WIDGET)
    assert widget._steps.value == 3
    assert widget._device.value == "cpu"
    assert widget._model.value == "direct-x2-gray"


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
    assert out.name == "x2 2 steps · cells"
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
    threads = out.metadata["mzsr"]["cpu_threads"]
    assert set(threads) == {"adaptation", "inference"} and min(threads.values()) >= 1
    assert widget._progress.value == widget._progress.max == 3  # 2 steps + 1 slice
    assert widget._status.value.startswith("done in ")
    # uint16 data go through the 'auto' percentile mapping, and the status says so.
    assert "percentiles 0.1-99.9" in widget._status.value
    np.testing.assert_array_equal(layer.data, _image((30, 24), np.uint16))


def test_float_output_and_replace(make_napari_viewer, qtbot, model_path):
    viewer = make_napari_viewer()
    viewer.add_image(_image((24, 24)), name="scene")
    widget = _dock(viewer, model_path)
    widget._float_output.value = True
    click_run(qtbot, widget)
    assert viewer.layers[-1].data.dtype == np.float32

    widget._float_output.value = False
    widget._steps.value = 1
    click_run(qtbot, widget)  # without "replace" a re-run adds another layer
    assert [layer.name for layer in viewer.layers][1:] == [
        "x2 2 steps · scene",
        "x2 1 step · scene",
    ]

    widget._replace.value = True
    click_run(qtbot, widget)
    assert len(viewer.layers) == 2
    assert viewer.layers[1].data.dtype == np.uint8


def test_cancel_stops_and_adds_nothing(make_napari_viewer, qtbot, model_path):
    viewer = make_napari_viewer()
    viewer.add_image(_image((24, 24)), name="cells")
    widget = _dock(viewer, model_path)
    _start_long_run(qtbot, widget)
    assert widget._cancel_button.enabled and not widget._run_button.enabled
    widget._cancel_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)

    assert len(viewer.layers) == 1
    assert widget._status.value == "cancelled; nothing was added"
    assert widget._progress.value < widget._progress.max
    assert widget._run_button.enabled and not widget._cancel_button.enabled


def test_closing_the_dock_mid_run_stops_it(make_napari_viewer, qtbot, model_path):
    viewer = make_napari_viewer()
    viewer.add_image(_image((24, 24)), name="cells")
    widget = _dock(viewer, model_path)
    _start_long_run(qtbot, widget)
    from qtpy.QtWidgets import QDockWidget

    docks = viewer.window._qt_window.findChildren(QDockWidget)
    (dock,) = [d for d in docks if d.isAncestorOf(widget.native)]
    dock.title.close_button.click()  # the dock's "x"
    assert widget.native.parent() is None
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    qtbot.wait(100)
    assert len(viewer.layers) == 1
    assert widget._status.value == "cancelled: the widget was closed; nothing was added"


def test_deleting_the_input_layer_mid_run_stops_it_and_says_why(
    make_napari_viewer, qtbot, model_path
):
    viewer = make_napari_viewer()
    viewer.add_image(_image((24, 24)), name="cells")
    viewer.add_image(_image((24, 24), seed=3), name="other")
    widget = _dock(viewer, model_path)
    widget._image.value = viewer.layers["cells"]
    _start_long_run(qtbot, widget)
    viewer.layers.remove("other")  # not the input: the run goes on
    qtbot.wait(50)
    assert widget.running
    viewer.layers.remove("cells")
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert len(viewer.layers) == 0
    assert widget._status.value == (
        "cancelled: the input layer 'cells' was deleted; nothing was added"
    )


def test_bad_kernel_shows_the_reason_and_changes_nothing(
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
    assert widget._status.value.startswith("failed: ") and "square" in widget._status.value
    assert len(viewer.layers) == len(before)
    for (name, data), layer in zip(before, viewer.layers, strict=True):
        assert layer.name == name
        np.testing.assert_array_equal(layer.data, data)


def test_errors_in_the_worker_stay_visible_and_plain(make_napari_viewer, qtbot, model_path, errors):
    viewer = make_napari_viewer()
    viewer.add_image(_image((12, 12)), name="tiny")  # smaller than the 21x21 kernel
    widget = _dock(viewer, model_path)
    widget._kernel_kind.value = "isotropic"
    click_run(qtbot, widget)
    assert len(viewer.layers) == 1
    assert len(errors) == 1 and "too small" in errors[0]
    assert "Traceback" not in errors[0]
    qtbot.wait(50)  # nothing later overwrites the reason
    assert widget._status.value.startswith("failed: ") and "too small" in widget._status.value


def test_messages_name_the_controls(make_napari_viewer, qtbot, model_path, errors):
    viewer = make_napari_viewer()
    viewer.add_image(np.linspace(-3, 40, 24 * 24, dtype=np.float32).reshape(24, 24), name="f")
    widget = _dock(viewer, model_path)
    widget._normalization.value = "dtype"  # cannot map floats outside [0, 1]
    click_run(qtbot, widget)
    status = widget._status.value
    assert "'intensities'" in status and "'min-max'" in status
    assert "normalization" not in status and "minmax" not in status


def test_float_image_outside_unit_range_just_works(make_napari_viewer, qtbot, model_path):
    viewer = make_napari_viewer()
    data = np.linspace(-3, 40, 24 * 24, dtype=np.float32).reshape(24, 24)
    viewer.add_image(data, name="f")
    widget = _dock(viewer, model_path)
    assert widget._normalization.value == "auto"
    click_run(qtbot, widget)
    out = viewer.layers[-1]
    assert out.data.dtype == np.float32 and out.data.shape == (48, 48)
    assert "percentiles 0.1-99.9: -2.9" in widget._status.value
    assert out.metadata["mzsr"]["intensity_map"].startswith("percentiles 0.1-99.9")


def test_corrupt_model_file_is_reported(make_napari_viewer, qtbot, tmp_path, errors):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a model")
    viewer = make_napari_viewer()
    viewer.add_image(_image((24, 24)), name="cells")
    widget = _dock(viewer, bad)
    assert _shown(widget._model_warning)
    assert "not a readable theta_M file" in widget._model_warning.value
    assert not widget._run_button.enabled
    assert "not a readable theta_M file" in widget._run_button.tooltip
    widget.run()  # as from the console: refused with the reason
    assert not widget.running
    assert len(viewer.layers) == 1
    assert len(errors) == 1 and "not a readable theta_M file" in errors[0]


def test_model_is_chosen_from_the_image_and_the_kernel(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    grey = viewer.add_image(_image((24, 24)), name="grey")
    rgb = viewer.add_image(_image((24, 24, 3)), name="photo", rgb=True)
    widget = _dock(viewer)
    widget._image.value = rgb
    # The default kernel ("auto": the photo assumption) takes the bicubic model, which is
    # made for area-averaged data (same pixel centres): no warning.
    assert widget._model_info.value.startswith("auto: bicubic-x2:")
    assert not _shown(widget._model_warning)
    widget._kernel_kind.value = "preset"
    widget._preset.value = "microscope"
    widget._image.value = grey
    assert widget._model_info.value.startswith("auto: direct-x2-gray:")
    assert not _shown(widget._model_warning)
    widget._image.value = rgb
    assert widget._model_info.value.startswith("auto: direct-x2:")
    widget._preset.value = "g^b_1.3"  # a bicubic preset: the bicubic model
    assert widget._model_info.value.startswith("auto: bicubic-x2:")
    widget._preset.value = "g^d_2.0"
    widget._image.value = grey
    widget._scale.value = 4.0  # no grey x4 model: the RGB one, and the widget says so
    assert widget._model_info.value.startswith("auto: direct-x4:")
    assert _shown(widget._model_warning) and "RGB model" in widget._model_warning.value
    widget._scale.value = 3.0  # no single-scale model: the scale-aware one, for one channel
    assert widget._model_info.value.startswith("auto: arbitrary-gray:")
    assert "RGB model" not in widget._model_warning.value

    # A model chosen by hand that does not fit the image, the kernel or the factor.
    widget._scale.value = 2.0
    widget._model.value = "direct-x2"
    assert "direct-x2-gray (or 'auto') is made for it" in widget._model_warning.value
    widget._model.value = "bicubic-x2"
    assert "preset g^d_2.0 is for direct-subsampled data" in widget._model_warning.value
    widget._scale.value = 2.5
    assert "bicubic-x2 serves x2, not x2.5" in widget._model_warning.value

    widget._model.value = AUTO
    widget._scale.value = 2.0
    widget._steps.value = 1
    click_run(qtbot, widget)  # the shipped grey model on a tiny image
    assert viewer.layers[-1].metadata["mzsr"]["model"] == "direct-x2-gray"


def test_scale_controls_give_two_factors(make_napari_viewer, qtbot, tmp_path, errors):
    wide = save_tiny_model(tmp_path / "ms.pt", "tiny-ms", channels=1, scales=(1.5, 4.0))
    viewer = make_napari_viewer()
    viewer.add_image(_image((24, 24)), name="cells")
    widget = _dock(viewer, wide)
    widget._steps.value = 1
    assert (widget._scale.min, widget._scale.max, widget._scale.step) == (1.1, 8.0, 0.1)
    assert not _shown(widget._scale_x)
    widget._scale_x_on.value = True
    assert _shown(widget._scale_x) and widget._scale.label == "scale Y"
    widget._scale.value = 2.0
    widget._scale_x.value = 3.0
    click_run(qtbot, widget)
    out = viewer.layers[-1]
    assert out.name == "x2x3 1 step · cells"
    assert out.data.shape == (48, 72)
    assert out.metadata["mzsr"]["factor"] == [2.0, 3.0]
    widget._scale.value = 5.0  # beyond the model: said next to it, and Run waits
    assert "tiny-ms serves x1.5 to x4, not x5x3" in widget._model_warning.value
    assert not widget._run_button.enabled and not widget._preview_button.enabled
    assert "serves x1.5 to x4" in widget._run_button.tooltip
    widget.run()  # from the console, as clicking did: refused with the reason
    assert not widget.running and "serves x1.5 to x4" in widget._status.value
    widget._scale.value = 2.0
    assert widget._run_button.enabled and widget._preview_button.enabled


def test_stack_keeps_its_axes(make_napari_viewer, qtbot, model_path):
    viewer = make_napari_viewer()
    viewer.add_image(_image((3, 24, 24)), name="zstack", scale=(2.0, 1.0, 1.0))
    widget = _dock(viewer, model_path)
    assert widget._stack_mode.enabled
    widget._stack_mode.value = "per_slice"
    click_run(qtbot, widget)
    out = viewer.layers[-1]
    assert out.name == "x2 2 steps, per slice · zstack"
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
    assert out.name == "x2 2 steps, slice 2 · zstack"
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
    assert viewer.layers[-1].name == "x2 1 step, adapted once · tcyx"

    widget._image.value = rgb
    assert not widget._stack_mode.enabled
    click_run(qtbot, widget)
    out = viewer.layers[-1]
    assert out.rgb and out.data.shape == (48, 48, 3)
    np.testing.assert_allclose(out.translate, [-0.25, -0.25])


def test_all_channel_layers_in_one_run(make_napari_viewer, qtbot, model_path):
    viewer = make_napari_viewer()
    # uint16: each channel gets its own percentile mapping.
    channels = np.stack([_image((24, 24), np.uint16, seed=s) * (s + 1) for s in range(3)])
    viewer.add_image(channels, channel_axis=0, name=["DNA", "actin", "body"])
    viewer.add_image(_image((30, 30)), name="unrelated")
    widget = _dock(viewer, model_path)
    widget._image.value = viewer.layers["actin"]
    assert not _shown(widget._channel_mode)
    widget._scope.value = "channels"
    assert _shown(widget._channel_mode)
    assert widget._scope_info.value == "3 layers: actin, DNA, body"
    click_run(qtbot, widget)
    per_layer = {layer.name: layer for layer in viewer.layers[4:]}
    assert sorted(per_layer) == [f"x2 2 steps · {n}" for n in ("DNA", "actin", "body")]
    assert widget._progress.max == 3 * (2 + 1)  # one adaptation each
    assert widget._status.value.startswith("done in ") and "3 layers" in widget._status.value

    widget._channel_mode.value = "shared"
    click_run(qtbot, widget)
    shared = {layer.name: layer for layer in viewer.layers[7:]}
    assert sorted(shared) == [f"x2 2 steps, shared · {n}" for n in ("DNA", "actin", "body")]
    assert widget._progress.max == 2 + 3  # one adaptation, three inferences
    # The shared network is the one adapted on the chosen layer: same result there,
    # another one on the others.
    np.testing.assert_array_equal(
        shared["x2 2 steps, shared · actin"].data,
        per_layer["x2 2 steps · actin"].data,
    )
    assert not np.array_equal(
        shared["x2 2 steps, shared · body"].data,
        per_layer["x2 2 steps · body"].data,
    )
    # Each channel keeps its own intensity mapping.
    maps = {layer.metadata["mzsr"]["intensity_map"] for layer in shared.values()}
    assert len(maps) == 3


def test_every_selected_layer_in_one_run(make_napari_viewer, qtbot, model_path):
    viewer = make_napari_viewer()
    a = viewer.add_image(_image((24, 24)), name="a")
    viewer.add_image(_image((24, 24), seed=1), name="b")
    c = viewer.add_image(_image((24, 32), seed=2), name="c")
    widget = _dock(viewer, model_path)
    widget._steps.value = 1
    widget._image.value = c
    widget._scope.value = "selected"
    viewer.layers.selection = {a, c}
    assert widget._scope_info.value == "2 layers: c, a"
    click_run(qtbot, widget)
    assert [layer.name for layer in viewer.layers[3:]] == [
        "x2 1 step · c",
        "x2 1 step · a",
    ]
    assert viewer.layers[3].data.shape == (48, 64)


def test_choices_are_remembered_and_reset(make_napari_viewer, tmp_path, model_path):
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    chosen = {
        "_kernel_kind": "anisotropic",
        "_l1": 3.5,
        "_scale": 2.5,
        "_scale_x_on": True,
        "_scale_x": 3.0,
        "_steps": 7,
        "_stack_mode": "per_slice",
        "_replace": True,
        "_show_advanced": True,
        "_normalization": "minmax",
        "_ensemble": "median",
        "_back_projection": 4,
        "_tile": 128,
        "_lr": "0.005",
        "_scope": "channels",
        "_channel_mode": "shared",
        "_model": FROM_FILE,
        "_model_file": model_path,
    }
    for name, value in chosen.items():
        getattr(widget, name).value = value
    again = MZSRWidget(viewer)  # e.g. the next session
    for name, value in chosen.items():
        assert getattr(again, name).value == value, name
    assert _shown(again._advanced) and _shown(again._scale_x)
    # Said, not silent; and the way back is beside Run, not under 'advanced'.
    assert again._status.value.startswith("from your last session: ")
    assert "steps 7" in again._status.value and "scale Y 2.5" in again._status.value
    assert again._reset.native.parent() is again._run_button.native.parent()
    again._show_advanced.value = False
    assert _shown(again._reset)

    again._reset.native.click()
    assert again._status.value == "defaults restored"
    fresh = MZSRWidget(viewer)
    assert fresh._steps.value == 10 and fresh._kernel_kind.value == "auto"
    assert fresh._model.value == AUTO and fresh._tile.value == 0
    assert again._steps.value == 10 and again._scope.value == "layer"
    # Back-projection is the model's choice again (1 under the photo assumption).
    assert again._back_projection.native.text().startswith("auto")
    viewer.add_image(np.zeros((16, 16), np.uint8), name="any")
    again._image.reset_choices()
    assert again._values().back_projection is None


def test_a_former_memory_keeps_back_projection_on_auto(make_napari_viewer):
    """Memories written before back-projection had "auto" hold its former default, 0:
    that is not a choice, so the new default stands; a choice made since is kept."""
    from napari_mzsr.plugin import memory

    viewer = make_napari_viewer()
    memory.save({"back_projection": 0, "steps": 7})
    widget = MZSRWidget(viewer)
    assert widget._back_projection.value == -1 and widget._steps.value == 7
    memory.save({"memory_version": 2, "back_projection": 0})
    assert MZSRWidget(viewer)._back_projection.value == 0


def test_progress_shows_in_the_activity_panel_with_time_left(
    make_napari_viewer, qtbot, model_path, monkeypatch
):
    from napari.utils import progress

    bars = []

    class Recording(progress):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

    monkeypatch.setattr("napari_mzsr.plugin.widget.activity_progress", Recording)
    statuses = []
    on_progress = MZSRWidget._on_progress
    monkeypatch.setattr(
        MZSRWidget,
        "_on_progress",
        lambda self, p: (on_progress(self, p), statuses.append(self._status.value)),
    )
    viewer = make_napari_viewer()
    viewer.add_image(_image((2, 24, 24)), name="cells")
    widget = _dock(viewer, model_path)
    widget._steps.value = 4
    click_run(qtbot, widget)
    (bar,) = bars
    assert bar.total == 4 + 2 and bar.n == bar.total
    assert bar not in progress._all_instances  # closed when the run ended
    assert "MZSR: cells" in bar.desc
    assert any(" left" in s and "step" in s for s in statuses)
    assert all("left" not in s for s in statuses[-1:])


def test_tile_size_goes_to_inference(make_napari_viewer, qtbot, model_path, monkeypatch):
    viewer = make_napari_viewer()
    viewer.add_image(_image((40, 40)), name="cells")
    widget = _dock(viewer, model_path)
    click_run(qtbot, widget)
    untiled = viewer.layers[-1].data
    assert viewer.layers[-1].metadata["mzsr"]["tile"] == "auto"
    widget._show_advanced.value = True
    widget._tile.value = 16
    assert widget._make_job().apply.tile == 16
    click_run(qtbot, widget)
    assert viewer.layers[-1].metadata["mzsr"]["tile"] == 16
    # Tiles join exactly (up to float rounding).
    assert np.abs(viewer.layers[-1].data.astype(int) - untiled).max() <= 1


def test_preview_runs_one_step_on_the_visible_region(make_napari_viewer, qtbot, model_path):
    viewer = make_napari_viewer()
    layer = viewer.add_image(_image((2, 100, 120)), name="cells", scale=(1.0, 0.5, 0.5))
    viewer.dims.set_current_step(0, 1)
    widget = _dock(viewer, model_path)
    widget._steps.value = 3
    # What the canvas shows (napari updates this when it draws the view).
    layer.corner_pixels = np.array([[0, 30, 40], [0, 59, 89]])
    widget._preview_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    out = viewer.layers[-1]
    assert out.name == "x2 preview · cells"
    assert out.data.shape == (1, 60, 100)  # rows 30-59 and columns 40-89, x2
    assert out.metadata["mzsr"]["preview"] == {"region": [[30, 60], [40, 90]]}
    assert out.metadata["mzsr"]["steps"] == 1
    np.testing.assert_allclose(out.scale, [1.0, 0.25, 0.25])
    # bicubic model: first output centre a quarter of a pixel before input pixel (30, 40)
    np.testing.assert_allclose(out.translate, [1.0, 15.0 - 0.125, 20.0 - 0.125])
    assert widget._status.value.startswith("preview in ")

    click_run(qtbot, widget)  # the full run replaces the preview
    names = [x.name for x in viewer.layers]
    assert names == ["cells", "x2 3 steps, adapted once · cells"]


def test_preview_of_the_whole_view_is_cut_to_its_centre(make_napari_viewer, qtbot, model_path):
    from napari_mzsr.plugin.geometry import PREVIEW_MAX_SIDE

    viewer = make_napari_viewer()
    viewer.add_image(_image((300, 40)), name="tall")
    widget = _dock(viewer, model_path)
    widget.preview()  # before any draw: all of the slice, cut to the maximum
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    out = viewer.layers[-1]
    assert out.data.shape == (2 * PREVIEW_MAX_SIDE, 80)
    start = (300 - PREVIEW_MAX_SIDE) // 2
    assert out.metadata["mzsr"]["preview"]["region"][0] == [start, start + PREVIEW_MAX_SIDE]


def test_split_channels_are_separate_layers(make_napari_viewer, qtbot, model_path):
    viewer = make_napari_viewer()
    viewer.add_image(_image((2, 24, 24)), channel_axis=0, name=["DNA", "actin"])
    widget = _dock(viewer, model_path)
    widget._image.value = viewer.layers["actin"]
    click_run(qtbot, widget)
    assert viewer.layers[-1].name == "x2 2 steps · actin"
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


def test_degraded_sample_gets_the_direct_grey_model_on_the_original_grid(make_napari_viewer, qtbot):
    """The README's sample: one channel, blurred with g^d_2.0 and subsampled directly.
    'auto' picks direct-x2-gray, whose x2 result lands on the original's pixel grid."""
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "cells_degraded")
    widget = _dock(viewer)
    widget._kernel_kind.value = "preset"
    widget._preset.value = "g^d_2.0"
    assert widget._model_info.value.startswith("auto: direct-x2-gray:")
    assert not _shown(widget._model_warning)
    job = widget._make_job()
    assert job.tasks[0].options.model.info.name == "direct-x2-gray"


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


def test_napari_with_plugin_docks_the_widget(tmp_path):
    """``napari --with napari-mzsr`` (the CLI's viewer set-up, without its event loop)."""
    import os
    import subprocess

    script = (
        "import sys; sys.argv = ['napari', '--with', 'napari-mzsr']\n"
        "from napari.__main__ import _build_viewer\n"
        "viewer = _build_viewer()\n"
        "print(list(viewer.window.dock_widgets))\n"
        "viewer.close()\n"
    )
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path)}  # not the user's settings
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=env,
    )
    assert f"{WIDGET} ({PLUGIN})" in done.stdout


def test_the_dock_scrolls_on_a_laptop_screen(make_napari_viewer, qtbot):
    """With 'advanced' and the calibration section open the controls need more than a
    1366 x 768 screen; the dock scrolls instead of pushing Run off-screen."""
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1366, 768)
    widget = _dock(viewer)
    widget._show_advanced.value = True
    widget.calibration._show.value = True
    qtbot.wait(50)
    needed = widget._body.native.minimumSizeHint().height()
    assert needed > 768
    assert widget.native.minimumSizeHint().height() < 400
    dock = widget.native.parent()
    assert dock.height() <= 768
    widget._scroll.ensureWidgetVisible(widget._run_button.native)
    qtbot.wait(50)
    run = widget._run_button.native
    top = run.mapTo(widget._scroll.viewport(), run.rect().topLeft()).y()
    assert 0 <= top and top + run.height() <= widget._scroll.viewport().height()


def test_preview_estimates_the_kernel_on_the_whole_slice_as_run_does(
    make_napari_viewer, qtbot, model_path
):
    """The preview used to estimate its kernel on the visible region only, so its kernel
    was not the one Run would use."""
    viewer = make_napari_viewer()
    rng = np.random.default_rng(3)
    image = ndimage.gaussian_filter(rng.random((120, 140)), 1.2)
    layer = viewer.add_image((image / image.max() * 255).astype(np.uint8), name="cells")
    widget = _dock(viewer, model_path)
    widget._kernel_kind.value = "estimate"
    layer.corner_pixels = np.array([[10, 20], [59, 79]])
    widget._preview_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    preview = viewer.layers[-1].metadata["mzsr"]["kernel_estimate"]
    click_run(qtbot, widget)
    run = viewer.layers[-1].metadata["mzsr"]["kernel_estimate"]
    assert preview["covariance"] == run["covariance"]
