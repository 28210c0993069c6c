"""The few-shot benchmark (benchmarks/few_shot.py) end to end on tiny synthetic pairs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_models import save_tiny_model

from benchmarks import few_shot
from napari_mzsr.core.degradation import degrade
from napari_mzsr.core.kernels import gaussian_kernel
from napari_mzsr.core.resize import imresize

pytestmark = pytest.mark.usefixtures("one_thread")
SCALE = 2.5


@pytest.fixture(scope="module")
def pair_dir(tmp_path_factory) -> Path:
    """Three City100-like pairs: ``NNNH`` (120 px) and ``NNNL``, the blurred LR grid
    (48 px) interpolated back onto the HR grid."""
    folder = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(0)
    for i in range(1, 4):
        hr = np.clip(imresize(rng.random((40, 40, 3)), 3), 0, 1)
        lr = np.clip(degrade(hr, gaussian_kernel(3.0, size=15), SCALE, "bicubic"), 0, 1)
        stored = np.clip(imresize(lr, SCALE), 0, 1)
        for suffix, image in (("H", hr), ("L", stored)):
            u8 = np.rint(image * 255).astype(np.uint8)
            Image.fromarray(u8).save(folder / f"{i:03d}{suffix}.png")
    return folder


def test_find_and_select_pairs(pair_dir, tmp_path):
    pairs = few_shot.find_pairs(pair_dir)
    assert [key for key, _, _ in pairs] == ["001", "002", "003"]
    assert [k for k, _, _ in few_shot.select(pairs, "1,3")] == ["001", "003"]
    with pytest.raises(SystemExit, match="outside 1-3"):
        few_shot.select(pairs, "2-4")
    (tmp_path / "a_LR.png").write_bytes((pair_dir / "001L.png").read_bytes())
    (tmp_path / "a_HR.png").write_bytes((pair_dir / "001H.png").read_bytes())
    assert [k for k, _, _ in few_shot.find_pairs(tmp_path)] == ["a"]


def test_stored_upsampled_pairs_are_read_back_on_their_grid(pair_dir):
    pairs = few_shot.find_pairs(pair_dir)
    support, test, scale, how = few_shot.load_pairs(pairs[:2], pairs[2:])
    assert abs(scale - SCALE) < 0.02 and "interpolation period" in how["method"]
    assert support[0].lr.shape == (48, 48, 3) and support[0].lr.dtype == np.uint8
    assert test[0].hr.shape == (120, 120, 3)


def test_benchmark_writes_results_and_figure(pair_dir, tmp_path):
    model = save_tiny_model(tmp_path / "tiny.pt", "tiny", features=8)
    out = tmp_path / "results"
    argv = ["--support", str(pair_dir), "--support-pairs", "1-2", "--test", str(pair_dir)]
    argv += ["--test-pairs", "3", "--shots", "1,2", "--model", str(model), "--steps", "2"]
    argv += ["--zero-shot-steps", "1", "--crop", "0", "--figure-size", "64", "--out", str(out)]
    argv += ["--name", "toy", "--save-profile", str(tmp_path / "camera.pt")]
    argv += ["--skip", "drtl-meta=1"]
    md = few_shot.main(argv)
    text = md.read_text()
    assert text.startswith("# Few-shot calibration: toy")
    assert "python -m benchmarks.few_shot" in text
    data = json.loads((out / "few_shot_toy_cpu.json").read_text())
    labels = set(data["columns"])
    expected = {"bicubic", "MZSR(1) zero-shot", "DRTL 2-shot + MZSR(1)"}
    expected |= {f"{m} {k}-shot" for m in ("fine-tune", "DRTL") for k in (1, 2)}
    assert labels == expected | {"DRTL-meta 2-shot"}
    assert data["left_out"] == ["DRTL-meta 1-shot"] and "Left out to save time" in text
    # Each target as a line with its measured margin.
    assert "- DRTL 2-shot >= fine-tune 2-shot + 0.3 dB:" in text
    assert "- DRTL-meta 2-shot >= MZSR(1) zero-shot + 1.0 dB:" in text
    assert "- DRTL 1-shot > MZSR(1) zero-shot:" in text
    assert all(len(c["images"]) == 1 for c in data["columns"].values())
    assert data["calibrations"]["DRTL 2-shot"]["pairs"] == ["001", "002"]
    figure = Image.open(out / "few_shot_toy_cpu.png")
    # bicubic, zero-shot, fine-tune 2-shot, DRTL 2-shot, HR: five 128 px tiles.
    assert figure.size == (5 * 128 + 4 * 4, 128)
    from napari_mzsr.io.model_file import load_model

    assert load_model(tmp_path / "camera.pt").info.training["method"] == "drtl"


def test_support_crop_keeps_the_pair_registered(pair_dir):
    """The HR crop covers exactly the LR crop: the crop measures as well registered as the
    whole pair, and the calibration's check accepts it."""
    pairs = few_shot.find_pairs(pair_dir)
    support, _, scale, _ = few_shot.load_pairs(pairs[:2], pairs[2:])
    crop = few_shot.central_crop(support[0], 36, scale)
    side = int(36 * scale)
    assert crop.lr.shape == (36, 36, 3) and crop.hr.shape == (side, side, 3)
    whole = few_shot.measure_pair(support[0].lr, support[0].hr, scale)
    part = few_shot.measure_pair(crop.lr, crop.hr, scale)
    assert max(abs(v) for v in part.shift) < max(abs(v) for v in whole.shift) + 0.25
    with pytest.raises(SystemExit, match="--support-crop 49"):
        few_shot.central_crop(support[0], 49, scale)


def test_benchmark_calibrates_on_support_crops(pair_dir, tmp_path):
    model = save_tiny_model(tmp_path / "tiny.pt", "tiny", features=8)
    out = tmp_path / "results"
    argv = ["--support", str(pair_dir), "--support-pairs", "1", "--test", str(pair_dir)]
    argv += ["--test-pairs", "3", "--shots", "1", "--model", str(model), "--steps", "1"]
    argv += ["--zero-shot-steps", "1", "--crop", "0", "--out", str(out), "--name", "crop"]
    argv += ["--methods", "finetune", "--support-crop", "40", "--max-misplacement", "2"]
    text = few_shot.main(argv).read_text()
    assert "central 40 x 40 px crops" in text and "tolerance 2 px" in text
    data = json.loads((out / "few_shot_crop_cpu.json").read_text())
    assert data["calibrations"]["fine-tune 1-shot"]["pairs"] == ["001"]
