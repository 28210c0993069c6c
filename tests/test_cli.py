import numpy as np
import pytest
import tifffile

from napari_mzsr import imresize
from napari_mzsr.cli.arguments import parse_kernel
from napari_mzsr.cli.batch import expand_inputs, output_path
from napari_mzsr.cli.main import main
from napari_mzsr.io.image_files import read_image, scaled_meta, write_image


def _smooth(shape, dtype=np.uint8, seed=0):
    """A smooth random image of ``shape``; a last axis of 3 means RGB."""
    rgb = shape[-1] == 3
    h, w = shape[-3:-1] if rgb else shape[-2:]
    rng = np.random.default_rng(seed)
    small = rng.random((h // 4 + 1, w // 4 + 1, 3) if rgb else (h // 4 + 1, w // 4 + 1))
    img = np.clip(imresize(small, 4), 0, 1)[:h, :w]
    return np.broadcast_to(img * np.iinfo(dtype).max * 0.8, shape).astype(dtype)


def _run(tmp_path, model, *inputs, extra=()):
    return main(
        [
            "run",
            *map(str, inputs),
            "-o",
            str(tmp_path / "out"),
            "--model",
            str(model),
            "--steps",
            "1",
            "--device",
            "cpu",
            *extra,
        ]
    )


def test_folder_with_a_corrupt_file(tmp_path, tiny_model, capsys):
    src = tmp_path / "in"
    src.mkdir()
    tifffile.imwrite(src / "a.tif", _smooth((40, 40)))
    tifffile.imwrite(src / "b.tif", _smooth((40, 48), seed=1))
    (src / "broken.tif").write_bytes(b"II*\x00 definitely not a tiff")
    code = _run(tmp_path, tiny_model, src)
    assert code == 1
    out = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert out == ["a_x2_mzsr.tif", "b_x2_mzsr.tif"]
    assert tifffile.imread(tmp_path / "out" / "b_x2_mzsr.tif").shape == (80, 96)
    assert "broken.tif" in capsys.readouterr().err


def test_refuses_to_overwrite_then_overwrites(tmp_path, tiny_model):
    tifffile.imwrite(tmp_path / "a.tif", _smooth((40, 40)))
    target = tmp_path / "out" / "a_x2_mzsr.tif"
    target.parent.mkdir()
    target.write_bytes(b"keep me")
    # Skipped, not failed: a rerun that completes a batch succeeds (hardening issue).
    assert _run(tmp_path, tiny_model, tmp_path / "a.tif") == 0
    assert target.read_bytes() == b"keep me"
    assert _run(tmp_path, tiny_model, tmp_path / "a.tif", extra=["--overwrite"]) == 0
    assert tifffile.imread(target).shape == (80, 80)


def test_missing_input_is_an_error(tmp_path, tiny_model):
    assert _run(tmp_path, tiny_model, tmp_path / "nothing-*.tif") == 1


def test_imagej_hyperstack_keeps_axes_dtype_and_scales_pixel_size(tmp_path, tiny_gray_model):
    data = _smooth((2, 3, 40, 44), np.uint16)
    tifffile.imwrite(
        tmp_path / "stack.tif",
        data,
        imagej=True,
        resolution=(1 / 0.5, 1 / 0.5),
        metadata={"axes": "ZCYX", "unit": "um", "spacing": 2.0},
    )
    assert _run(tmp_path, tiny_gray_model, tmp_path / "stack.tif") == 0
    with tifffile.TiffFile(tmp_path / "out" / "stack_x2_mzsr.tif") as tif:
        assert tif.series[0].axes == "ZCYX"
        assert tif.series[0].shape == (2, 3, 80, 88)
        assert tif.series[0].dtype == np.uint16
        np.testing.assert_allclose(tif.pages[0].resolution, (4.0, 4.0))  # 0.25 um pixels
        assert tif.imagej_metadata["unit"] == "um"
        assert tif.imagej_metadata["spacing"] == 2.0


def test_ome_tiff_physical_size_is_divided(tmp_path, tiny_model):
    data = _smooth((40, 40, 3))
    tifffile.imwrite(
        tmp_path / "img.ome.tif",
        data,
        ome=True,
        photometric="rgb",
        metadata={
            "axes": "YXS",
            "PhysicalSizeX": 0.3,
            "PhysicalSizeY": 0.4,
            "PhysicalSizeXUnit": "µm",
            "PhysicalSizeYUnit": "µm",
        },
    )
    assert _run(tmp_path, tiny_model, tmp_path / "img.ome.tif") == 0
    out, meta = read_image(tmp_path / "out" / "img_x2_mzsr.ome.tif")
    assert out.shape == (80, 80, 3) and meta.kind == "ome"
    assert meta.ome["PhysicalSizeX"] == pytest.approx(0.15)
    assert meta.ome["PhysicalSizeY"] == pytest.approx(0.2)
    assert meta.ome["PhysicalSizeXUnit"] == "µm"


def test_geotiff_pixel_scale_is_divided_and_tiepoint_moved(tmp_path, tiny_model):
    keys = (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32618)  # PixelIsArea
    extratags = [
        (33550, "d", 3, (30.0, 30.0, 0.0), True),
        (33922, "d", 6, (0.0, 0.0, 0.0, 101985.0, 2826915.0, 0.0), True),
        (34735, "H", len(keys), keys, True),
    ]
    tifffile.imwrite(
        tmp_path / "geo.tif", _smooth((40, 40, 3)), photometric="rgb", extratags=extratags
    )
    assert _run(tmp_path, tiny_model, tmp_path / "geo.tif") == 0
    with tifffile.TiffFile(tmp_path / "out" / "geo_x2_mzsr.tif") as tif:
        tags = tif.pages[0].tags
        np.testing.assert_allclose(tags[33550].value, (15.0, 15.0, 0.0))
        # The tiny model is "direct": the first pixel centre stays, the corner moves in.
        np.testing.assert_allclose(tags[33922].value, (0, 0, 0, 101992.5, 2826907.5, 0))
        assert tuple(tags[34735].value) == keys


@pytest.mark.parametrize(
    ("raster_type", "degradation", "expected"),
    [
        (1, "bicubic", (1000.0, 5000.0)),  # area, block-centred: the corner stays
        (1, "direct", (1007.5, 4992.5)),  # area, same first centre: corner moves in
        (2, "bicubic", (992.5, 5007.5)),  # point: the first centre moves out
        (2, "direct", (1000.0, 5000.0)),  # point, same first centre
    ],
)
def test_geotiff_tiepoint_follows_the_model_geometry(raster_type, degradation, expected):
    from napari_mzsr.io.image_files import ImageMeta

    keys = (1, 1, 0, 1, 1025, 0, 1, raster_type)
    meta = ImageMeta(
        "tiff",
        "YX",
        geotiff=[
            (33550, 12, 3, (30.0, 30.0, 0.0), True),
            (33922, 12, 6, (0.0, 0.0, 0.0, 1000.0, 5000.0, 0.0), True),
            (34735, 3, len(keys), keys, True),
        ],
    )
    tags = {t[0]: t[3] for t in scaled_meta(meta, 2, degradation).geotiff}
    np.testing.assert_allclose(tags[33922][3:5], expected)
    np.testing.assert_allclose(tags[33550], (15.0, 15.0, 0.0))


def test_imagej_origin_follows_the_model_geometry():
    from napari_mzsr.io.image_files import ImageMeta

    meta = ImageMeta("imagej", "YX", imagej={"xorigin": 10.0, "yorigin": 0.0})
    assert scaled_meta(meta, 2, "direct").imagej["xorigin"] == 20.0
    assert scaled_meta(meta, 2, "bicubic").imagej["xorigin"] == 20.5


def test_no_partial_file_when_writing_fails(tmp_path, monkeypatch):
    from napari_mzsr.io.image_files import ImageMeta

    def exploding_imwrite(path, data, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", exploding_imwrite)
    target = tmp_path / "result.tif"
    with pytest.raises(OSError, match="disk full"):
        write_image(target, np.zeros((4, 4), np.uint8), ImageMeta("tiff", "YX"))
    assert list(tmp_path.iterdir()) == []


def test_png_roundtrip_and_dpi(tmp_path, tiny_model):
    from PIL import Image

    Image.fromarray(_smooth((40, 40, 3))).save(tmp_path / "p.png", dpi=(72, 72))
    assert _run(tmp_path, tiny_model, tmp_path / "p.png") == 0
    with Image.open(tmp_path / "out" / "p_x2_mzsr.png") as im:
        assert im.size == (80, 80)
        assert round(im.info["dpi"][0]) == 144


def test_option_parsing_and_names(tmp_path):
    assert parse_kernel("iso:1.5") == 1.5
    assert parse_kernel("aniso:4,1,-0.5") == (4.0, 1.0, -0.5)
    assert parse_kernel("g^d_ani") == "g^d_ani"
    with pytest.raises(Exception, match="is not auto, iso"):
        parse_kernel("gauss")
    assert output_path(tmp_path / "x.ome.tif", tmp_path, 2).name == "x_x2_mzsr.ome.tif"
    assert output_path(tmp_path / "x.png", tmp_path, 2.5).name == "x_x2.5_mzsr.png"
    assert output_path(tmp_path / "x.jpg", tmp_path, 2).name == "x_x2_mzsr.png"
    assert output_path(tmp_path / "x.ome.zarr", tmp_path, (2, 3)).name == "x_x2x3_mzsr.ome.zarr"
    assert output_path(tmp_path / "x.ome.tif", tmp_path, 2, "ome-zarr").name == "x_x2_mzsr.ome.zarr"
    assert output_path(tmp_path / "x.ome.tif", tmp_path, 2, "tiff").name == "x_x2_mzsr.ome.tif"
    (tmp_path / "a.tif").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    files, missing = expand_inputs([str(tmp_path), str(tmp_path / "*.tif"), "nope.tif"])
    assert [f.name for f in files] == ["a.tif"] and missing == ["nope.tif"]


def test_demo_writes_result_and_picture_and_refuses_overwrite(tmp_path, tiny_model, capsys):
    args = [
        "demo",
        "-o",
        str(tmp_path),
        "--model",
        str(tiny_model),
        "--steps",
        "1",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "landsat_before_after.png",
        "landsat_input.tif",
        "landsat_mzsr_x2.tif",
        "landsat_original.tif",
    ]
    original = tifffile.imread(tmp_path / "landsat_original.tif")
    assert tifffile.imread(tmp_path / "landsat_mzsr_x2.tif").shape == original.shape
    assert "dB" in capsys.readouterr().out
    before = (tmp_path / "landsat_before_after.png").stat().st_mtime_ns
    assert main(args) == 1
    assert (tmp_path / "landsat_before_after.png").stat().st_mtime_ns == before


def _ngff_zarr(path, data, scale, translation, axes="czyx", units="micrometer"):
    """An OME-Zarr (NGFF 0.4) image written with zarr alone, as other tools write it."""
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array("0", data=data, chunks=(1,) * (data.ndim - 2) + (16, 16))
    kinds = {"t": "time", "c": "channel"}
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [
                {
                    "name": a,
                    "type": kinds.get(a, "space"),
                    **({} if a in kinds else {"unit": units}),
                }
                for a in axes
            ],
            "datasets": [
                {
                    "path": "0",
                    "coordinateTransformations": [
                        {"type": "scale", "scale": scale},
                        {"type": "translation", "translation": translation},
                    ],
                }
            ],
        }
    ]
    return path


def test_ome_zarr_in_and_out_lazily_with_pixel_sizes(tmp_path, tiny_gray_model, monkeypatch):
    pytest.importorskip("zarr")
    import dask.array as da
    import zarr

    data = _smooth((2, 3, 40, 44))
    src = _ngff_zarr(tmp_path / "cells.ome.zarr", data, [1, 2.0, 0.5, 0.4], [0, 5.0, 1.0, 2.0])
    computed = []  # the shapes of every dask array turned into numpy
    compute, to_numpy = da.Array.compute, da.Array.__array__
    monkeypatch.setattr(
        da.Array,
        "compute",
        lambda self, **kw: (computed.append(self.shape), compute(self, **kw))[1],
    )
    monkeypatch.setattr(
        da.Array,
        "__array__",
        lambda self, *a, **kw: (computed.append(self.shape), to_numpy(self, *a, **kw))[1],
    )
    assert _run(tmp_path, tiny_gray_model, src) == 0
    assert computed and all(np.prod(shape) < data.size for shape in computed)  # never all
    out = zarr.open_group(str(tmp_path / "out" / "cells_x2_mzsr.ome.zarr"), mode="r")
    assert out["0"].shape == (2, 3, 80, 88) and out["0"].dtype == np.uint8
    (multiscale,) = out.attrs["multiscales"]
    assert [a["name"] for a in multiscale["axes"]] == list("czyx")
    assert multiscale["axes"][-1]["unit"] == "micrometer"
    scale, translation = multiscale["datasets"][0]["coordinateTransformations"]
    np.testing.assert_allclose(scale["scale"], [1, 2.0, 0.25, 0.2])
    np.testing.assert_allclose(translation["translation"], [0, 5.0, 1.0, 2.0])  # direct model
    # The same as the in-memory run of the same pixels (up to rounding).
    tifffile.imwrite(tmp_path / "cells.ome.tif", data, ome=True, metadata={"axes": "CZYX"})
    assert _run(tmp_path, tiny_gray_model, tmp_path / "cells.ome.tif") == 0
    in_memory = tifffile.imread(tmp_path / "out" / "cells_x2_mzsr.ome.tif")
    assert np.abs(np.asarray(out["0"]).astype(int) - in_memory).max() <= 1
    assert not list((tmp_path / "out").glob(".*partial"))  # written atomically


def test_tiff_to_ome_zarr_keeps_the_physical_size(tmp_path, tiny_model):
    pytest.importorskip("zarr")
    import zarr

    tifffile.imwrite(
        tmp_path / "img.ome.tif",
        _smooth((40, 40, 3)),
        ome=True,
        photometric="rgb",
        metadata={"axes": "YXS", "PhysicalSizeX": 0.3, "PhysicalSizeY": 0.4},
    )
    assert _run(tmp_path, tiny_model, tmp_path / "img.ome.tif", extra=["--format", "ome-zarr"]) == 0
    out = zarr.open_group(str(tmp_path / "out" / "img_x2_mzsr.ome.zarr"), mode="r")
    assert out["0"].shape == (3, 80, 80)  # colours as channels before Y and X
    (multiscale,) = out.attrs["multiscales"]
    assert [a["name"] for a in multiscale["axes"]] == ["c", "y", "x"]
    scale = multiscale["datasets"][0]["coordinateTransformations"][0]["scale"]
    np.testing.assert_allclose(scale, [1.0, 0.2, 0.15])
    assert multiscale["axes"][1]["unit"] == "micrometer"


def test_jpeg_in_png_out_with_its_dpi(tmp_path, tiny_model):
    from PIL import Image

    Image.fromarray(_smooth((40, 48, 3))).save(tmp_path / "photo.jpg", quality=95, dpi=(300, 300))
    Image.fromarray(_smooth((40, 40), seed=2)).save(tmp_path / "scan.bmp")
    assert _run(tmp_path, tiny_model, tmp_path) == 0
    with Image.open(tmp_path / "out" / "photo_x2_mzsr.png") as im:
        assert im.size == (96, 80) and im.mode == "RGB"
        assert round(im.info["dpi"][0]) == 600  # pixels half as large
    with Image.open(tmp_path / "out" / "scan_x2_mzsr.png") as im:
        assert im.size == (80, 80) and im.mode == "L"


def test_the_input_check_knows_the_formats(tmp_path):
    from PIL import Image

    from napari_mzsr.cli.batch import check_inputs

    Image.fromarray(_smooth((24, 24))).save(tmp_path / "a.jpeg")
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (tmp_path / "c.webp").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    files, missing = expand_inputs([str(tmp_path)])
    assert [f.name for f in files] == ["a.jpeg", "b.jpg", "c.webp"] and missing == []
    readable, skipped, failed = check_inputs(files, tmp_path / "out")
    assert skipped == []
    assert [p.name for p in readable] == ["a.jpeg"]
    assert len(failed) == 2 and failed[0].startswith("b.jpg: cannot read image")
    with pytest.raises(ValueError, match="use TIFF, PNG, JPEG, BMP, WebP or OME-Zarr"):
        read_image(tmp_path / "notes.txt")


def test_ome_zarr_without_zarr_says_how_to_install(tmp_path, monkeypatch, capsys):
    import builtins

    from napari_mzsr.cli.batch import check_inputs

    real_import = builtins.__import__

    def no_zarr(name, *args, **kwargs):
        if name == "zarr" or name.startswith("zarr."):
            raise ImportError("No module named 'zarr'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_zarr)
    (tmp_path / "big.zarr").mkdir()
    files, _ = expand_inputs([str(tmp_path / "big.zarr")])
    _, _, failed = check_inputs(files, tmp_path / "out")
    (message,) = failed
    assert message.count("\n") == 0
    assert message.startswith("big.zarr: OME-Zarr needs the optional zarr and dask packages")
    assert "pip install 'zarr>=3' 'dask[array]'" in message


def test_progress_bars_count_steps_then_slices(tmp_path, tiny_gray_model, monkeypatch):
    import tqdm

    bars = []

    class Recording(tqdm.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

        def close(self):
            self.final = (self.n, self.total)
            super().close()

    monkeypatch.setattr(tqdm, "tqdm", Recording)
    tifffile.imwrite(tmp_path / "stack.tif", _smooth((3, 32, 32)), metadata={"axes": "ZYX"})
    tifffile.imwrite(tmp_path / "one.tif", _smooth((32, 32)))
    code = _run(tmp_path, tiny_gray_model, tmp_path / "one.tif", tmp_path / "stack.tif",
                extra=["--steps", "10"])  # fmt: skip
    assert code == 0
    finals = {bar.desc: bar.final for bar in bars}
    assert finals["one.tif: adapting"] == (10, 10)  # not 11
    assert finals["one.tif: slices"] == (1, 1)
    assert finals["stack.tif: adapting"] == (10, 10)
    assert finals["stack.tif: slices"] == (3, 3)
    assert finals["files"] == (2, 2)


def test_models_command_prints_a_table(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:4] == ["model", "scales", "data", "subsampling"]
    assert "direct-x2-gray" in out and " dB" in out and "{" not in out
    assert "not the Set5/Set14 figures of the docs" in " ".join(out.split())


def test_ome_zarr_0_5_metadata_is_read(tmp_path):
    pytest.importorskip("zarr")
    import zarr

    group = zarr.open_group(str(tmp_path / "v5.zarr"), mode="w", zarr_format=3)
    group.create_array("s0", data=_smooth((24, 32)), chunks=(8, 8))
    transforms = [{"type": "scale", "scale": [0.5, 0.25]}]
    group.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [
            {
                "axes": [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
                "datasets": [{"path": "s0", "coordinateTransformations": transforms}],
                "coordinateTransformations": [{"type": "scale", "scale": [2.0, 2.0]}],
            }
        ],
    }
    data, meta = read_image(tmp_path / "v5.zarr")
    assert meta.kind == "ome-zarr" and meta.axes == "YX" and data.shape == (24, 32)
    assert type(data).__module__.startswith("dask")  # nothing read yet
    np.testing.assert_allclose(meta.ngff["scale"], [1.0, 0.5])
    half = scaled_meta(meta, 2, "bicubic").ngff
    np.testing.assert_allclose(half["scale"], [0.5, 0.25])
    np.testing.assert_allclose(half["translation"], [-0.25, -0.125])


@pytest.mark.parametrize(
    "spec, message",
    [
        ("iso:-1", "variances must be positive"),
        ("iso:0", "variances must be positive"),
        ("aniso:1,-1,0", "variances must be positive"),
        ("iso:nan", "l1 must be finite"),
        ("aniso:inf,1,0", "l1 must be finite"),
        ("aniso:1,1,nan", "theta must be finite"),
    ],
)
def test_bad_kernel_variances_are_refused_naming_the_flag(spec, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["run", "missing.png", "--kernel", spec])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument --kernel: kernel {spec!r}" in err and message in err


def test_a_profile_runs_at_its_own_factor_when_none_or_a_near_one_is_given(tmp_path):
    """The README's calibration example typed --scale 2.8871 for a profile measured at
    2.8878 and was refused; now a factor within 0.1% is the profile's, and no --scale
    takes the profile's factor."""
    from tiny_models import save_tiny_model

    profile = save_tiny_model(
        tmp_path / "camera.pt", "camera", scales=(2.8878,), degradation="bicubic"
    )
    from PIL import Image

    image = tmp_path / "new.png"
    Image.fromarray(_smooth((20, 24, 3))).save(image)
    assert _run(tmp_path, profile, image) == 0
    out = tmp_path / "out" / "new_x2.8878_mzsr.png"
    assert read_image(out)[0].shape == (58, 70, 3)
    assert _run(tmp_path, profile, image, extra=("--scale", "2.8871", "--overwrite")) == 0
    assert read_image(out)[0].shape == (58, 70, 3)
    # Further than the measurement's precision: refused, naming what the model serves.
    assert _run(tmp_path, profile, image, extra=("--scale", "2.8", "--overwrite")) == 2


def test_version(capsys):
    import napari_mzsr

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"napari-mzsr {napari_mzsr.__version__}"


def test_the_readme_calibration_commands_run_as_written(tmp_path, monkeypatch):
    """The calibration page's two commands, copied as a user would (only fewer updates
    added, for time): the run takes the profile's own factor (it used to be refused)."""
    import re
    import shlex
    from pathlib import Path

    from PIL import Image

    from napari_mzsr import degrade, gaussian_kernel

    page = (Path(__file__).parents[1] / "docs" / "calibration.md").read_text()
    block = re.search(r"```bash\n(napari-mzsr calibrate .*?)```", page, re.S).group(1)
    commands = [shlex.split(line.split("#")[0]) for line in block.strip().splitlines()]
    assert [c[:2] for c in commands] == [["napari-mzsr", "calibrate"], ["napari-mzsr", "run"]]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pairs").mkdir()
    (tmp_path / "new").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        hr = np.clip(imresize(rng.random((54, 54, 3)), 3)[:160, :160], 0, 1)
        lr = np.clip(degrade(hr, gaussian_kernel(3.0, size=15), 2.5, "bicubic"), 0, 1)
        Image.fromarray(np.rint(lr * 255).astype(np.uint8)).save(f"pairs/{i:03d}L.png")
        Image.fromarray(np.rint(hr * 255).astype(np.uint8)).save(f"pairs/{i:03d}H.png")
    Image.fromarray(_smooth((30, 36, 3))).save("new/a.png")
    assert main([*commands[0][1:], "--steps", "2", "--device", "cpu"]) == 0
    assert main([*commands[1][1:], "--device", "cpu"]) == 0
    (written,) = (tmp_path / "out").iterdir()
    assert written.name == "a_x2.5_mzsr.png"
    assert read_image(written)[0].shape == (75, 90, 3)
