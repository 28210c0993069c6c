"""Fast tests of the benchmark code (benchmarks/): tiny images, tiny models, few steps."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import save_tiny_model

from benchmarks import (
    big_images,
    lr_inputs,
    meta_test_speed,
    model_choice,
    paper_tables,
    scaling,
    steps_curve,
)
from benchmarks.lr_inputs import SETTINGS, crop_to_multiple, load_hr_images, make_lr
from benchmarks.methods import METHODS, RunContext
from benchmarks.report import json_safe, write_results
from benchmarks.zssr import LearningRatePolicy, ZSSRConfig, zssr_super_resolve
from napari_mzsr import degrade, super_resolve
from napari_mzsr.io.model_file import load_model

MODELS = {
    "direct-x2": (2.0, "direct"),
    "bicubic-x2": (2.0, "bicubic"),
    "direct-x4": (4.0, "direct"),
}


def _strict_json(path: Path):
    def refuse(token: str):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """Tiny theta_M files under the shipped names."""
    folder = tmp_path_factory.mktemp("theta")
    for name, (scale, degradation) in MODELS.items():
        save_tiny_model(folder / f"{name}.pt", name, scales=[scale], degradation=degradation)
    return folder


@pytest.fixture(scope="module")
def hr_dir(tmp_path_factory) -> Path:
    """Two HR images: a textured RGB one of odd size and a flat grey one."""
    folder = tmp_path_factory.mktemp("hr")
    rng = np.random.default_rng(0)
    from napari_mzsr import imresize

    texture = np.clip(imresize(rng.random((12, 12, 3)), output_shape=(89, 90)), 0, 1)
    Image.fromarray(np.rint(texture * 255).astype(np.uint8)).save(folder / "a_texture.png")
    Image.fromarray(np.full((88, 88), 128, np.uint8)).save(folder / "b_flat.png")
    return folder


@pytest.fixture(scope="module")
def table_run(tmp_path_factory, hr_dir, model_dir) -> Path:
    out = tmp_path_factory.mktemp("results")
    argv = ["--data", str(hr_dir), "--set-name", "Set5", "--device", "cpu", "--out", str(out)]
    argv += [
        "--zssr-iters",
        "2",
        "--zssr-features",
        "8",
        "--zssr-bp-iters",
        "1",
        "--model-dir",
        str(model_dir),
    ]
    return paper_tables.main(argv)


def test_lr_inputs_match_degrade(tmp_path, hr_dir):
    lr_inputs.main(["--data", str(hr_dir), "--out", str(tmp_path)])
    hr = np.asarray(Image.open(hr_dir / "a_texture.png"))
    for setting in SETTINGS.values():
        cropped = crop_to_multiple(hr, setting.scale) / 255.0
        expected = degrade(cropped, setting.kernel, setting.scale, setting.method)
        expected = np.rint(np.clip(expected, 0, 1) * 255).astype(np.uint8)
        written = np.asarray(
            Image.open(tmp_path / setting.name.replace(" ", "_") / "a_texture.png")
        )
        s = setting.scale
        assert written.shape == ((89 - 89 % s) // s, (90 - 90 % s) // s, 3)
        np.testing.assert_array_equal(written, expected)


def test_lr_inputs_reproduce_official_inputs(data_dir):
    hr_images = load_hr_images(data_dir / "set5", limit=3)
    for stem, hr in hr_images.items():
        lr = make_lr(crop_to_multiple(hr, 2), SETTINGS["g^d_2.0"])
        official = np.asarray(Image.open(data_dir / "mzsr_g20_set5" / f"{stem}.png"))
        np.testing.assert_array_equal(lr, official)


def test_table_structure(table_run):
    text = table_run.read_text()
    assert text.splitlines()[2].startswith("Command: `python -m benchmarks.paper_tables --data")
    headers = [line for line in text.splitlines() if line.startswith("| kernel | method | steps")]
    assert len(headers) == 3  # Table 2, Table 1, x4
    for header in headers:
        cells = [c.strip() for c in header.strip("|").split("|")]
        assert cells.index("PSNR paper") == cells.index("PSNR ours") + 1
        assert cells.index("SSIM paper") == cells.index("SSIM ours") + 1
    rows = {
        tuple(c.strip() for c in line.strip("|").split("|")[:2]): line
        for line in text.split("## Speed-up")[0].splitlines()
        if line.startswith(("| g^", "| bicubic"))
    }
    for setting in SETTINGS:
        for method in ("Bicubic", "ZSSR", "MZSR(0)", "MZSR(1)", "MZSR(10)"):
            assert (setting, method) in rows
    assert "| 35.20 |" in rows["g^d_2.0", "MZSR(1)"]  # the paper's cell beside ours
    assert "| 0.9439 |" in rows["g^d_2.0", "MZSR(10)"]
    assert "speed-up over ZSSR" in text


def test_identical_image_reported_as_inf(table_run):
    # Bicubic interpolation of the flat image's LR gives back the HR exactly.
    text = table_run.read_text()
    assert "| g^d_2.0 | Bicubic | — | inf |" in text
    assert "inf / 1.0000" in text
    data = _strict_json(table_run.with_suffix(".json"))
    flat = data["results"]["g^d_2.0"]["Bicubic"]["per_image"]["b_flat"]
    assert flat["psnr"] == "inf" and flat["ssim"] == 1.0
    textured = data["results"]["g^d_2.0"]["MZSR(10)"]["per_image"]["a_texture"]
    assert math.isfinite(textured["psnr"]) and textured["steps"] == 10
    assert data["results"]["g^d_2.0"]["MZSR(1)"]["paper"]["psnr"] == 35.2
    assert data["results"]["g^d_2.0"]["ZSSR"]["per_image"]["a_texture"]["iterations"] == 2
    assert data["command"].startswith("python -m benchmarks.paper_tables")


def test_json_safe_encodes_non_finite():
    encoded = json.dumps(json_safe({"a": [math.inf, -math.inf, math.nan, 1.5]}), allow_nan=False)
    assert json.loads(encoded) == {"a": ["inf", "-inf", "nan", 1.5]}


def test_registry_accepts_new_rows_and_reports_missing_models(monkeypatch, hr_dir, model_dir):
    def nearest(lr, setting, ctx):
        return lr.repeat(setting.scale, 0).repeat(setting.scale, 1), {}

    monkeypatch.setitem(METHODS, "Nearest", nearest)
    models, missing = model_choice.resolve_models(["direct-x2", "nope-x2"], model_dir, {})
    assert set(models) == {"direct-x2"} and "nope-x2" in missing
    ctx = RunContext(torch.device("cpu"), {})
    hr = load_hr_images(hr_dir, limit=1)
    results = paper_tables.evaluate(hr, [SETTINGS["g^d_2.0"]], ["Nearest", "MZSR(2)"], ctx)
    assert results["g^d_2.0"]["Nearest"]["psnr"] > 10
    assert "unavailable" in results["g^d_2.0"]["MZSR(2)"]
    text = "\n".join(paper_tables.markdown_report(results, "Set5", list(hr)))
    assert "| g^d_2.0 | Nearest |" in text and "n/a: no theta_M 'direct-x2'" in text


def test_zssr_lr_policy_divides_when_progress_stalls():
    config = ZSSRConfig()
    rng = np.random.default_rng(0)
    flat, falling = LearningRatePolicy(config), LearningRatePolicy(config)
    stopped = None
    for it in range(3000):
        if it % config.test_every == 0:
            flat.record(it, 0.01 + 1e-4 * rng.standard_normal())
            falling.record(it, 1.0 - it * 1e-4)
        flat.update(it)
        falling.update(it)
        if flat.done:
            stopped = it
            break
    assert flat.changes == [0, 299, 599, 899]  # every 300 iterations after min_iters
    assert stopped == 899 and flat.lr == pytest.approx(1e-6)
    assert falling.lr == config.lr and not falling.done


@pytest.mark.parametrize("shape", [(20, 28), (22, 22, 3)])
def test_zssr_runs_and_keeps_geometry(shape):
    lr = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    config = ZSSRConfig(max_iters=3, features=8, back_projection_iters=2, crop_size=16)
    sr, stats = zssr_super_resolve(lr, SETTINGS["g^d_ani"].kernel, 2, "direct", config)
    assert sr.shape == (2 * shape[0], 2 * shape[1], *shape[2:]) and sr.dtype == np.uint8
    assert stats.iterations == 3 and stats.tests == 1 and stats.infer_s > 0


def test_steps_curve_matches_api_and_writes_plot(tmp_path, hr_dir, model_dir):
    setting = SETTINGS["g^d_2.0"]
    hr = crop_to_multiple(load_hr_images(hr_dir, limit=1)["a_texture"], 2)
    lr = make_lr(hr, setting)
    model = load_model(model_dir / "direct-x2.pt")
    outputs = list(steps_curve.adaptation_outputs(lr, setting, model, 3, torch.device("cpu")))
    assert len(outputs) == 4
    for steps in (0, 3):
        direct = super_resolve(
            lr,
            scale=2,
            kernel=setting.kernel,
            steps=steps,
            model=model,
            device="cpu",
            precision="float32",
        )
        assert np.abs(outputs[steps].astype(int) - direct).max() <= 1

    argv = ["--data", str(hr_dir), "--limit", "1", "--steps", "2", "--device", "cpu"]
    argv += ["--model", str(model_dir / "direct-x2.pt"), "--out", str(tmp_path)]
    argv += ["--pretrained", str(model_dir / "direct-x2.pt")]
    png = steps_curve.main(argv)
    assert png.stat().st_size > 1000
    data = _strict_json(png.with_suffix(".json"))
    assert len(data["mean_psnr"]) == 2
    assert all(len(v) == 3 for v in data["mean_psnr"].values())


def test_scaling_measures_in_subprocess_and_extrapolates(model_dir):
    model = str(model_dir / "direct-x2.pt")
    zssr = scaling.measure("ZSSR", 24, torch.device("cpu"), model, "float32", 1, 2, 3000)
    assert zssr["iterations"] == 2
    assert zssr["extrapolated_seconds"] > zssr["seconds"] - zssr["infer_s"]
    assert zssr["peak_rss_mib"] >= zssr["baseline_rss_mib"] > 0

    class Args:
        device, precision, repeats, zssr_iters, zssr_full_iters, timeout = (
            "cpu",
            "float32",
            1,
            2,
            3000,
            300,
        )
        threads = 1

    mzsr = scaling.run_worker(Args, "MZSR(1)", 24, model)
    assert mzsr["seconds"] > 0 and mzsr["peak_rss_mib"] > 0
    rows = scaling.report_rows([zssr, mzsr, {"method": "MZSR(10)", "size": 24, "error": "oom"}])
    assert rows[0][0] == "24x24" and rows[0][2] == "oom" and float(rows[0][5]) > 1


def test_scaling_main_writes_the_named_report(model_dir, tmp_path):
    argv = ["--sizes", "24", "--methods", "MZSR(1)", "--model", str(model_dir / "direct-x2.pt")]
    argv += ["--device", "cpu", "--threads", "1", "--out", str(tmp_path), "--name", "small"]
    assert scaling.main(argv) == tmp_path / "small.md"
    data = _strict_json(tmp_path / "small.json")
    assert data["command"].endswith("--name small")
    (row,) = data["rows"]
    assert row["method"] == "MZSR(1)" and row["size"] == 24 and row["seconds"] > 0
    assert "| 24x24 |" in (tmp_path / "small.md").read_text()


def test_meta_test_speed_reports_each_precision_and_step_count(tmp_path):
    argv = ["--size", "24", "--steps", "0", "1", "--precision", "float32", "--repeats", "1"]
    argv += ["--device", "cpu", "--threads", "1", "--out", str(tmp_path), "--name", "speed"]
    md = meta_test_speed.main(argv)
    data = _strict_json(tmp_path / "speed.json")
    assert [r["steps"] for r in data["rows"]] == [0, 1]
    assert all(r["total_s"] == pytest.approx(r["adapt_s"] + r["infer_s"]) for r in data["rows"])
    assert md.read_text().startswith("# Meta-test time, 24x24 RGB input")


def test_write_results_replaces_files_whole(tmp_path, monkeypatch):
    write_results(tmp_path, "r", "old", "cmd", ["old"], {"v": 1})
    calls = []

    def failing_dumps(*args, **kwargs):
        calls.append(args)
        raise ValueError("not JSON")

    monkeypatch.setattr(json, "dumps", failing_dumps)
    with pytest.raises(ValueError):
        write_results(tmp_path, "r", "new", "cmd", ["new"], {"v": float("nan")})
    assert calls and "old" in (tmp_path / "r.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.md"]


def test_big_images_measures_in_a_subprocess_and_fits_the_exponent(model_dir, tmp_path):
    image = big_images.big_image(600)
    assert image.shape == (600, 600) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[512:], image[511:423:-1])  # mirrored, no seam
    model = str(model_dir / "direct-x2.pt")
    row = big_images.measure(48, torch.device("cpu"), model, 1, "float32", 24, 2, 16)
    assert row["output"] == [96, 96] and row["tiles"] == 9
    argv = ["--sizes", "32", "--steps", "1", "--model", model, "--device", "cpu"]
    argv += ["--threads", "1", "--adapt-patch", "24", "--adapt-patches", "2", "--tile", "16"]
    md = big_images.main([*argv, "--out", str(tmp_path)])
    data = _strict_json(tmp_path / "big_images_cpu.json")
    assert data["command"].startswith("python -m benchmarks.big_images --sizes 32 --steps 1")
    (measured,) = data["rows"]
    assert measured["tiles"] == 4 and measured["peak_rss_mib"] >= measured["baseline_rss_mib"]
    assert "| 32x32 |" in md.read_text()
    assert big_images.time_exponent([measured, row]) is not None
    assert big_images.time_exponent([measured, {"size": 48, "error": "oom"}]) is None
