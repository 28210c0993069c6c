"""benchmarks.time_to_quality: the n-step results it reads off one longer run are those
of real n-step runs, and its helpers (mosaics, ZSSR's time to a PSNR)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmarks import time_to_quality as ttq
from napari_mzsr import gaussian_kernel, imresize
from napari_mzsr.pipeline.images import image_data
from napari_mzsr.pipeline.options import AdaptOptions
from napari_mzsr.pipeline.run import adapt_image, drive

pytestmark = pytest.mark.usefixtures("one_thread")


def _image() -> np.ndarray:
    base = np.random.default_rng(3).random((8, 7, 3))
    return np.clip(imresize(base, 6) * 255, 0, 255).astype(np.uint8)  # 48 x 42, smooth


@pytest.mark.parametrize(
    ("patch", "lr", "steps"),
    [
        (None, None, 5),  # whole image, the model's rate: every step kept
        (None, 3.0, 5),  # a rate that overshoots: steps undone, the last by the final check
        (None, 3.0, 6),  # ... and an early stop after the sixth
        (24, None, 5),  # patches drawn per step
        (24, 3.0, 5),
    ],
)
def test_n_step_results_read_off_one_run_are_real_n_step_runs(tiny_model, patch, lr, steps):
    data = image_data(_image())
    options = AdaptOptions(
        kernel=gaussian_kernel(1.0, size=9), steps=steps, model=tiny_model, device="cpu",
        precision="float32", lr=lr, adapt_patch=patch, adapt_patches=2,
        normalization=data.intensity,
    )  # fmt: skip
    run = ttq.watched_run(data, options)
    accepted = [r.accepted for r in run.reports]
    if lr is not None:
        assert not all(accepted), "the overshooting rate should have made steps be undone"
    if (patch, lr, steps) == (None, 3.0, 5):
        assert not run.reports[-1].stopped and not _equal(run.final, run.after[-1])
    if (patch, lr, steps) == (None, 3.0, 6):
        assert run.reports[-1].stopped
    for n in range(steps + 1):
        single = drive(adapt_image(data, AdaptOptions(**{**_fields(options), "steps": n})))
        for got, want in zip(run.weights(n), single.net.parameters(), strict=True):
            torch.testing.assert_close(got, want.detach(), rtol=0, atol=0, msg=f"n = {n}")


def _equal(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


def _fields(options: AdaptOptions) -> dict:
    names = ("scale", "kernel", "steps", "model", "device", "precision", "seed", "lr")
    names += ("normalization", "adapt_patch", "adapt_patches")
    return {name: getattr(options, name) for name in names}


def test_mosaic_takes_blocks_in_order():
    photos = [np.full((1100, 1100, 3), i, np.uint8) for i in range(4)]
    out = ttq.mosaic(photos, 2048)
    assert out.shape == (2048, 2048, 3)
    # Four blocks per photo (2 x 2 of 512 in 1100), row by row across the mosaic.
    assert [out[0, 512 * c, 0] for c in range(4)] == [0, 0, 0, 0]
    assert [out[512, 512 * c, 0] for c in range(4)] == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="blocks"):
        ttq.mosaic(photos[:1], 2048)


def test_zssr_time_to_a_psnr():
    curve = [{"psnr": 30.0, "seconds": 1.0}, {"psnr": 32.0, "seconds": 100.0}]
    assert ttq.zssr_time_to(29.0, curve) == 1.0
    assert ttq.zssr_time_to(31.0, curve) == pytest.approx(10.0)  # halfway in log time
    assert ttq.zssr_time_to(32.5, curve) is None


def test_main_writes_curves_table_and_plot(tmp_path, monkeypatch):
    """A whole run on two tiny images (one grey), with patches forced on one of them."""
    from PIL import Image

    from napari_mzsr.pipeline import options

    hr = tmp_path / "hr"
    hr.mkdir()
    rgb = np.clip(imresize(np.random.default_rng(0).random((8, 9, 3)), 6) * 255, 0, 255)
    Image.fromarray(rgb.astype(np.uint8)).save(hr / "a.png")
    Image.fromarray(rgb[:48, :48, 0].astype(np.uint8)).save(hr / "b.png")
    monkeypatch.setattr(options, "AUTO_WHOLE_IMAGE_PIXELS", 24 * 24)
    monkeypatch.setattr(options, "AUTO_PATCH", 21)
    out = tmp_path / "out"
    args = ["--set5", str(hr), "--speed-sides", "32", "--peak-size", "256", "--threads", "1"]
    args += ["--zssr-max-pixels", "600", "--preview-side", "24"]  # ZSSR on b (576 pixels) only
    md = ttq.main([*args, "--zssr-iterations", "5", "20", "--out", str(out)])
    data = json.loads(md.with_suffix(".json").read_text())
    records = {r["image"]: r for r in data["records"]["Set5"]}
    assert records["a"]["mzsr_auto"]["patch"] == [21, 21]  # 24 x 27 LR: patches
    assert records["b"]["mzsr_auto"]["patch"] is None  # 24 x 24 LR: whole image
    for record in records.values():
        for key in ("mzsr_auto", "mzsr_whole"):
            steps = [p["steps"] for p in record[key]["points"]]
            assert steps == list(ttq.MZSR_STEPS)
            seconds = [p["seconds"] for p in record[key]["points"]]
            assert all(s > 0 for s in seconds) and seconds[-1] > seconds[1]
    assert "zssr" not in records["a"]
    assert [p["iterations"] for p in records["b"]["zssr"]["points"]] == [5, 20]
    summary = data["summary"]["Set5"]
    assert summary["zssr_images"] == ["b"] and summary["zssr_subset"]
    # ZSSR is compared with MZSR on its own images.
    assert (
        summary["mzsr_auto_zssr_images"][0]["psnr"]
        == records["b"]["mzsr_auto"]["points"][0]["psnr"]
    )
    assert data["preview"]["side"] == 24 and data["preview"]["seconds"] > 0
    assert (out / "time_to_quality.png").stat().st_size > 0
    assert "MZSR(10) auto - whole image" in md.read_text()
    assert "ZSSR ran on b only" in md.read_text()
