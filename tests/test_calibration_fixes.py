"""Calibration fixes: the profile file round trip (plain and scale-aware), the context,
pair folders with two files of one kind, one drive loop, defaults defined once."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from synthetic_pairs import camera_pair
from tiny_models import save_tiny_model

from napari_mzsr import calibrate, load_model, save_model
from napari_mzsr.io.pair_files import find_pairs

pytestmark = pytest.mark.usefixtures("one_thread")
SCALE = 2.0


def pair(seed: int, side: int = 128) -> tuple[np.ndarray, np.ndarray]:
    return camera_pair(seed, side=side, scale=SCALE, variance=2.0, kernel_size=13)


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("fix") / "plain.pt"
    return str(save_tiny_model(path, "plain", features=8, lr_schedule=[[0, 2e-2], [1, 1e-2]]))


@pytest.fixture(scope="module")
def scale_aware(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("fix") / "aware.pt"
    return str(
        save_tiny_model(
            path, "aware", features=8, scales=(1.5, 4.0), degradation="bicubic",
            adaptation_layers=(2, 4),
        )
    )  # fmt: skip


@pytest.mark.parametrize("start", ["plain", "scale_aware"])
def test_calibrate_save_load_round_trip_keeps_every_field(start, request, tmp_path):
    start = request.getfixturevalue(start)
    profile = calibrate([pair(0)], SCALE, model=start, method="drtl", steps=1, name="cam")
    path = save_model(tmp_path / "cam.pt", profile.state_dict, profile.info)
    loaded = load_model(path)
    base = load_model(start).info
    for field in dataclasses.fields(base):
        if field.name not in ("name", "scales", "degradation", "training"):
            assert getattr(loaded.info, field.name) == getattr(base, field.name), field.name
    assert loaded.info.name == "cam" and loaded.info.scales == [SCALE]
    assert loaded.info.training["base_model"]["name"] == base.name
    for key, value in profile.state_dict.items():
        torch.testing.assert_close(loaded.state_dict[key], value)


def test_the_context_follows_the_receptive_radius(plain, scale_aware):
    from napari_mzsr.core.calibration import BICUBIC_TAPS, network_context

    for source in (plain, scale_aware):
        model = load_model(source)
        net = model.network("cpu", SCALE)
        assert network_context(net) == model.info.radius + BICUBIC_TAPS
    assert load_model(scale_aware).info.radius > load_model(plain).info.radius


@pytest.mark.parametrize(
    ("kind", "names"), [("LR", ("001L", "001_LR")), ("HR", ("001H", "001-hr"))]
)
def test_two_files_of_one_kind_for_a_key_are_refused_naming_both(tmp_path, kind, names):
    lr, hr = pair(0, side=32)
    Image.fromarray(lr).save(tmp_path / "001L.png")
    Image.fromarray(hr).save(tmp_path / "001H.png")
    Image.fromarray(lr if kind == "LR" else hr).save(tmp_path / f"{names[1]}.png")
    with pytest.raises(ValueError, match=f"two {kind} files for key '001'") as err:
        find_pairs(tmp_path)
    message = str(err.value)
    assert "\n" not in message and f"{names[0]}.png" in message and f"{names[1]}.png" in message


def test_drive_reports_cancels_and_closes_the_run():
    from napari_mzsr import Cancelled
    from napari_mzsr.pipeline.run import cancelled_units, drive

    closed = []

    def run():
        try:
            for step in range(3):
                yield SimpleNamespace(step=step, steps=3, done=step + 1, total=3, loss=0.5)
            return "finished"
        finally:
            closed.append(True)

    seen = []
    assert drive(run(), seen.append) == "finished" and [r.step for r in seen] == [0, 1, 2]
    with pytest.raises(Cancelled, match="cancelled after 2 of 3 steps"):
        drive(run(), cancel=iter([False, True]).__next__)
    assert closed == [True, True]
    with pytest.raises(Cancelled, match="cancelled after 1 of 3 units"):
        drive(run(), cancel=lambda: True, describe=cancelled_units)
    assert closed == [True, True, True]


def test_calibrate_progress_and_cancel_go_through_drive(plain, monkeypatch):
    from napari_mzsr import Cancelled
    from napari_mzsr.pipeline import calibrate as pipeline_calibrate

    calls = []
    real = pipeline_calibrate.drive
    monkeypatch.setattr(
        pipeline_calibrate, "drive", lambda *a, **k: calls.append(a) or real(*a, **k)
    )
    seen = []
    calibrate([pair(0)], SCALE, model=plain, method="finetune", steps=2,
              progress=lambda s, loss: seen.append(s))  # fmt: skip
    assert seen == [1, 2] and len(calls) == 1
    with pytest.raises(Cancelled, match="cancelled after 1 of 2 steps"):
        calibrate([pair(0)], SCALE, model=plain, method="finetune", steps=2, cancel=lambda: True)


def test_the_widget_reads_a_pairs_folder_in_the_worker_not_on_the_gui_thread(
    plain, tmp_path, monkeypatch
):
    pytest.importorskip("napari.qt")
    from napari_mzsr.plugin import calibration_job as cj

    lr, hr = pair(0, side=96)
    Image.fromarray(lr).save(tmp_path / "001L.png")
    Image.fromarray(hr).save(tmp_path / "001H.png")
    values = cj.CalibrationValues(
        source="folder", lr=None, hr=None, lr_name="", hr_name="", folder=str(tmp_path),
        scale=SCALE, method="finetune", steps=1, save_to=str(tmp_path / "cam.pt"),
        overwrite=False, model=plain, device="cpu",
    )  # fmt: skip

    def no_reading(*args, **kwargs):
        raise AssertionError("pairs read on the GUI thread")

    monkeypatch.setattr("napari_mzsr.io.pair_files.read_pairs", no_reading)
    monkeypatch.setattr("napari_mzsr.io.pair_files.read_raw_pairs", no_reading)
    job = cj.make_calibration(values)
    monkeypatch.undo()
    assert job.folder == tmp_path and job.pairs == []
    pairs, names, scale = cj.job_pairs(job)
    assert names == ["001"] and pairs[0][1].shape == hr.shape and scale == SCALE


def test_the_default_model_and_the_methods_are_defined_once(plain, tmp_path):
    pytest.importorskip("napari.qt")
    import argparse

    from napari_mzsr.cli import calibrate as cli_calibrate
    from napari_mzsr.cli.calibrate import add_calibrate_parser
    from napari_mzsr.core.calibration import METHODS
    from napari_mzsr.pipeline.calibrate import DEFAULT_MODEL, CalibrateOptions
    from napari_mzsr.plugin import calibration_job as cj

    assert tuple(method for _, method in cj.METHODS) == METHODS
    assert sorted(cli_calibrate.METHODS) == sorted(METHODS)
    assert CalibrateOptions(scale=2).model.info.name == DEFAULT_MODEL
    parser = argparse.ArgumentParser()
    add_calibrate_parser(parser.add_subparsers())
    args = parser.parse_args(["calibrate", "pairs", "-o", "out.pt", "--scale", "2"])
    assert args.model is None
    values = cj.CalibrationValues(
        source="layers", lr=pair(0)[0], hr=pair(0)[1], lr_name="a", hr_name="b", folder="",
        scale=SCALE, method="drtl", steps=1, save_to=str(tmp_path / "cam.pt"),
        overwrite=False, model=None, device="cpu",
    )  # fmt: skip
    assert cj.make_calibration(values).options.model.info.name == DEFAULT_MODEL
