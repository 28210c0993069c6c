"""Fast tests of the kernel-estimation and refinement benchmarks: tiny images and models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_models import save_tiny_model

from benchmarks import kernel_estimation, refinements
from benchmarks.methods import get_method
from napari_mzsr import imresize

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> list[str]:
    """``--models`` arguments: tiny theta_M files under the shipped names."""
    folder = tmp_path_factory.mktemp("theta")
    args = []
    for name, degradation in (("direct-x2", "direct"), ("bicubic-x2", "bicubic")):
        path = save_tiny_model(folder / f"{name}.pt", name, degradation=degradation)
        args.append(f"{name}={path}")
    return args


@pytest.fixture(scope="module")
def hr_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hr")
    rng = np.random.default_rng(0)
    texture = np.clip(imresize(rng.random((24, 24, 3)), output_shape=(97, 96)), 0, 1)
    Image.fromarray(np.rint(texture * 255).astype(np.uint8)).save(folder / "a.png")
    Image.fromarray(np.rint(texture[..., 1] * 255).astype(np.uint8)).save(folder / "b.png")
    return folder


def test_kernel_estimation_benchmark(tmp_path, hr_dir, models):
    argv = ["--data", str(hr_dir), "--device", "cpu", "--steps", "1", "--out", str(tmp_path)]
    argv += ["--kernels", "paper", "g^d_ani", "g^b_1.3", "--models", *models]
    md = kernel_estimation.main(argv)
    data = json.loads(md.with_suffix(".json").read_text())
    assert data["command"].startswith("python -m benchmarks.kernel_estimation --data")
    assert len(data["records"]) == 6
    for record in data["records"]:
        assert record["psnr_true"] is not None and record["psnr_default"] is not None
        spectral = record["estimates"]["spectral"]
        assert spectral["error"] >= 0 and spectral["seconds"] > 0 and spectral["psnr"] > 0
    assert set(data["summary"]) == {"paper", "g^d_ani", "g^b_1.3", "all"}
    assert "| all | spectral | 6 |" in md.read_text()


# Its worker processes run the package's defaults (the suite's tiny-model patch of
# tests/conftest.py does not reach them): so does the in-process run it is compared with.
@pytest.mark.self_check
def test_kernel_estimation_benchmark_jobs_give_the_same_records(tmp_path, hr_dir, models):
    argv = ["--data", str(hr_dir), "--device", "cpu", "--steps", "1", "--out", str(tmp_path)]
    argv += ["--kernels", "paper", "g^d_ani", "--models", *models, "--threads", "1"]
    serial = kernel_estimation.main([*argv, "--name", "serial"])
    parallel = kernel_estimation.main([*argv, "--name", "parallel", "--jobs", "2"])
    one, two = (
        json.loads(md.with_suffix(".json").read_text())["records"] for md in (serial, parallel)
    )
    assert [(r["image"], r["label"]) for r in one] == [(r["image"], r["label"]) for r in two]
    for a, b in zip(one, two, strict=True):
        assert a["psnr_true"] == pytest.approx(b["psnr_true"], abs=1e-3)
        assert a["estimates"]["spectral"]["error"] == pytest.approx(
            b["estimates"]["spectral"]["error"]
        )
        assert a["estimates"]["spectral"]["psnr"] == pytest.approx(
            b["estimates"]["spectral"]["psnr"], abs=1e-3
        )


def test_kernel_estimation_benchmark_rejects_zero_jobs(hr_dir):
    with pytest.raises(SystemExit):
        kernel_estimation.main(["--data", str(hr_dir), "--jobs", "0"])


def test_kernel_estimation_benchmark_theta_loss_kernel_only(tmp_path, hr_dir, models):
    argv = ["--data", str(hr_dir), "--limit", "1", "--kernels", "g^d_2.0", "--kernel-only"]
    argv += ["--estimators", "spectral", "theta-loss", "--models", *models]
    md = kernel_estimation.main([*argv, "--out", str(tmp_path)])
    (record,) = json.loads(md.with_suffix(".json").read_text())["records"]
    assert record["psnr_true"] is None
    assert set(record["estimates"]) == {"spectral", "theta-loss"}


def test_refinements_benchmark(tmp_path, hr_dir, models):
    argv = ["--data", str(hr_dir), "--limit", "1", "--device", "cpu", "--steps", "1"]
    argv += ["--settings", "g^d_ani", "--bp-iters", "1", "2", "--adapt-per-transform"]
    md = refinements.main([*argv, "--models", *models, "--out", str(tmp_path)])
    data = json.loads(md.with_suffix(".json").read_text())
    cells = data["results"]["g^d_ani"]["per_image"]["a"]
    expected = {"plain", "SE mean", "SE median", "SE all 8", "SE all 8, adapted each"}
    assert expected | {"BP 1", "BP 2", "SE mean + BP 2"} <= set(cells)
    assert "| g^d_ani | SE mean |" in md.read_text()
    argv = [*argv[:-1], "--skip", "SE median", "SE all 8", "--name", "skipped"]
    md = refinements.main([*argv, "--models", *models, "--out", str(tmp_path)])
    cells = json.loads(md.with_suffix(".json").read_text())["results"]["g^d_ani"]["per_image"]["a"]
    assert not {"SE median", "SE all 8", "SE all 8, adapted each"} & set(cells)
    assert {"plain", "SE mean", "BP 2"} <= set(cells)


@pytest.mark.parametrize("name", ["MZSR(10)+est", "MZSR(10)+SE", "MZSR(10)+SE+BP"])
def test_registry_rows_exist(name):
    assert callable(get_method(name))
