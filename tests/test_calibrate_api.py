"""The public side of few-shot calibration: napari_mzsr.calibrate, pair folders, and
``napari-mzsr calibrate`` / ``run --model PROFILE``."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from PIL import Image
from synthetic_pairs import camera_pair
from tiny_models import save_tiny_model

import napari_mzsr
from napari_mzsr import Cancelled, calibrate, load_model, save_model, super_resolve
from napari_mzsr.cli.main import main as cli
from napari_mzsr.core.resize import imresize
from napari_mzsr.io.pair_files import find_pairs, read_pairs

pytestmark = pytest.mark.usefixtures("one_thread")
SCALE = 2.5


def real_like_pair(seed: int, side: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """(LR, HR) uint8: the HR scene blurred and bicubic-subsampled by 2.5, as a camera."""
    return camera_pair(seed, side=side, scale=SCALE, variance=3.0, kernel_size=15)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    return str(save_tiny_model(tmp_path_factory.mktemp("cal") / "tiny.pt", "tiny", features=8))


@pytest.fixture(scope="module")
def pairs():
    return [real_like_pair(s) for s in range(2)]


@pytest.fixture(scope="module")
def profile(tiny, pairs):
    # 30% held back: 48 rows, enough for a score away from the borders.
    names = ["a", "b"]
    return calibrate(pairs, SCALE, model=tiny, steps=3, holdout=0.3, names=names, name="cam")


def test_calibrate_is_public():
    assert "calibrate" in napari_mzsr.__all__ and "CalibrateOptions" in napari_mzsr.__all__


def test_profile_round_trip_with_provenance(profile, pairs, tmp_path):
    path = save_model(tmp_path / "camera.pt", profile.state_dict, profile.info)
    loaded = load_model(path)
    assert loaded.info.name == "cam" and loaded.info.scales == [SCALE]
    for key, value in profile.state_dict.items():
        torch.testing.assert_close(loaded.state_dict[key], value)
    training = loaded.info.training
    assert training["method"] == "drtl" and training["steps"] == 3
    assert [p["name"] for p in training["pairs"]] == ["a", "b"]
    assert all(
        p["misplacement"] < 1.0 and abs(p["ratio"] - SCALE) < 0.05 for p in training["pairs"]
    )
    weights = training["relation_weights"]
    assert "gauss-mid/bicubic" in weights and math.isclose(sum(weights.values()), 1.0)
    assert set(training["held_out_psnr"]) == {"bicubic", "base", "profile"}
    # Accepted by super_resolve as it is (steps 0) and adapted further zero-shot.
    lr = pairs[0][0]
    direct = super_resolve(lr, scale=SCALE, model=loaded, steps=0, device="cpu")
    adapted = super_resolve(lr, scale=SCALE, model=loaded, steps=1, device="cpu")
    assert direct.shape == adapted.shape == pairs[0][1].shape and direct.dtype == np.uint8
    with pytest.raises(ValueError, match=r"supports scale 2\.5"):
        super_resolve(lr, scale=2, model=loaded, steps=0, device="cpu")


def test_shifted_pair_is_refused_with_its_shift_and_ratio(tiny, pairs):
    lr, hr = pairs[1]
    shifted = np.roll(hr, 5, axis=1)
    with pytest.raises(
        ValueError, match=r"b: misregistered.*shift \([+-]0\.\d\d, \+(4\.9|5\.0)\d\)"
    ):
        calibrate([pairs[0], (lr, shifted)], SCALE, model=tiny, steps=1, names=["a", "b"])
    with pytest.raises(ValueError, match=r"ratio 2\.\d\d\d"):
        calibrate([(lr, shifted)], SCALE, model=tiny, steps=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": (2.5, 3.0)}, "scale must be the same for Y and X"),
        ({"scale": 1.0}, "scale must enlarge"),
        ({"method": "magic"}, "method must be one of"),
        ({"steps": 0}, "steps must be"),
        ({"learning_rate": -1.0}, "learning_rate must be"),
        ({"holdout": 0.7}, "holdout must be"),
        ({"name": " "}, "name must be"),
        ({"pairs": np.zeros((2, 8, 8))}, "pairs must be a list"),
        ({"pairs": [(np.zeros((8, 8)),)]}, r"pairs\[0\] must be an \(lr, hr\) pair"),
        ({"pairs": []}, "at least one"),
    ],
)
def test_bad_options_are_refused_in_one_line(tiny, pairs, kwargs, message):
    args = {"pairs": pairs, "scale": SCALE, "model": tiny, "steps": 1, **kwargs}
    with pytest.raises(ValueError, match=message) as err:
        calibrate(args.pop("pairs"), args.pop("scale"), **args)
    assert "\n" not in str(err.value)


def test_progress_and_cancel(tiny, pairs):
    seen = []
    calibrate(
        pairs[:1],
        SCALE,
        model=tiny,
        method="finetune",
        steps=3,
        progress=lambda s, loss: seen.append(s),
    )
    assert seen == [1, 2, 3]
    with pytest.raises(Cancelled):
        calibrate(pairs[:1], SCALE, model=tiny, method="finetune", steps=3, cancel=lambda: True)


@pytest.fixture(scope="module")
def pair_dir(tmp_path_factory, pairs):
    """The pairs City100-style: ``NNNH`` and ``NNNL``, the LR stored on the HR grid."""
    folder = tmp_path_factory.mktemp("pairs")
    for i, (lr, hr) in enumerate(pairs, start=1):
        stored = np.clip(imresize(lr.astype(np.float64) / 255, SCALE), 0, 1)
        Image.fromarray(hr).save(folder / f"{i:03d}H.png")
        Image.fromarray(np.rint(stored * 255).astype(np.uint8)).save(folder / f"{i:03d}L.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_pair_folders_are_read_back_on_the_native_grid(pair_dir, pairs, tmp_path):
    assert [k for k, _, _ in find_pairs(pair_dir)] == ["001", "002"]
    read, scale, how = read_pairs(pair_dir)
    assert abs(scale - SCALE) < 0.01 and round(scale, 4) == scale and "period" in how
    assert abs(read[0].lr.shape[0] - 64) <= 1 and read[0].lr.dtype == np.uint8
    given, scale2, how2 = read_pairs(pair_dir, SCALE)
    assert scale2 == SCALE and how2 == "given"
    # Read back on its grid, the stored LR image is the camera's LR image again.
    assert given[0].lr.shape == pairs[0][0].shape
    error = np.abs(given[0].lr.astype(float) - pairs[0][0]).mean()
    assert error < 2.0, error
    with pytest.raises(FileNotFoundError, match="no \\(LR, HR\\) image pairs"):
        find_pairs(tmp_path)


def test_cli_calibrate_then_run_with_the_profile(pair_dir, pairs, tiny, tmp_path, capsys):
    out = tmp_path / "camera.pt"
    argv = ["calibrate", str(pair_dir), "-o", str(out), "--scale", "2.5", "--model", tiny]
    argv += ["--steps", "2", "--device", "cpu", "--holdout", "0.3"]
    assert cli(argv) == 0
    printed = capsys.readouterr().out
    assert "001: shift" in printed and "held-back PSNR" in printed and f"wrote {out}" in printed
    info = load_model(out).info
    assert info.name == "camera" and info.training["steps"] == 2
    assert [p["name"] for p in info.training["pairs"]] == ["001", "002"]
    before = out.read_bytes()
    # Never overwritten without the flag; replaced with it.
    assert cli(argv) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert cli([*argv, "--overwrite", "--seed", "1"]) == 0
    assert out.read_bytes() != before
    # run --model PROFILE at the profile's scale.
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(pairs[0][0]).save(images / "lr.png")
    results = tmp_path / "results"
    run = ["run", str(images), "-o", str(results), "--model", str(out), "--scale", "2.5"]
    assert cli([*run, "--steps", "1", "--device", "cpu"]) == 0
    written = sorted(results.iterdir())
    assert len(written) == 1
    assert np.asarray(Image.open(written[0])).shape == pairs[0][1].shape


def test_cli_calibrate_reports_bad_pairs(pair_dir, tiny, tmp_path, capsys):
    out = tmp_path / "camera.pt"
    assert cli(["calibrate", str(tmp_path), "-o", str(out), "--scale", "2.5"]) == 1
    assert "no (LR, HR) image pairs" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    hr = np.asarray(Image.open(pair_dir / "001H.png"))
    Image.fromarray(np.roll(hr, 6, axis=0)).save(bad / "001H.png")
    (bad / "001L.png").write_bytes((pair_dir / "001L.png").read_bytes())
    argv = ["calibrate", str(bad), "-o", str(out), "--scale", "2.5", "--model", tiny]
    assert cli([*argv, "--steps", "1"]) == 1
    err = capsys.readouterr().err
    assert re.search(r"001: misregistered: measured shift \(\+(5\.[89]|6\.[01])\d, ", err), err
    assert not out.exists()
    with pytest.raises(SystemExit):
        cli(["calibrate", str(pair_dir), "-o", str(out), "--scale", "0.5"])


def test_scale_aware_start_gives_a_scale_aware_profile(pairs, tmp_path):
    start = save_tiny_model(tmp_path / "aware.pt", "aware", adaptation_layers=(2, 4))
    for method in ("drtl", "drtl-meta"):
        profile = calibrate(pairs[:1], SCALE, model=start, method=method, steps=2, holdout=0.3)
        info = profile.info
        assert info.architecture == "scale-aware" and info.adaptation_layers == [2, 4]
        assert info.scales == [SCALE] and info.training["base_model"]["name"] == "aware"
        loaded = load_model(save_model(tmp_path / f"{method}.pt", profile.state_dict, info))
        sr = super_resolve(pairs[0][0], scale=SCALE, model=loaded, steps=1, device="cpu")
        assert sr.shape == pairs[0][1].shape
