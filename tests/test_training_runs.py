"""Short training runs on tiny synthetic images and a tiny network."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from training_images import write_training_images

import napari_mzsr
from training import checkpoint, export, meta, pretrain
from training.recipe import ROOT, load_recipe
from training.transfer import convert_channels

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
    return write_training_images(tmp_path_factory.mktemp("images"), 5, gray=(0,))


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


def test_meta_learning_starts_a_gray_recipe_from_a_colour_file_folded(images, pretrained, tmp_path):
    recipe = write_recipe(tmp_path, steps=1, channels=1)
    recipe["meta"]["meta_lr"] = 1e-12  # one step that leaves the start as it is
    path = meta.run(recipe, pretrained, data_dir=images, out=tmp_path / "gray")
    model = napari_mzsr.load_model(path)
    assert model.info.channels == 1
    assert model.info.training["pretrained"]["file"] == str(pretrained)
    folded = convert_channels(weights(pretrained), 1)
    for key, value in folded.items():
        torch.testing.assert_close(model.state_dict[key], value, rtol=0, atol=1e-6)
    wider = write_recipe(tmp_path, steps=1, channels=1)
    wider["network"]["features"] = 16
    with pytest.raises(ValueError, match="features=8"):
        meta.run(wider, pretrained, data_dir=images, out=tmp_path / "wider")


def test_cpu_budget_stops_the_stage_and_clocks_are_logged(images, pretrained, tmp_path):
    recipe = write_recipe(tmp_path, steps=6)
    recipe["meta"]["max_cpu_minutes"] = 1e-9  # spent by the first step
    path = meta.run(recipe, pretrained, data_dir=images, out=tmp_path / "run")
    info = napari_mzsr.load_model(path).info
    assert info.training["iterations"] == 1 and info.training["cpu_time_s"] > 0
    records = [
        json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    ]
    train = [r for r in records if "loss" in r]
    val = [r for r in records if "val" in r]
    assert train[-1]["cpu_s"] > 0 and train[-1]["wall_s"] > 0 and val[-1]["val_cpu_s"] > 0
    # Validation does not count: the step-0 validation is logged at zero CPU seconds.
    assert val[0]["step"] == 0 and val[0]["cpu_s"] == 0
    # A resumed stage continues the CPU clock of its checkpoint.
    ck = checkpoint.load(tmp_path / "run" / "checkpoint.pt")
    recipe["meta"]["max_cpu_minutes"] = 0
    meta.run(
        recipe,
        pretrained,
        data_dir=images,
        out=tmp_path / "run",
        resume=tmp_path / "run" / "checkpoint.pt",
    )
    assert checkpoint.load(tmp_path / "run" / "checkpoint.pt")["cpu_s"] > ck["cpu_s"]


def test_benchmark_mode_counts_the_work_of_the_recipe(images, tmp_path, capsys):
    from napari_mzsr.core.network import MZSRNet
    from training import benchmark
    from training.__main__ import main

    recipe = write_recipe(tmp_path, steps=2)
    flops = {}
    for name, sets in {
        "second": {},
        "last": {"second_order_last_only": True},
        "first": {"first_order": True},
    }.items():
        r = {**recipe, "meta": {**recipe["meta"], **sets}}
        result = benchmark.run(r, "meta", 2, data_dir=images)
        assert result["wall_s"] > 0 and result["cpu_s"] > 0 and result["data_s"] > 0
        assert len(result["wall_s_all"]) == 2 and result["gflops_cpu"] > 0
        assert set(result["shares"]) == {*benchmark.META_PARTS, "other"}
        assert sum(result["shares"].values()) == pytest.approx(1.0)
        assert result["shares"]["backward"] > 0 and result["shares"]["inner-grad"] > 0
        flops[name] = result["gflop"]
    assert flops["second"] > flops["last"] > flops["first"]

    # Pretraining: forward, backward (input and weight gradients) of 4 patches of 24 px.
    result = benchmark.run(recipe, "pretrain", 2, data_dir=images)
    net = MZSRNet(3, features=8, layers=4)
    forward = sum(2 * m.weight.numel() * 24 * 24 * 4 for m in net.body if hasattr(m, "weight"))
    assert 2 * forward < result["gflop"] * 1e9 <= 3 * forward + 1e6
    assert set(result["shares"]) == {*benchmark.PRETRAIN_PARTS, "other"}

    recipe_file = tmp_path / "tiny-2-3-direct-false.toml"
    argv = ["meta", "--recipe", str(recipe_file), "--data", str(images), "--benchmark", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "seconds per iteration" in out and "GFLOP/s" in out and "inner-grad" in out
    assert not (ROOT / "runs" / "tiny").exists()  # the benchmark trains and writes nothing


def test_study_runs_arms_and_reports_gain_per_cpu_hour(images, pretrained, tmp_path):
    from training import study

    write_recipe(tmp_path, steps=4)
    arms = tmp_path / "arms.toml"
    arms.write_text(
        f"""
title = "tiny study"
recipe = "{tmp_path / "tiny-4-3-direct-false.toml"}"

