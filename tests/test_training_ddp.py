"""Data-parallel meta-learning: two CPU processes (gloo) under torchrun."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

import napari_mzsr
from napari_mzsr.core.network import MZSRNet
from training import checkpoint
from training.recipe import ROOT

RECIPE = """
name = "tiny"
device = "cpu"
precision = "float32"
[network]
features = 8
layers = 4
[data]
val_images = 1
val_crop = 36
[meta]
iterations = 3
tasks = 3
support = 2
query = 2
patch = 24
inner_steps = 2
meta_lr = 1e-3
val_every = 100
[validation]
kernels = [[2.0, 2.0, 0.0]]
kernel_size = 15
steps = [0, 1]
"""


def test_ddp_two_processes_hold_identical_weights(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        img = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(img).save(images / f"img{i}.png")
    pretrained = tmp_path / "pretrained.pt"
    info = napari_mzsr.ModelInfo("tiny-pretrained", [2.0], "direct", 3, features=8, layers=4)
    napari_mzsr.save_model(pretrained, MZSRNet(3, 8, 4), info)
    (tmp_path / "tiny.toml").write_text(RECIPE)
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    cmd += ["--master_port", str(29500 + os.getpid() % 1000), "-m", "training", "meta"]
    cmd += ["--recipe", str(tmp_path / "tiny.toml"), "--pretrained", str(pretrained)]
    cmd += ["--data", str(images), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    ck = checkpoint.load(out / "checkpoint.pt")
    assert ck["step"] == 3 and len(ck["rng"]) == 2
    assert len(ck["rank_digests"]) == 2 and len(set(ck["rank_digests"])) == 1
    # The ranks drew different tasks (their own random streams)...
    assert ck["rng"][0]["data"] != ck["rng"][1]["data"]
    # ...and still moved the weights away from the pretrained ones, identically.
    start = napari_mzsr.load_model(pretrained).state_dict
    assert any(not torch.equal(start[k], ck["model"][k]) for k in start)
    assert napari_mzsr.load_model(out / "tiny.pt").info.training["world_size"] == 2
