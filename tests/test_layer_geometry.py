"""Placement and naming of result layers (napari_mzsr.plugin.geometry). No GUI."""

import numpy as np
import pytest

from napari_mzsr.plugin.geometry import output_name, output_scale_translate


def _centres(scale, translate, n):
    return translate + scale * np.arange(n)


@pytest.mark.parametrize("factor", [2, 3, 2.5])
def test_result_pixels_tile_the_input_pixels(factor):
    scale, translate = output_scale_translate([0.5, 2.0], [10.0, -3.0], factor)
    for axis, (s, t) in enumerate([(0.5, 10.0), (2.0, -3.0)]):
        # Edges of the input's 8 pixels and of the result's 8 * factor pixels coincide.
        assert np.isclose(translate[axis] - scale[axis] / 2, t - s / 2)
        n_out = int(8 * factor)
        last_out = _centres(scale[axis], translate[axis], n_out)[-1]
        assert np.isclose(last_out + scale[axis] / 2, t + s * 7 + s / 2)


def test_issue_formula_and_leading_axes_untouched():
    scale, translate = output_scale_translate([3.0, 1.0, 1.0], [5.0, 0.0, 0.0], 2)
    np.testing.assert_allclose(scale, [3.0, 0.5, 0.5])
    np.testing.assert_allclose(translate, [5.0, -0.25, -0.25])


def test_current_slice_sits_at_its_index():
    scale, translate = output_scale_translate([2.0, 1.0, 1.0], [1.0, 0.0, 0.0], 2, slice_index=[3])
    np.testing.assert_allclose(scale, [2.0, 0.5, 0.5])
    np.testing.assert_allclose(translate, [7.0, -0.25, -0.25])


def test_rotation_moves_the_offset_with_the_layer():
    # Rotated 90 degrees: the data y axis points along world x.
    linear = np.array([[0.0, -1.0], [1.0, 0.0]])
    _, translate = output_scale_translate([1.0, 1.0], [0.0, 0.0], 2, linear=linear)
    np.testing.assert_allclose(translate, linear @ [-0.25, -0.25])


def test_bad_geometry_is_refused():
    with pytest.raises(ValueError, match="spatial axes"):
        output_scale_translate([1.0], [0.0], 2)
    with pytest.raises(ValueError, match=">= 1"):
        output_scale_translate([1.0, 1.0], [0.0, 0.0], 0.5)
    with pytest.raises(ValueError, match="slice axes"):
        output_scale_translate([1.0, 1.0, 1.0], [0.0] * 3, 2, slice_index=[1, 2])


def test_names():
    assert output_name("cells", 2) == "x2 · cells"
    assert output_name("scene", 2.5) == "x2.5 · scene"
    assert output_name("cells", 2, preview=True) == "x2 current slice · cells"


def test_direct_models_keep_the_input_origin():
    # Direct subsampling: output pixel 2 * i sits exactly on input pixel i.
    scale, translate = output_scale_translate([0.5, 2.0], [10.0, -3.0], 2, degradation="direct")
    np.testing.assert_allclose(scale, [0.25, 1.0])
    np.testing.assert_allclose(translate, [10.0, -3.0])
    with pytest.raises(ValueError, match="degradation"):
        output_scale_translate([1.0, 1.0], [0.0, 0.0], 2, degradation="nearest")


def _fake_layer(rgb=False):
    from types import SimpleNamespace

    return SimpleNamespace(
        name="cells", unique_id="id-7", rgb=rgb, rotate=np.eye(3) * 2, shear=np.ones(3),
        affine=SimpleNamespace(affine_matrix=np.eye(4) * 3), units=("um",) * 3,
        axis_labels=("z", "y", "x"), blending="additive", opacity=0.4,
        contrast_limits=(1.0, 9.0), gamma=0.8, colormap="magma",
        metadata={"acq": 1, "mzsr": {"old": True}},
    )  # fmt: skip


def test_layer_look_copies_the_inputs_look_and_records_the_run():
    """The one description of a result layer's look (widget and isotropic Z both)."""
    from napari_mzsr.plugin.geometry import layer_look

    src = _fake_layer()
    look = layer_look(src, scale=[1.0, 0.5, 0.5], translate=[0, 1, 2], settings={"steps": 3})
    assert look["rgb"] is False and look["colormap"] == "magma"
    for key in ("rotate", "shear", "units", "axis_labels", "blending", "opacity", "gamma"):
        assert look[key] is getattr(src, key)
    assert look["contrast_limits"] == (1.0, 9.0)
    np.testing.assert_array_equal(look["affine"], np.eye(4) * 3)
    np.testing.assert_array_equal(look["scale"], [1.0, 0.5, 0.5])
    np.testing.assert_array_equal(look["translate"], [0, 1, 2])
    assert look["metadata"] == {
        "acq": 1, "mzsr": {"source": "cells", "source_id": "id-7", "steps": 3}
    }  # fmt: skip
    assert src.metadata == {"acq": 1, "mzsr": {"old": True}}  # the input's is not touched
    rgb = layer_look(_fake_layer(rgb=True), scale=[1, 1], translate=[0, 0], settings={})
    assert rgb["rgb"] is True and "colormap" not in rgb
