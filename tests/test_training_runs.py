"""Short training runs on tiny synthetic images and a tiny network."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

import napari_mzsr
from training import checkpoint, export, meta, pretrain
from training.recipe import ROOT, load_recipe

RECIPE = """
name = "tiny"
channels = {channels}
scales = {scales}
degradation = "{degradation}"
seed = 3
device = "cpu"
precision = "float32"

[network]
features = 8
layers = 4

[data]
val_images = 1
val_crop = 36
texture_threshold = 0.01

[pretrain]
steps = {steps}
batch = 4
patch = 24
lr = 2e-3
lr_halve_every = 20
lr_min = 5e-4
log_every = 2
val_every = 100
checkpoint_every = 3

[meta]
iterations = {steps}
tasks = 2
support = 2
query = 2
patch = 24
inner_steps = 2
meta_lr = 1e-3
anneal_iterations = 4
first_order = {first_order}
log_every = 2
val_every = 3
checkpoint_every = 3

[validation]
kernels = [[2.0, 2.0, 0.0]]
kernel_size = 15
steps = [0, 1, 3]
"""


def write_recipe(folder, steps=6, channels=3, scales="[2.0]", degradation="direct", fo="false"):
    path = folder / f"tiny-{steps}-{channels}-{degradation}-{fo}.toml"
    path.write_text(
        RECIPE.format(
            steps=steps,
            channels=channels,
            scales=scales,
            degradation=degradation,
            first_order=fo,
        )
    )
    return load_recipe(path)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Five small smooth-noise images with edges, one of them gray."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(5):
        noise = ndimage.gaussian_filter(rng.random((48, 56, 3)), (1.5, 1.5, 0))
        noise[20:, : 10 + 5 * i] += 0.3
        img = np.clip((noise - noise.min()) / np.ptp(noise) * 255, 0, 255).astype(np.uint8)
        Image.fromarray(img if i else img[..., 0]).save(folder / f"img{i}.png")
    return folder


def weights(path):
    return napari_mzsr.load_model(path).state_dict


def train_losses(out):
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r]


@pytest.fixture(scope="module")
def pretrained(images, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pre")
    recipe = write_recipe(folder, steps=20)
    return pretrain.run(recipe, data_dir=images, out=folder / "run")


def test_pretraining_reduces_loss_and_writes_outputs(pretrained):
    out = pretrained.parent
    losses = train_losses(out)
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert (out / "log.png").stat().st_size > 0 and (out / "checkpoint.pt").exists()
    info = napari_mzsr.load_model(pretrained).info
    assert info.name == "tiny-pretrained" and info.training["iterations"] == 20
    assert info.training["train_images"] == 4 and len(info.training["val_images"]) == 1


def test_meta_learning_reduces_loss_and_exports(images, pretrained, tmp_path):
    recipe = write_recipe(tmp_path, steps=12)
    recipe["meta"]["val_every"] = 100
    path = meta.run(recipe, pretrained, data_dir=images, out=tmp_path / "run")
    losses = train_losses(tmp_path / "run")
    assert np.mean(losses[-2:]) < np.mean(losses[:2])
    model = napari_mzsr.load_model(path)
    info = model.info
    assert (info.name, info.scales, info.degradation, info.channels) == ("tiny", [2.0], "direct", 3)
    training = info.training
    assert training["stage"] == "meta" and training["iterations"] == 12
    assert training["recipe"]["meta"]["inner_steps"] == 2 and "[meta]" in training["recipe_toml"]
    assert set(training["validation_psnr"]) == {"0", "1", "3"}
    assert training["validation_history"][0]["step"] == 0  # pretrained baseline
    assert training["pretrained"]["training"]["stage"] == "pretrain"
    assert training["wall_time_s"] > 0 and training["device"] == "cpu"

    lr_img = np.random.default_rng(1).integers(0, 256, (32, 36, 3), dtype=np.uint8)
    sr = napari_mzsr.super_resolve(lr_img, scale=2, kernel=2.0, steps=2, model=path, device="cpu")
    assert sr.shape == (64, 72, 3) and sr.dtype == np.uint8


@pytest.mark.parametrize("stage", ["pretrain", "meta"])
def test_resume_reproduces_uninterrupted_run(images, pretrained, tmp_path, stage):
    full = write_recipe(tmp_path, steps=6)
    half = write_recipe(tmp_path, steps=3)
    extra = {"pretrained": pretrained} if stage == "meta" else {}
    module = meta if stage == "meta" else pretrain
    name = "tiny.pt" if stage == "meta" else "pretrained.pt"
    module.run(full, **extra, data_dir=images, out=tmp_path / "full")
    module.run(half, **extra, data_dir=images, out=tmp_path / "part")
    assert checkpoint.load(tmp_path / "part" / "checkpoint.pt")["step"] == 3
    module.run(
        full,
        **extra,
        data_dir=images,
        out=tmp_path / "part",
        resume=tmp_path / "part" / "checkpoint.pt",
    )
    a, b = weights(tmp_path / "full" / name), weights(tmp_path / "part" / name)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    # Log windows differ around the interruption; the records at steps 2 and 6 do not.
    full_log, part_log = train_losses(tmp_path / "full"), train_losses(tmp_path / "part")
    assert full_log[0] == part_log[0] and full_log[-1] == pytest.approx(part_log[-1], abs=1e-7)


def test_first_order_gray_multiscale_bicubic(images, tmp_path):
    recipe = write_recipe(tmp_path, steps=2, channels=1, scales="[2.0, 2.5, 3.0]")
    pre = pretrain.run(recipe, data_dir=images, out=tmp_path / "pre")
    recipe = write_recipe(
        tmp_path, steps=2, channels=1, scales="[2.0, 2.5, 3.0]", degradation="bicubic", fo="true"
    )
    recipe["meta"]["max_minutes"] = 1e-9  # the time budget stops the run after one step
    path = meta.run(recipe, pre, data_dir=images, out=tmp_path / "meta")
    info = napari_mzsr.load_model(path).info
    assert info.training["iterations"] == 1
    assert info.channels == 1 and info.degradation == "bicubic" and info.supports_scale(2.7)
    assert set(info.training["validation_psnr"]) == {"0", "1", "3"}


def test_export_command_writes_theta_file(pretrained, tmp_path):
    out = tmp_path / "again.pt"
    cmd = [sys.executable, "-m", "training", "export"]
    cmd += ["--checkpoint", str(pretrained.parent / "checkpoint.pt"), "--out", str(out)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    a, b = weights(pretrained), weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert export.model_info(checkpoint.load(pretrained.parent / "checkpoint.pt")).name == (
        "tiny-pretrained"
    )


def test_refuses_benchmark_folders(tmp_path):
    bench = tmp_path / "bench" / "Set5"
    bench.mkdir(parents=True)
    with pytest.raises(ValueError, match="benchmark"):
        pretrain.run(write_recipe(tmp_path), data_dir=bench, out=tmp_path / "run")


def test_pretraining_from_init_converts_channels_and_records_it(images, pretrained, tmp_path):
    recipe = write_recipe(tmp_path, steps=2, channels=1)
    path = pretrain.run(recipe, data_dir=images, out=tmp_path / "gray", init=pretrained)
    info = napari_mzsr.load_model(path).info
    assert info.channels == 1 and info.training["init"]["file"] == str(pretrained)
    # The first step starts from the converted weights, not from random ones.
    first = train_losses(tmp_path / "gray")[0]
    scratch = pretrain.run(recipe, data_dir=images, out=tmp_path / "scratch")
    assert first < train_losses(scratch.parent)[0]
