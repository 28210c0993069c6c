"""The widget's "isotropic Z" mode (issue 19): the factor read from the layer's scale,
the run in the worker, the result over the input, cancelling.

Needs napari, pytest-qt and an X display; run headless with ``xvfb-run -a pytest``.
"""

import numpy as np
import pytest
from gui_support import TIMEOUT_MS, click_run, fresh_choices, require_gui
from scipy import ndimage
from tiny_models import save_tiny_model

require_gui()

from napari.layers import Image

from napari_mzsr.core.axial import axial_positions
from napari_mzsr.plugin.axial_job import axial_geometry, layer_z_factor
from napari_mzsr.plugin.widget import FROM_FILE, MZSRWidget

pytestmark = pytest.mark.gui
__all__ = ["fresh_choices"]


@pytest.fixture(scope="module")
def gray_model(tmp_path_factory):
    return save_tiny_model(
        tmp_path_factory.mktemp("models") / "tiny-gray.pt", "tiny-axial", channels=1
    )


def _stack(shape=(6, 32, 28), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.random(shape), 1.5)
    return ((smooth - smooth.min()) / np.ptp(smooth) * 250).astype(np.uint8)


def test_factor_from_the_layer_scale():
    factor, text = layer_z_factor(Image(_stack(), scale=(0.8, 0.2, 0.2)))
    assert factor == 4.0 and text == "Z x4 from the layer scale (0.8, 0.2, 0.2)"
    assert layer_z_factor(Image(_stack(), scale=(0.5, 0.2, 0.2)))[0] == 2.5
    for layer, why in (
        (Image(_stack()), "not coarser along Z"),
        (Image(_stack(), scale=(3.0, 0.2, 0.2)), "not 1-10"),
        (Image(_stack(), scale=(1.0, 0.2, 0.3)), "square"),
        (Image(_stack()[0]), "3 axes"),
        (Image(np.zeros((2, 4, 8, 8))), "3 axes"),
    ):
        factor, text = layer_z_factor(layer)
        assert factor is None and why in text, text


def test_result_geometry_overlays_the_input_even_rotated():
    for factor in (4.0, 2.5):
        scale, translate = axial_geometry((0.8, 0.2, 0.2), (5.0, 1.0, 2.0), factor)
        world_out = translate[0] + scale[0] * np.arange(8)
        np.testing.assert_allclose(world_out, 5.0 + 0.8 * axial_positions(8, factor))
    # The offset of the first slice (2.5: half a step less a fifth) turns with the layer.
    turn = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    _, moved = axial_geometry((0.8, 0.2, 0.2), (0.0, 0.0, 0.0), 2.5, turn)
    np.testing.assert_allclose(moved, [0.0, 0.8 * axial_positions(1, 2.5)[0], 0.0])


def _dock(viewer, model) -> MZSRWidget:
    _, widget = viewer.window.add_plugin_dock_widget("napari-mzsr", "MZSR super-resolution")
    widget._model.value = FROM_FILE
    widget._model_file.value = model
    widget._device.value = "cpu"
    widget._steps.value = 1
    return widget


def test_isotropic_z_mode_adds_an_isotropic_layer_over_the_input(
    make_napari_viewer, qtbot, gray_model
):
    viewer = make_napari_viewer()
    flat = viewer.add_image(_stack()[0], name="flat")
    widget = _dock(viewer, gray_model)
    widget._image.value = flat
    assert widget._isotropic.native.isHidden()  # 2-D: no isotropic Z
    same = viewer.add_image(_stack(), name="iso voxels")
    widget._image.value = same
    assert not widget._isotropic.native.isHidden() and not widget._isotropic.enabled
    assert "not coarser along Z" in widget._axial_info.value
    stack = viewer.add_image(_stack(), name="cells", scale=(0.8, 0.2, 0.2), translate=(3, 1, 2))
    widget._image.value = stack
    assert widget._isotropic.enabled
    assert widget._axial_info.value == "Z x4 from the layer scale (0.8, 0.2, 0.2)"
    widget._isotropic.value = True
    assert not widget._scale.enabled and not widget._kernel_kind.enabled
    # The model line names the model the volume runs with (the file chosen above).
    assert widget._model_info.value.startswith("tiny-axial: x2, grey")
    assert not widget._axial_sigma.native.isHidden()
    widget._axial_sigma.value = 1.0
    n_layers = len(viewer.layers)
    click_run(qtbot, widget)
    assert len(viewer.layers) == n_layers + 1, widget._status.value
    result = viewer.layers[-1]
    assert result.data.shape == (24, 32, 28) and result.data.dtype == np.uint8
    np.testing.assert_allclose(result.scale, (0.2, 0.2, 0.2))
    np.testing.assert_allclose(result.translate, (3, 1, 2))  # x4: input slice i = output 4i
    assert result.metadata["mzsr"]["mode"] == "isotropic Z"
    assert result.metadata["mzsr"]["z_factor"] == 4.0
    assert result.name == "Z x4 isotropic · cells"
    assert "Z x4, axial sigma 1.00 px (given)" in widget._status.value
    # No preview in this mode: the button says so instead of failing when clicked.
    assert not widget._preview_button.enabled
    assert "no preview in isotropic-Z mode" in widget._preview_button.tooltip
    # Back to 2-D super-resolution: its controls return.
    widget._isotropic.value = False
    assert widget._scale.enabled and widget._axial_sigma.native.isHidden()


def test_isotropic_z_run_cancels_and_adds_nothing(make_napari_viewer, qtbot, gray_model):
    viewer = make_napari_viewer()
    stack = viewer.add_image(_stack(), name="cells", scale=(0.6, 0.2, 0.2))
    widget = _dock(viewer, gray_model)
    widget._image.value = stack
    widget._isotropic.value = True
    widget._axial_sigma.value = 1.0
    widget._steps.value = 1000
    widget._run_button.native.click()
    qtbot.waitUntil(lambda: widget._progress.value >= 1, timeout=TIMEOUT_MS)
    assert "step" in widget._status.value
    assert widget._progress.max == 1000 + 1  # the axial run: 1000 steps, then one block
    widget._cancel_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert len(viewer.layers) == 1 and "cancelled" in widget._status.value


def test_a_z_factor_can_be_typed_for_a_layer_without_voxel_size(
    make_napari_viewer, qtbot, gray_model
):
    """An ImageJ TIFF opened in napari has scale (1, 1, 1): the mode was greyed out with
    no way to give the voxel size."""
    viewer = make_napari_viewer()
    stack = viewer.add_image(_stack(), name="tiff")
    _, widget = viewer.window.add_plugin_dock_widget("napari-mzsr", "MZSR super-resolution")
    widget._device.value = "cpu"
    widget._steps.value = 1
    widget._image.value = stack
    assert not widget._isotropic.enabled and not widget._z_factor.native.isHidden()
    widget._z_factor.value = 2.5
    assert widget._isotropic.enabled
    assert widget._axial_info.value == "Z x2.5 typed under 'Z factor'"
    widget._isotropic.value = True
    # 'auto' shows the model isotropic Z runs with, not the 2-D choice.
    assert widget._model_info.value.startswith("auto (isotropic Z): direct-x2-gray")
    widget._model.value = FROM_FILE
    widget._model_file.value = gray_model
    widget._axial_sigma.value = 1.0
    click_run(qtbot, widget)
    result = viewer.layers[-1]
    assert result.name == "Z x2.5 isotropic · tiff", widget._status.value
    assert result.data.shape[0] == 15 and result.metadata["mzsr"]["z_factor"] == 2.5
