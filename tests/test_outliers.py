"""Bright outliers keep their intensity through every entry (issue 31).

Quantitative fluorescence must never be clipped to the percentiles the intensity map
stretches: a few beads far above the 99.9th percentile must come out near their own
counts, clipped only to the output type's range. One uint16 stack with bright beads
goes through each entry: the 2-D image, stacks per slice and once, dask, OME-Zarr,
isotropic Z (API, command line, OME-Zarr), a calibrated profile, and the widget (its
normal Run and its isotropic-Z mode; those two need napari and a display, else skip).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
from gui_support import click_run, forget_choices, require_gui
from scipy import ndimage
from synthetic_pairs import scene

from napari_mzsr import (
    calibrate,
    super_resolve,
    super_resolve_axial,
    super_resolve_dask,
    super_resolve_stack,
)
from napari_mzsr.cli.main import main as cli
from napari_mzsr.core.intensity import intensity_map
from napari_mzsr.io.image_files import ImageMeta, read_image, write_zarr

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (6, 128, 128)
# (row, column, counts) of each bead: 2x2 pixels on slices 2-4, together 0.04% of the
# stack and 0.07% of a slice, so that the 99.9th percentile is the background's. The
# last is at uint16's top: it must come out clipped to the type, not wrapped.
BEADS = ((20, 30, 3092), (70, 90, 3092), (100, 40, 65535))
BEAD_SLICES = (2, 5)
SLICE = 3  # the 2-D image: a slice through every bead
# The fraction of its counts a bead keeps within a few pixels of where it lies.
KEPT = 0.85
MARGIN = 2


def bead_stack() -> np.ndarray:
    """uint16 (Z, Y, X): a smooth background of 100-500 counts and :data:`BEADS`."""
    rng = np.random.default_rng(0)
    smooth = ndimage.gaussian_filter(rng.random(SHAPE), 2)
    stack = np.rint(100 + 400 * (smooth - smooth.min()) / np.ptp(smooth)).astype(np.uint16)
    for row, col, counts in BEADS:
        stack[slice(*BEAD_SLICES), row : row + 2, col : col + 2] = counts
    return stack


def bead_image() -> np.ndarray:
    return bead_stack()[SLICE]


# --- the entries: each returns the result and its factor along each of its axes ---------

Result = tuple[np.ndarray, tuple[float, ...]]
RUN = {"steps": 1, "device": "cpu"}
AXIAL = {**RUN, "kernel": 1.0, "adapt_patch": 16, "adapt_patches": 2, "precision": "float32"}


def image_2d(model: Path, tmp_path: Path, request) -> Result:
    return super_resolve(bead_image(), scale=2, model=model, **RUN), (2, 2)


def stack_per_slice(model: Path, tmp_path: Path, request) -> Result:
    out = super_resolve_stack(bead_stack(), scale=2, mode="per_slice", model=model, **RUN)
    return out, (1, 2, 2)


def stack_once(model: Path, tmp_path: Path, request) -> Result:
    out = super_resolve_stack(bead_stack(), scale=2, mode="once", model=model, **RUN)
    return out, (1, 2, 2)


def dask_image(model: Path, tmp_path: Path, request) -> Result:
    import dask.array as da

    lazy = da.from_array(bead_image(), chunks=(64, 64))
    return super_resolve_dask(lazy, scale=2, model=model, **RUN).compute(), (2, 2)


def ome_zarr(model: Path, tmp_path: Path, request) -> Result:
    source = _write_ome_zarr(tmp_path)
    assert _cli(tmp_path, model, source) == 0
    return _read(tmp_path / "out" / "beads_x2_mzsr.ome.zarr"), (1, 2, 2)


def axial(model: Path, tmp_path: Path, request) -> Result:
    return super_resolve_axial(bead_stack(), z_factor=2, model=model, **AXIAL), (2, 1, 1)


def axial_cli(model: Path, tmp_path: Path, request) -> Result:
    tifffile.imwrite(tmp_path / "beads.tif", bead_stack())
    assert _cli(tmp_path, model, tmp_path / "beads.tif", *_AXIAL_FLAGS) == 0
    return _read(tmp_path / "out" / "beads_isoz_mzsr.tif"), (2, 1, 1)


def axial_ome_zarr(model: Path, tmp_path: Path, request) -> Result:
    source = _write_ome_zarr(tmp_path)
    assert _cli(tmp_path, model, source, *_AXIAL_FLAGS) == 0
    return _read(tmp_path / "out" / "beads_isoz_mzsr.ome.zarr"), (2, 1, 1)


def calibrated_profile(model: Path, tmp_path: Path, request) -> Result:
    hr = np.rint(scene(128, 0, channels=1)[..., 0] * 255).astype(np.uint8)
    lr = hr[::2, ::2]  # a "direct" camera: every other pixel
    profile = calibrate([(lr, hr)], 2, model=model, steps=1, device="cpu")
    return super_resolve(bead_image(), scale=2, model=profile, steps=0, device="cpu"), (2, 2)


def widget_run(model: Path, tmp_path: Path, request) -> Result:
    viewer, qtbot, widget = _widget(model, request)
    widget._image.value = viewer.add_image(bead_image(), name="beads")
    click_run(qtbot, widget)
    return np.asarray(viewer.layers[-1].data), (2, 2)


def widget_isotropic_z(model: Path, tmp_path: Path, request) -> Result:
    viewer, qtbot, widget = _widget(model, request)
    widget._image.value = viewer.add_image(bead_stack(), name="beads", scale=(0.4, 0.2, 0.2))
    widget._isotropic.value = True
    widget._axial_sigma.value = 1.0
    click_run(qtbot, widget)
    return np.asarray(viewer.layers[-1].data), (2, 1, 1)


_AXIAL_FLAGS = ("--axial", "--z-factor", "2", "--axial-kernel", "sigma:1.0")


def _cli(tmp_path: Path, model: Path, source: Path, *extra: str) -> int:
    out = str(tmp_path / "out")
    return cli(["run", str(source), "-o", out, "--model", str(model), "--steps", "1",
                "--device", "cpu", *extra])  # fmt: skip


def _write_ome_zarr(tmp_path: Path) -> Path:
    pytest.importorskip("zarr")
    axes = [{"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"]
    ngff = {"axes": axes, "scale": [0.4, 0.2, 0.2], "translation": [0.0, 0.0, 0.0]}
    path = tmp_path / "beads.ome.zarr"
    write_zarr(path, bead_stack(), ImageMeta("ome-zarr", "ZYX", ngff=ngff))
    return path


def _read(path: Path) -> np.ndarray:
    return np.asarray(read_image(path)[0])


def _widget(model: Path, request):
    """A viewer, qtbot and the docked widget set to run ``model`` on the CPU for one
    step; skips without napari, pytest-qt or a display."""
    require_gui()
    forget_choices(request.getfixturevalue("tmp_path_factory").mktemp("qsettings"))
    from napari_mzsr.plugin.widget import FROM_FILE

    viewer = request.getfixturevalue("make_napari_viewer")()
    qtbot = request.getfixturevalue("qtbot")
    _, widget = viewer.window.add_plugin_dock_widget("napari-mzsr", "MZSR super-resolution")
    widget._model.value = FROM_FILE
    widget._model_file.value = model
    widget._device.value = "cpu"
    widget._steps.value = 1
    return viewer, qtbot, widget


ENTRIES: dict[str, Callable[[Path, Path, pytest.FixtureRequest], Result]] = {
    "2-D": image_2d,
    "stack per slice": stack_per_slice,
    "stack once": stack_once,
    "dask": dask_image,
    "OME-Zarr": ome_zarr,
    "axial": axial,
    "axial cli": axial_cli,
    "axial OME-Zarr": axial_ome_zarr,
    "calibrated profile": calibrated_profile,
}
GUI_ENTRIES = {"widget Run": widget_run, "widget isotropic Z": widget_isotropic_z}


# --- the tests ------------------------------------------------------------------------


def test_the_beads_lie_far_beyond_the_percentile_bound():
    for data in (bead_stack(), bead_image()):
        bound = intensity_map(data).high
        assert bound < 600 and min(counts for *_, counts in BEADS) > 5 * bound


@pytest.mark.parametrize(
    "entry",
    [*ENTRIES, *(pytest.param(name, marks=pytest.mark.gui) for name in GUI_ENTRIES)],
)
def test_bright_outliers_survive(entry, tiny_gray_model, tmp_path, request):
    out, factors = {**ENTRIES, **GUI_ENTRIES}[entry](tiny_gray_model, tmp_path, request)
    shape = SHAPE[-len(factors) :]
    assert out.shape == tuple(round(n * f) for n, f in zip(shape, factors, strict=True))
    # Integer results are clipped to their type's range, and to nothing else.
    assert out.dtype == np.uint16
    spatial = (BEAD_SLICES,) if len(factors) == 3 else ()
    for row, col, counts in BEADS:
        extents = (*spatial, (row, row + 2), (col, col + 2))
        window = tuple(
            slice(max(0, int(lo * f) - MARGIN), int(hi * f) + MARGIN)
            for (lo, hi), f in zip(extents, factors, strict=True)
        )
        peak = int(out[window].max())
        assert peak >= KEPT * counts, f"{entry}: a bead of {counts} counts came out at {peak}"
