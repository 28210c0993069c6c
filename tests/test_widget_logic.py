"""The widget's logic without a display: messages, model choice, time left, the preview
region, result placement for console users and the model table."""

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_mzsr.plugin.geometry import result_placement, visible_region
from napari_mzsr.plugin.jobs import JobProgress, TimeLeft, choose, format_seconds, plain_message


@pytest.mark.parametrize(
    ("api", "widget"),
    [
        (
            "float image values span [-3, 40], outside [0, 1]; use normalization 'auto', "
            "'percentile' or 'minmax', or scale the data to [0, 1]",
            "float image values span [-3, 40], outside [0, 1]; set 'intensities' to 'auto', "
            "'percentiles 0.1-99.9' or 'min-max', or scale the data to [0, 1]",
        ),
        ("steps must be an integer >= 0, got -1", "'steps' must be an integer >= 0, got -1"),
        ("tile must be an integer >= 1, got 0", "'tile size' must be an integer >= 1, got 0"),
        (
            "no shipped model serves scale 3x3 (shipped: x2, x4); give a theta_M file as model",
            "no shipped model serves scale 3x3 (shipped: x2, x4); choose 'from file...' under "
            "'model' and a theta_M file",
        ),
        (
            "model 'direct-x2' supports scale 2, not 2.5x2.5; choose another model (or none: "
            "one is chosen by the scale)",
            "'model' 'direct-x2' supports scale 2, not 2.5x2.5; choose another model (or "
            "'auto': one is chosen by the scale)",
        ),
    ],
)
def test_messages_name_the_widget_controls(api, widget):
    assert plain_message(ValueError(api)) == widget


def test_memory_errors_point_to_the_tile_control():
    assert "'tile size'" in plain_message(MemoryError())
    assert plain_message(RuntimeError("boom")) == "RuntimeError: boom"


def _progress(steps_done, steps_total, slices_done, slices_total):
    return JobProgress(
        "cells", 1, 1, "adapt", steps_done, steps_total, slices_done, slices_total,
        steps_done, steps_total, slices_done, slices_total, 0.1,
    )  # fmt: skip


def test_time_left_counts_steps_and_slices_apart():
    now = [0.0]
    eta = TimeLeft(clock=lambda: now[0])
    assert eta.update(_progress(1, 10, 0, 3)) is None  # nothing timed yet
    now[0] = 2.0
    # One step took 2 s; no slice yet, so a slice is guessed at a step's time.
    assert eta.update(_progress(2, 10, 0, 3)) == pytest.approx(8 * 2 + 3 * 2)
    now[0] = 10.0
    # 9 steps in 10 s; the slices still guessed at a step's time.
    assert eta.update(_progress(10, 10, 0, 3)) == pytest.approx(3 * 10 / 9)
    now[0] = 15.0
    assert eta.update(_progress(10, 10, 1, 3)) == pytest.approx(2 * 5.0)  # a slice: 5 s
    assert format_seconds(4.2) == "about 4 s" and format_seconds(600) == "about 10 min"


def test_model_choice_follows_the_image_and_the_kernel():
    assert choose(None, (2.0, 2.0), rgb=False).name == "direct-x2-gray"
    assert choose(None, (2.0, 2.0), rgb=True).name == "direct-x2"
    bicubic = choose(None, (2.0, 2.0), True, "bicubic", "g^b_1.3")
    assert bicubic.name == "bicubic-x2" and bicubic.warnings == ()
    x4 = choose(None, (4.0, 4.0), rgb=False)
    assert x4.name == "direct-x4" and "RGB model" in x4.warnings[0]
    # Other factors: the scale-aware models; beyond x4 the model of the first step.
    assert choose(None, (3.0, 3.0), rgb=True).name == "arbitrary"
    assert choose(None, (2.5, 1.5), rgb=True).name == "arbitrary"
    assert choose(None, (6.0, 6.0), rgb=True).name == "arbitrary"
    grey = choose(None, (3.0, 3.0), rgb=False)
    assert grey.name == "arbitrary-gray" and grey.warnings == ()


