"""The real-images benchmark (benchmarks/real_images.py): its data, its scoring and one
small end-to-end run with a tiny model standing in for the shipped ones."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from benchmarks import real_images
from napari_mzsr import degrade, imresize

pytestmark = pytest.mark.usefixtures("one_thread")


def _photo(shape=(60, 60, 3), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: shape[0], : shape[1]]
    base = 128 + 60 * np.sin(x / 4 + seed) * np.cos(y / 6)
    image = base[..., None] + rng.normal(0, 12, shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def test_downscales_keep_the_pixel_centres_of_their_tools():
    """Every tool's LR pixel i covers HR pixels around s*i + (s-1)/2: a constant ramp
    stays a ramp with the same values at those centres (no half-pixel shifts)."""
    ramp = np.tile(np.arange(120, dtype=np.uint8)[None, :, None], (60, 1, 3))
    for tool in real_images.TOOLS:
        lr = real_images.downscale(ramp, 2.0, tool)
        assert lr.shape == (30, 60, 3)
        np.testing.assert_allclose(lr[10, 5:-5, 0], 2 * np.arange(5, 55) + 0.5, atol=1)
    area = real_images.downscale(ramp, 2.0, "area").astype(float) / 255
    np.testing.assert_allclose(area, degrade(ramp / 255.0, np.ones((1, 1)), 2, "area"), atol=1e-2)


def test_variants_compress_and_add_noise():
    lr = _photo()
    rng = np.random.default_rng(0)
    assert real_images.corrupt(lr, "clean", rng) is lr
    jpeg = real_images.corrupt(lr, "jpeg75", rng)
    assert jpeg.shape == lr.shape and 0 < np.abs(jpeg.astype(int) - lr).mean() < 10
    noisy = real_images.corrupt(lr, "noise2", rng)
    assert 1.5 < np.std(noisy.astype(float) - lr) < 2.5


def test_fluorescence_set_is_noisy_uint16_over_a_clean_reference():
    item = next(real_images.fluorescence_items(1, side=64))
    assert item.lr.dtype == item.hr.dtype == np.uint16
    assert item.lr.shape == (32, 32) and item.hr.shape == (64, 64)
    # The reference is noise-free: its binned image is the LR image less its noise.
    binned = item.hr.astype(float).reshape(32, 2, 32, 2).mean(axis=(1, 3))
    assert 1 < np.std(item.lr - binned) < 40
    psnr, similarity = real_images.score(item.hr.copy(), item)
    assert psnr == np.inf and similarity == pytest.approx(1.0)


def test_end_to_end_with_a_tiny_model(tmp_path, tiny_model, monkeypatch):
    data = tmp_path / "data"
    (data / "bench" / "Set14").mkdir(parents=True)
    Image.fromarray(_photo((60, 70, 3))).save(data / "bench" / "Set14" / "a.png")
    run = real_images.mzsr(model=str(tiny_model), steps=1, device="cpu")
    monkeypatch.setitem(real_images.METHODS, "defaults", run)
    out = tmp_path / "out"
    out.mkdir()
    argv = ["--data", str(data), "--sets", "photos", "--factors", "2", "--tools", "area,matlab",
            "--variants", "clean,jpeg75", "--out", str(out), "--name", "t"]  # fmt: skip
    md = real_images.main(argv)
    payload = json.loads((out / "t.json").read_text())
    groups = [row["group"] for row in payload["rows"]]
    assert groups == [f"photos {t} x2 {v}" for t in ("area", "matlab") for v in ("clean", "jpeg75")]
    row = payload["rows"][0]
    assert row["bicubic"]["gain"] == 0 and "choice" in row["defaults"]
    text = md.read_text()
    assert "min gain" in text and "photos matlab x2 jpeg75" in text
    assert (out / "t_worst_photos.png").is_file() and (out / "t_prediction.png").is_file()


def test_summary_checks_each_set_against_its_target(tmp_path):
    from benchmarks import real_images_summary

    def row(group, gain, choice="adapted"):
        defaults = {"gain": gain, "choice": choice}
        return {"group": group, "lanczos": {"gain": 0.1}, "defaults": defaults}

    jpeg, nikon = "photos area x2 jpeg75", "City100 NikonD5500 (ratio 2.887)"
    rows = [
        row("photos area x2 clean", 0.7),
        row("photos area x2 clean", 0.4),
        row(jpeg, -0.2),
        row(jpeg, 0.0, "lanczos"),
        row(nikon, 0.9),
        row("fluorescence x2 (uint16)", 0.0, "bicubic"),
    ]
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"command": "python -m benchmarks.real_images", "rows": rows}))
    md = real_images_summary.main([str(path), "--out", str(tmp_path), "--name", "s"])
    table = json.loads((tmp_path / "s.json").read_text())["table"]
    by_set = {line[0]: line for line in table}
    assert by_set["photos area x2 clean"][3:6] == ["+0.55", "+0.5", "yes"]
    assert by_set["photos area x2 jpeg75"][5:8] == ["**no**", "-0.20", "**no**"]
    assert by_set["photos area x2 jpeg75"][8] == "1/2"
    assert by_set["City100 NikonD5500 (ratio 2.887)"][4] == "+0.8"
    assert by_set["fluorescence x2 (uint16)"][5] == "**no**"
    assert "Mean target met on 2 of 4 sets" in md.read_text()


def test_coarser_check_validation_scores_both_levels(tmp_path):
    """The validation of the check one scale down runs end to end on one cell (a folder
    without photos gives cells only) and records the true and both predicted gains."""
    from benchmarks import coarser_check_validation

    md = coarser_check_validation.main(
        ["--data", str(tmp_path), "--cells", "1", "--first-seed", "300", "--out", str(tmp_path)]
    )
    (row,) = json.loads(md.with_suffix(".json").read_text())["rows"]
    assert row["image"] == "cell seed 300"
    assert all(np.isfinite(row[key]) for key in ("true", "son_pair", "one_scale_down"))
    assert "| cell seed 300 |" in md.read_text()


def test_a_method_runs_with_a_given_model(tmp_path, tiny_model, monkeypatch):
    calls = []
    monkeypatch.setattr(real_images, "mzsr", lambda **options: calls.append(options) or options)
    assert real_images.method(f"no self-check@{tiny_model}") == {
        "self_check": False, "model": str(tiny_model)
    }  # fmt: skip
    for bad in ("bicubic@real", "defaults@", "lanczos", "nonsense@real"):
        if bad == "lanczos":
            assert real_images.method(bad) is real_images.lanczos
            continue
        with pytest.raises(KeyError):
            real_images.method(bad)
    with pytest.raises(SystemExit):
        real_images.main(["--data", str(tmp_path), "--methods", "bicubic@real"])


def test_city100_validation_split_reads_pairs_016_on(tmp_path):
    folder = tmp_path / "real" / "City100_Phone"
    folder.mkdir(parents=True)
    for key in ("001", "016", "017"):
        hr = _photo((75, 75, 3), seed=int(key))
        low = real_images.imresize(
            degrade(hr.astype(np.float64), np.ones((1, 1)), 2.5, "bicubic"), 2.5
        )
        Image.fromarray(hr).save(folder / f"{key}H.png")
        Image.fromarray(np.clip(np.rint(low), 0, 255).astype(np.uint8)).save(folder / f"{key}L.png")
    out = tmp_path / "out"
    out.mkdir()
    argv = ["--data", str(tmp_path), "--sets", "city100", "--cameras", "Phone", "--split",
            "val", "--methods", "bicubic,lanczos", "--limit", "2", "--out", str(out),
            "--name", "v"]  # fmt: skip
    real_images.main(argv)
    rows = json.loads((out / "v.json").read_text())["rows"]
    assert [row["key"] for row in rows] == ["016", "017"]
    ratio = float(rows[0]["group"].removeprefix("City100 Phone (ratio ").rstrip(")"))
    assert ratio == pytest.approx(2.5, abs=0.02)


def test_the_rest_of_a_factor_by_interpolation_before_or_after_x2(tiny_model):
    lr = _photo((24, 28, 3))
    options = {"model": str(tiny_model), "steps": 1, "device": "cpu"}
    for method in (real_images.x2_then(**options), real_images.bicubic_then_x2(**options)):
        sr, check = method(lr, (60, 70))
        assert sr.shape == (60, 70, 3) and sr.dtype == np.uint8 and "choice" in check


def test_photo_back_projection_study_scores_every_blend():
    """The study behind the defaults' back-projection: every blend and count scored on
    one adaptation, the package's own result beside them, a table per set."""
    from benchmarks import photo_back_projection as study

    smooth = imresize(np.random.default_rng(0).random((16, 16, 3)), 4)
    hr = np.clip(smooth * 255, 0, 255).astype(np.uint8)
    item = real_images.Item("photos area x2 clean", "a", real_images.downscale(hr, 2.0, "area"),
                            hr, registered=False)  # fmt: skip
    row = study.study(item)
    columns = [f"w{w:g} n{n}" for w in study.WEIGHTS for n in study.ITERATIONS]
    assert all(np.isfinite(row[c]) for c in (*columns, "unrefined", "package"))
    # The package's result is the chosen blend's, to the rounding between the two, and
    # far from the unrefined one on this smooth image.
    assert row["package"] == pytest.approx(row["w0.5 n1"], abs=0.1)
    assert row["package"] > row["unrefined"] + 1
    assert len({round(row[c], 6) for c in columns}) > len(study.WEIGHTS)
    lines = study.summary([row, {**row, "key": "b"}])
    assert any(line.startswith("| photos area x2 clean | 2 | 0 |") for line in lines)
