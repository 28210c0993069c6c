"""Placement, pixel sizes and metadata of results with two factors (sy, sx)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_mzsr.io.image_files import ImageMeta, first_centre, scaled_meta
from napari_mzsr.plugin.geometry import output_scale_translate


@pytest.mark.parametrize("factors", [(2.0, 3.5), (1.5, 4.0), (3.0, 1.0)])
def test_result_pixels_tile_the_input_pixels_per_axis(factors):
    scale, translate = output_scale_translate([0.4, 0.3], [5.0, -2.0], factors)
    np.testing.assert_allclose(scale, [0.4 / factors[0], 0.3 / factors[1]])
    # The first result pixel's outer edge is the input's outer edge, on each axis.
    np.testing.assert_allclose(translate - scale / 2, np.array([5.0, -2.0]) - [0.2, 0.15])


def test_direct_subsampling_keeps_the_origin_on_decimated_axes_only():
    _, translate = output_scale_translate([1.0, 1.0], [0.0, 0.0], (2.0, 2.5), degradation="direct")
    # Rows: factor 2, decimated, input pixel i is output pixel 2 i. Columns: 2.5 is
    # resized, centred, as bicubic.
    np.testing.assert_allclose(translate, [0.0, -1.5 / 5.0])
    assert first_centre(2.0, "direct") == 0.0 and first_centre(2.5, "direct") == -0.3


def test_metadata_follow_each_factor():
    meta = ImageMeta(
        "ome",
        "YX",
        resolution=(10.0, 20.0),  # TIFF order: X, Y
        ome={"PhysicalSizeX": 0.7, "PhysicalSizeY": 0.4},
        imagej={"xorigin": 10.0, "yorigin": 4.0},
    )
    out = scaled_meta(meta, (2.0, 3.5), "bicubic")
    assert out.resolution == (35.0, 40.0)
    np.testing.assert_allclose([out.ome["PhysicalSizeX"], out.ome["PhysicalSizeY"]], [0.2, 0.2])
    np.testing.assert_allclose(out.imagej["xorigin"], (10.0 + 2.5 / 7.0) * 3.5)
    np.testing.assert_allclose(out.imagej["yorigin"], (4.0 + 0.25) * 2.0)