[[arm]]
name = "kernels-then-meta"
what = "kernel pretraining, then meta-learning"
start_value_from = "meta"
[[arm.stage]]
command = "pretrain"
init = "{pretrained}"
cpu_minutes = 5
set = ["pretrain.kernels=meta", "pretrain.val_every=2"]
[[arm.stage]]
command = "meta"
pretrained = "@previous"
cpu_minutes = 5

[[arm]]
name = "meta"
what = "meta-learning only"
[[arm.stage]]
command = "meta"
pretrained = "{pretrained}"
cpu_minutes = 5
set = ["meta.first_order=true"]
"""
    )
    runs = tmp_path / "runs"
    threads = torch.get_num_threads()

    def launcher(cmd, log):  # in this process: a new one would spend seconds importing torch
        from training.__main__ import main

        assert main(cmd) == 0

    plan = study.load_arms(arms)
    for arm in plan["arm"]:
        study.run_arm(plan, arm, str(images), runs, launcher)
    torch.set_num_threads(threads)
    first, second = study.stage_dirs(plan["arm"][0], runs)
    assert (second / "tiny.pt").exists() and (runs / "meta" / "0-meta" / "tiny.pt").exists()
    meta_info = napari_mzsr.load_model(second / "tiny.pt").info.training
    assert meta_info["pretrained"]["file"] == str(first / "pretrained.pt")
    assert meta_info["recipe"]["overrides"] == ["meta.max_cpu_minutes=5"]
    pre_info = napari_mzsr.load_model(first / "pretrained.pt").info.training
    assert pre_info["recipe"]["pretrain"]["kernels"] == "meta"
    command = (first / "command.txt").read_text()
    assert "--set pretrain.max_cpu_minutes=5" in command and "--threads 1" in command
    # A second run skips finished stages.
    study.run_arm(plan, plan["arm"][0], str(images), runs, launcher)
    assert len((first / "command.txt").read_text().splitlines()) == 1

    out = tmp_path / "report" / "study"
    out.parent.mkdir()
    notes = tmp_path / "notes.md"
    notes.write_text("Findings: none at this size.\n")
    (runs / "meta" / "0-meta" / "log.jsonl").rename(runs / "log.jsonl")  # as if not run
    study.main(["report", "--arms", str(arms), "--runs", str(runs), "--out", str(out)])
    assert "Arms not run: meta (meta-learning only)." in out.with_suffix(".md").read_text()
    (runs / "log.jsonl").rename(runs / "meta" / "0-meta" / "log.jsonl")
    argv = ["report", "--arms", str(arms), "--runs", str(runs), "--out", str(out)]
    study.main([*argv, "--notes", str(notes)])
    assert out.with_suffix(".png").stat().st_size > 0
    result = json.loads(out.with_suffix(".json").read_text())
    rows = {r["arm"]: r for r in result["rows"]}
    assert set(rows) == {"kernels-then-meta", "meta"}
    two = rows["kernels-then-meta"]
    assert [s["command"] for s in two["stages"]] == ["pretrain", "meta"]
    assert two["stages"][1]["steps"] == 4
    assert two["cpu_min"] == pytest.approx(sum(s["cpu_min"] for s in two["stages"]))
    # Its curve starts at the other arm's first validation (same weights) and its
    # meta-learning points come after its pretraining's CPU time.
    curve = result["curves"]["kernels-then-meta"]
    assert curve[0] == [0.0, result["curves"]["meta"][0][1]]
    assert curve[-1][0] == pytest.approx(two["cpu_min"], abs=1e-3)
    assert two["start"]["3"] == rows["meta"]["start"]["3"]
    hours = two["cpu_min"] / 60
    gain = (two["end"]["3"] - two["start"]["3"]) / hours
    assert two["gain_per_cpu_hour"]["3"] == pytest.approx(gain)
    assert set(two["end"]) == {"0", "1", "3"} and two["end"]["0"] == curve[-1][1]["0"]
    text = out.with_suffix(".md").read_text()
    assert "python -m training.study report" in text and "gain per CPU-hour" in text
    assert text.endswith("Findings: none at this size.\n") and "not run" not in text


def test_validate_command_repeats_the_runs_validation(images, pretrained, tmp_path, capsys):
    from training.__main__ import main
    from training.evaluate import compare

    recipe = write_recipe(tmp_path, steps=20)
    result = compare(recipe, [pretrained], data_dir=images)
    assert result == {
        str(pretrained): napari_mzsr.load_model(pretrained).info.training["validation_psnr"]
    }
    recipe_file = tmp_path / "tiny-20-3-direct-false.toml"
    argv = ["validate", "--recipe", str(recipe_file), "--data", str(images)]
    copy = tmp_path / "copy.pt"
    copy.write_bytes(pretrained.read_bytes())
    assert main([*argv, "--models", str(pretrained), str(copy)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if ".pt |" in line]
    assert len(lines) == 2 and lines[0].startswith(f"| {pretrained} |")
    expected = " | ".join(f"{result[str(pretrained)][k]:.4f}" for k in ("0", "1", "3"))
    assert lines[0].endswith(f"| {expected} |") and lines[1].endswith(f"| {expected} |")
