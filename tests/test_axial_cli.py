"""``napari-mzsr run --axial`` (issue 19): the factor from the file's voxel size (ImageJ,
OME-TIFF, OME-Zarr) or --z-factor, the output's Z step, channels, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from napari_mzsr.cli.axial import channel_axis, parse_axial_kernel
from napari_mzsr.cli.main import main
from napari_mzsr.io.image_files import ImageMeta, read_image, write_zarr
from napari_mzsr.io.voxels import axial_meta, voxel_size

pytestmark = pytest.mark.usefixtures("one_thread")


def _stack(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.random(shape), 1.5)
    return np.clip((smooth - smooth.min()) / np.ptp(smooth) * 60000, 0, 65535).astype(np.uint16)


def _axial(tmp_path, model, source, *extra):
    return main(
        [
            "run", str(source), "-o", str(tmp_path / "out"), "--axial", "--model", str(model),
            "--steps", "1", "--device", "cpu", "--axial-kernel", "sigma:1.0", *extra,
        ]
    )  # fmt: skip


def test_imagej_spacing_gives_the_factor_and_is_divided(tmp_path, tiny_gray_model, capsys):
    data = np.stack([_stack((5, 24, 20), seed=c) for c in range(2)], axis=1)  # ZCYX
    tifffile.imwrite(
        tmp_path / "cells.tif",
        data,
        imagej=True,
        resolution=(1 / 0.2, 1 / 0.2),
        metadata={"axes": "ZCYX", "unit": "um", "spacing": 0.8},
    )
    assert _axial(tmp_path, tiny_gray_model, tmp_path / "cells.tif") == 0
    assert "x4 along Z from the voxel size 0.8 x 0.2 x 0.2" in capsys.readouterr().out
    with tifffile.TiffFile(tmp_path / "out" / "cells_isoz_mzsr.tif") as tif:
        assert tif.series[0].axes == "ZCYX" and tif.series[0].shape == (20, 2, 24, 20)
        assert tif.series[0].dtype == np.uint16
        assert tif.imagej_metadata["spacing"] == pytest.approx(0.2)
        np.testing.assert_allclose(tif.pages[0].resolution, (5.0, 5.0))  # XY unchanged


def test_ome_physical_size_with_units_and_the_z_factor_option(tmp_path, tiny_gray_model):
    data = _stack((4, 24, 24))
    metadata = {
        "axes": "ZYX", "PhysicalSizeZ": 600.0, "PhysicalSizeZUnit": "nm",
        "PhysicalSizeY": 0.2, "PhysicalSizeX": 0.2,
    }  # fmt: skip
    tifffile.imwrite(tmp_path / "s.ome.tif", data, ome=True, metadata=metadata)
    _, meta = read_image(tmp_path / "s.ome.tif")
    assert voxel_size(meta) == pytest.approx((0.6, 0.2, 0.2))  # nm -> µm
    assert _axial(tmp_path, tiny_gray_model, tmp_path / "s.ome.tif") == 0
    out, out_meta = read_image(tmp_path / "out" / "s_isoz_mzsr.ome.tif")
    assert out.shape == (12, 24, 24)
    assert out_meta.ome["PhysicalSizeZ"] == pytest.approx(200.0)  # 600 nm / 3
    # --z-factor wins over the file.
    extra = ("--z-factor", "2", "--overwrite")
    assert _axial(tmp_path, tiny_gray_model, tmp_path / "s.ome.tif", *extra) == 0
    assert read_image(tmp_path / "out" / "s_isoz_mzsr.ome.tif")[0].shape == (8, 24, 24)


def test_a_file_without_a_z_step_needs_the_z_factor(tmp_path, tiny_gray_model, capsys):
    tifffile.imwrite(tmp_path / "plain.tif", _stack((4, 24, 24)))
    assert _axial(tmp_path, tiny_gray_model, tmp_path / "plain.tif") == 1
    assert "give --z-factor" in capsys.readouterr().err
    assert _axial(tmp_path, tiny_gray_model, tmp_path / "plain.tif", "--z-factor", "2.5") == 0
    assert tifffile.imread(tmp_path / "out" / "plain_isoz_mzsr.tif").shape == (10, 24, 24)
    # The result is not taken as an input of a rerun on the output folder.
    assert _axial(tmp_path, tiny_gray_model, tmp_path / "out", "--z-factor", "2") == 0
    assert "an output of napari-mzsr" in capsys.readouterr().err


def test_ome_zarr_axial_writes_ome_zarr_with_the_z_scale(tmp_path, tiny_gray_model):
    zarr = pytest.importorskip("zarr")
    axes = [{"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"]
    ngff = {"axes": axes, "scale": [1.0, 0.25, 0.25], "translation": [3.0, 0.0, 0.0]}
    write_zarr(
        tmp_path / "v.ome.zarr", _stack((4, 24, 24)), ImageMeta("ome-zarr", "ZYX", ngff=ngff)
    )
    assert _axial(tmp_path, tiny_gray_model, tmp_path / "v.ome.zarr") == 0
    out = zarr.open_group(str(tmp_path / "out" / "v_isoz_mzsr.ome.zarr"), mode="r")
    assert out["0"].shape == (16, 24, 24)
    scale, translation = out.attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"]
    np.testing.assert_allclose(scale["scale"], [0.25, 0.25, 0.25])
    np.testing.assert_allclose(translation["translation"], [3.0, 0.0, 0.0])  # x4: direct


def test_axes_kernels_and_the_bicubic_grid_offset():
    assert channel_axis("ZYX") is None and channel_axis("CZYX") == 0
    assert channel_axis("QYX") is None  # a plain multi-page TIFF: its pages are Z
    for axes in ("TZYX", "YX", "ZYXS", "QQYX"):
        with pytest.raises(ValueError, match="needs a"):
            channel_axis(axes)
    assert parse_axial_kernel("fwhm:3") == {"fwhm": 3.0}
    ngff = {"axes": [{"name": n} for n in "zyx"], "scale": [1.0, 0.4, 0.4], "translation": [0] * 3}
    moved = axial_meta(ImageMeta("ome-zarr", "ZYX", ngff=ngff), 2.5, -0.3)
    assert moved.ngff["scale"][0] == pytest.approx(0.4)
    assert moved.ngff["translation"][0] == pytest.approx(-0.3)


@pytest.mark.parametrize(
    "extra, flag", [(("--ensemble", "mean"), "--ensemble"), (("--back-projection", "2"), "--back")]
)
def test_axial_refuses_the_image_only_flags(tmp_path, tiny_gray_model, capsys, extra, flag):
    """--ensemble and --back-projection have no axial counterpart: refused, not ignored."""
    tifffile.imwrite(tmp_path / "plain.tif", _stack((4, 24, 24)))
    assert _axial(tmp_path, tiny_gray_model, tmp_path / "plain.tif", "--z-factor", "2", *extra) == 2
    err = capsys.readouterr().err
    assert flag in err and "--axial" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "plain_isoz_mzsr.tif").exists()


def test_refused_flags_are_reported_when_every_output_exists(tmp_path, tiny_gray_model, capsys):
    """A re-run that would skip every file still refuses a flag it cannot honour."""
    tifffile.imwrite(tmp_path / "plain.tif", _stack((4, 24, 24)))
    assert _axial(tmp_path, tiny_gray_model, tmp_path / "plain.tif", "--z-factor", "2") == 0
    written = (tmp_path / "out" / "plain_isoz_mzsr.tif").read_bytes()
    capsys.readouterr()
    extra = ("--z-factor", "2", "--ensemble", "mean")
    assert _axial(tmp_path, tiny_gray_model, tmp_path / "plain.tif", *extra) == 2
    assert "--ensemble" in capsys.readouterr().err
    assert (tmp_path / "out" / "plain_isoz_mzsr.tif").read_bytes() == written


def test_ome_zarr_axis_units_are_converted():
    """OME-Zarr axes may give each its own unit: the sizes are converted to µm (an axis
    with an unknown unit, or units on some axes only, gives no voxel size)."""

    def meta(units, scale=(1.0, 250.0, 250.0)):
        axes = [
            {"name": n, "type": "space", **({"unit": u} if u else {})}
            for n, u in zip("zyx", units, strict=True)
        ]
        return ImageMeta("ome-zarr", "ZYX", ngff={"axes": axes, "scale": list(scale)})

    assert voxel_size(meta(("micrometer", "nanometer", "nanometer"))) == pytest.approx(
        (1.0, 0.25, 0.25)
    )
    assert voxel_size(meta(("millimeter",) * 3, (0.002, 0.0005, 0.0005))) == pytest.approx(
        (2.0, 0.5, 0.5)
    )
    assert voxel_size(meta((None,) * 3, (2.0, 0.5, 0.5))) == (2.0, 0.5, 0.5)  # one unit
    assert voxel_size(meta(("micrometer", None, None))) is None
    assert voxel_size(meta(("parsec", "micrometer", "micrometer"))) is None