def test_model_choice_says_when_no_shipped_model_serves_the_factors(monkeypatch):
    from napari_mzsr.io import model_file

    shipped = model_file.shipped_models()
    single = {k: v for k, v in shipped.items() if k.startswith(("direct", "bicubic"))}
    monkeypatch.setattr(model_file, "shipped_models", lambda: single)
    none = choose(None, (3.0, 3.0), rgb=True)
    assert none.name is None and "no shipped model serves scale 3x3" in none.warnings[0]


def test_visible_region_is_clipped_widened_and_cut():
    corners = np.array([[10.2, -5.0], [40.7, 300.0]])
    assert visible_region(corners, (64, 128), max_side=256) == (slice(10, 42), slice(0, 128))
    # Zoomed in on a few pixels: widened around the centre to the kernel's size.
    small = np.array([[30.0, 30.0], [33.0, 31.0]])
    assert visible_region(small, (64, 64), max_side=256, min_side=21) == (
        slice(22, 43),
        slice(21, 42),
    )
    # Zoomed out on a big image: the centre of the view.
    big = np.array([[0.0, 0.0], [999.0, 999.0]])
    assert visible_region(big, (1000, 1000), max_side=256) == (slice(372, 628), slice(372, 628))
    # Looking beside the image: all of it (cut to the centre).
    away = np.array([[500.0, 500.0], [600.0, 600.0]])
    assert visible_region(away, (40, 50), max_side=256) == (slice(0, 40), slice(0, 50))


def test_result_placement_overlays_like_the_widget():
    layer = SimpleNamespace(scale=[2.0, 0.5, 0.5], translate=[1.0, 10.0, 0.0])
    direct = result_placement(layer, 2, degradation="direct")
    np.testing.assert_allclose(direct["scale"], [2.0, 0.25, 0.25])
    np.testing.assert_allclose(direct["translate"], [1.0, 10.0, 0.0])
    bicubic = result_placement(layer, (2, 4), degradation="bicubic")
    np.testing.assert_allclose(bicubic["scale"], [2.0, 0.25, 0.125])
    np.testing.assert_allclose(bicubic["translate"], [1.0, 10.0 - 0.125, -0.1875])
    # Without a model the one the pipeline chooses: by default (the photo assumption,
    # area averaging) a bicubic model, with its pixel centres; direct-x2-gray for the
    # microscope preset.
    auto = result_placement(layer, 2)
    np.testing.assert_allclose(auto["translate"], [1.0, 9.875, -0.125])
    microscope = result_placement(layer, 2, kernel="microscope")
    np.testing.assert_allclose(microscope["translate"], direct["translate"])
    bicubic_preset = result_placement(layer, 2, kernel="g^b_1.3")
    np.testing.assert_allclose(bicubic_preset["translate"], [1.0, 9.875, -0.125])
    assert result_placement(layer, 2, model="bicubic-x2")["translate"][1] == 9.875


def test_result_placement_is_public_and_needs_no_torch():
    script = (
        "import sys\n"
        "from types import SimpleNamespace\n"
        "import napari_mzsr\n"
        "p = napari_mzsr.result_placement(SimpleNamespace(scale=[1, 1], translate=[0, 0]), 2,"
        " degradation='direct')\n"
        "print(p['scale'].tolist(), 'torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert out.strip() == "[0.5, 0.5] False"


def test_models_table_has_units_and_says_what_the_numbers_are():
    from napari_mzsr.cli.model_table import models_table, summarize
    from napari_mzsr.io.model_file import load_model

    summaries = [summarize(load_model(n).info) for n in ("direct-x2", "direct-x2-gray")]
    table = models_table(summaries)
    header, rule, first, second = table.splitlines()[:4]
    assert header.split() == ["model", "scales", "data", "subsampling", "PSNR", "0", "steps",
                              "1", "step", "10", "steps", "validation"]  # fmt: skip
    # One note for every model: the crops, which differ between models, are a column.
    assert first.endswith(f"{summaries[0].crops} crops of {summaries[0].crop} px")
    assert table.count("PSNR: mean dB") == 1
    assert set(rule) == {"-", " "}
    assert first.startswith("direct-x2 ") and first.count(" dB") == 3
    assert "grey (each channel)" in second
    assert "{" not in table and "validation {" not in table  # no raw dicts
    text = " ".join(table.split())
    assert "held-out training images" in text and "not the Set5/Set14 figures" in text
    assert summaries[1].label().startswith("direct-x2-gray: x2, grey (each channel), direct, ")
