"""benchmarks/arbitrary_scale.py at toy size: tiny models, two small images."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import save_tiny_model

from benchmarks import arbitrary_scale
from benchmarks.zssr import ZSSRConfig
from napari_mzsr.core.kernels import kernel_covariance
from napari_mzsr.core.metrics import luminance, psnr
from napari_mzsr.io.model_file import load_model

pytestmark = pytest.mark.usefixtures("one_thread")
SERVED = [1.0, 1.1, 4.0]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("theta")
    save_tiny_model(folder / "multiscale.pt", "multiscale", scales=SERVED, degradation="bicubic")
    save_tiny_model(
        folder / "arbitrary.pt",
        "arbitrary",
        scales=SERVED,
        degradation="bicubic",
        adaptation_layers=(2, 5),
    )
    save_tiny_model(folder / "bicubic-x2.pt", "bicubic-x2", degradation="bicubic")
    save_tiny_model(folder / "direct-x4.pt", "direct-x4", scales=[4.0])
    save_tiny_model(
        folder / "arbitrary-gray.pt",
        "arbitrary-gray",
        channels=1,
        scales=SERVED,
        degradation="bicubic",
        adaptation_layers=(2, 5),
    )
    save_tiny_model(folder / "direct-x2-gray.pt", "direct-x2-gray", channels=1)
    return folder


@pytest.fixture(scope="module")
def hr_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("Tiny")
    rng = np.random.default_rng(0)
    for i, shape in enumerate(((64, 66, 3), (67, 65, 3))):
        Image.fromarray((rng.random(shape) * 255).astype(np.uint8)).save(folder / f"im{i}.png")
    return folder


def test_settings_crops_and_kernels():
    settings = arbitrary_scale.settings()
    assert len(settings) == 20 and {s.degradation for s in settings} == {"bicubic", "blur"}
    image = np.zeros((101, 97, 3), np.uint8)
    for setting in settings:
        hr, lr = arbitrary_scale.hr_and_lr(image, setting)
        # The LR size times the factor is the HR crop exactly, on each axis.
        for axis in (0, 1):
            assert lr.shape[axis] * setting.scale[axis] == hr.shape[axis]
    blur = next(s for s in settings if s.name == "blur 1.5x4")
    np.testing.assert_allclose(
        np.diag(kernel_covariance(blur.kernel)), [1.3 * 4, 1.3 * 0.75**2], rtol=0.02
    )
    assert next(s for s in settings if s.name == "bicubic x2").kernel.shape == (1, 1)


def test_end_to_end_writes_results_and_margins(model_dir, hr_dir, tmp_path):
    argv = ["--data", str(hr_dir), "--degradations", "blur", "--steps", "1"]
    argv += ["--zssr-iters", "2", "--zssr-features", "4", "--model-dir", str(model_dir)]
    argv += ["--out", str(tmp_path), "--name", "toy", "--methods", *arbitrary_scale.ALL_METHODS]
    md = arbitrary_scale.main(argv)
    data = json.loads((tmp_path / "toy.json").read_text())
    assert data["command"].startswith("python -m benchmarks.arbitrary_scale --data")
    cells = data["cells"][hr_dir.name]
    assert set(cells) == {s.name for s in arbitrary_scale.settings(["blur"])}
    assert set(cells["blur x2"]) == set(arbitrary_scale.ALL_METHODS)
    assert arbitrary_scale.X2_ANYWHERE in cells["blur 1.5x4"]
    assert "single-scale MZSR" not in cells["blur x2.5"]
    assert "single-scale MZSR" in cells["blur x4"]
    row = data["summary"][hr_dir.name]["blur 2x3.5"]
    mean = np.mean([v["psnr"] for v in cells["blur 2x3.5"]["scale-aware MZSR"].values()])
    bic = np.mean([v["psnr"] for v in cells["blur 2x3.5"]["Bicubic"].values()])
    assert math.isclose(row["margins"]["vs_bicubic"], mean - bic)
    spreads = row["phase_spread"]
    assert spreads["Bicubic"] > 0 and set(spreads) == set(arbitrary_scale.ALL_METHODS)
    text = md.read_text()
    assert "| blur 2x3.5 |" in text and "Targets:" in text
    assert (tmp_path / "toy.partial.json").exists()


def test_gray_mode_scores_the_y_channel_with_the_one_channel_models(model_dir, hr_dir, tmp_path):
    argv = ["--data", str(hr_dir), "--degradations", "blur", "--steps", "1", "--gray"]
    argv += ["--settings", "blur 1.5x4", "--model-dir", str(model_dir), "--out", str(tmp_path)]
    argv += ["--methods", "Bicubic", "scale-aware MZSR", arbitrary_scale.X2_ANYWHERE]
    arbitrary_scale.main(argv)
    data = json.loads((tmp_path / f"arbitrary_scale_{hr_dir.name}_gray_cpu.json").read_text())
    assert set(data["models"]) >= {"arbitrary-gray", "direct-x2-gray"}
    assert "arbitrary" not in data["models"]
    cells = data["cells"][hr_dir.name]["blur 1.5x4"]
    # The Y image's own bicubic result, scored on Y: the same as the RGB run's Bicubic.
    rgb = arbitrary_scale.load_hr_images(hr_dir)["im0"]
    y = luminance(rgb).astype(np.uint8)
    hr, lr = arbitrary_scale.hr_and_lr(y, arbitrary_scale.Setting("blur", (1.5, 4.0)))
    want = psnr(
        arbitrary_scale._bicubic(lr, arbitrary_scale.Setting("blur", (1.5, 4.0))), hr, shave=4
    )
    assert math.isclose(cells["Bicubic"]["im0"]["psnr"], want)
    gray = arbitrary_scale.method_runner(
        "scale-aware MZSR", arbitrary_scale.Setting("blur", (1.5, 4.0)),
        {"arbitrary-gray": load_model(model_dir / "arbitrary-gray.pt")}, 1,
        ZSSRConfig(), torch.device("cpu"), gray=True,
    )  # fmt: skip
    assert math.isclose(
        cells["scale-aware MZSR"]["im0"]["psnr"],
        psnr(gray(lr, arbitrary_scale.Setting("blur", (1.5, 4.0))), hr, shave=4),
    )


def test_a_rerun_with_other_settings_reports_only_its_own(model_dir, hr_dir, tmp_path):
    argv = ["--data", str(hr_dir), "--steps", "1", "--model-dir", str(model_dir)]
    argv += ["--out", str(tmp_path), "--name", "toy", "--methods", "Bicubic", "scale-aware MZSR"]
    arbitrary_scale.main([*argv, "--settings", "bicubic x2", "blur 1.5x4"])
    arbitrary_scale.main([*argv, "--settings", "blur 1.5x4"])
    data = json.loads((tmp_path / "toy.json").read_text())
    assert set(data["cells"][hr_dir.name]) == {"blur 1.5x4"}
    assert "| bicubic x2 |" not in (tmp_path / "toy.md").read_text()


def test_phase_classes_and_spread():
    np.testing.assert_array_equal(arbitrary_scale.phase_classes(10, 2.5), [3, 0, 2, 4, 1] * 2)
    np.testing.assert_array_equal(arbitrary_scale.phase_classes(6, 2.0), [1, 0] * 3)
    setting = arbitrary_scale.Setting("bicubic", (2.0, 2.5))
    hr = np.zeros((20, 25), np.uint8)
    sr = hr.copy()
    sr[1::2] = 10  # rows of phase class 0 only (row positions 0.25, 1.25, ...)
    phases = arbitrary_scale.phase_errors(sr, hr, setting)
    assert len(phases) == 2 * 5
    assert all((v[0] > 0) == k.startswith("0,") for k, v in phases.items())
    cell = {"a": {"phases": phases}}
    assert arbitrary_scale.phase_spread(cell) > 100  # perfect classes against wrong ones


def test_partial_results_are_reused(model_dir, hr_dir, tmp_path):
    images = {"Tiny": arbitrary_scale.load_hr_images(hr_dir)}
    setting = [arbitrary_scale.Setting("bicubic", (2.0, 3.5))]
    models = {"arbitrary": load_model(model_dir / "arbitrary.pt")}
    partial = tmp_path / "p.json"
    kwargs = dict(
        steps=1,
        zssr=ZSSRConfig(max_iters=1),
        zssr_sets=[],
        device=torch.device("cpu"),
        partial=partial,
        key="c",
        log=lambda line: None,
    )
    first = arbitrary_scale.evaluate(images, setting, ["scale-aware MZSR"], models, **kwargs)
    cell = first["Tiny"]["bicubic 2x3.5"]["scale-aware MZSR"]
    assert set(cell) == {"im0", "im1"}
    saved = json.loads(partial.read_text())
    saved["cells"]["Tiny"]["bicubic 2x3.5"]["scale-aware MZSR"]["im0"]["psnr"] = -1.0
    partial.write_text(json.dumps(saved))
    again = arbitrary_scale.evaluate(images, setting, ["scale-aware MZSR"], models, **kwargs)
    assert again["Tiny"]["bicubic 2x3.5"]["scale-aware MZSR"]["im0"]["psnr"] == -1.0
    # More methods with the same key keep the cells and add theirs; ZSSR only at the
    # settings asked for.
    two = [*setting, arbitrary_scale.Setting("bicubic", (2.0, 2.0))]
    more = arbitrary_scale.evaluate(
        images,
        two,
        ["scale-aware MZSR", "ZSSR"],
        models,
        **{**kwargs, "zssr_sets": None},
        zssr_settings=["bicubic x2"],
    )
    assert more["Tiny"]["bicubic 2x3.5"]["scale-aware MZSR"]["im0"]["psnr"] == -1.0
    assert "ZSSR" not in more["Tiny"]["bicubic 2x3.5"]
    assert set(more["Tiny"]["bicubic x2"]["ZSSR"]) == {"im0", "im1"}
    # Another key (other weights, steps, ...) starts afresh.
    other = arbitrary_scale.evaluate(
        images, setting, ["scale-aware MZSR"], models, **{**kwargs, "key": "d"}
    )
    assert other["Tiny"]["bicubic 2x3.5"]["scale-aware MZSR"]["im0"]["psnr"] > 0
    a = arbitrary_scale.cells_key(models, 10, ZSSRConfig(), torch.device("cpu"), {}, None)
    changed = {"arbitrary": replace(models["arbitrary"], state_dict={})}
    assert a != arbitrary_scale.cells_key(changed, 10, ZSSRConfig(), torch.device("cpu"), {}, None)


def test_settings_option_limits_the_grid(model_dir, hr_dir, tmp_path):
    argv = ["--data", str(hr_dir), "--model-dir", str(model_dir), "--out", str(tmp_path)]
    argv += ["--name", "two", "--methods", "Bicubic", "--settings", "blur x2", "bicubic 1.5x4"]
    arbitrary_scale.main(argv)
    cells = json.loads((tmp_path / "two.json").read_text())["cells"][hr_dir.name]
    assert set(cells) == {"blur x2", "bicubic 1.5x4"}
    with pytest.raises(SystemExit):
        arbitrary_scale.main([*argv[:-2], "blur x9"])
