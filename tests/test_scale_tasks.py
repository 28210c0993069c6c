"""Meta-transfer learning over scale pairs (training/scale_tasks.py), at toy size."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from training_images import write_training_images

import napari_mzsr
from napari_mzsr.core.kernels import kernel_covariance
from napari_mzsr.core.network import MZSRNet
from napari_mzsr.core.scale_aware import ScaleAwareNet
from napari_mzsr.io.model_file import ModelInfo, save_model
from training import checkpoint, scale_tasks
from training.recipe import ROOT, RecipeError, load_recipe

pytestmark = pytest.mark.usefixtures("one_thread")

RECIPE = """
name = "tiny-arb"
channels = 3
architecture = "{architecture}"
scales = [1.5, 2.0, 3.0]
degradation = "bicubic"
seed = 1
device = "cpu"
precision = "float32"

[network]
features = 8
layers = 4

[scale_tasks]
pairs = [[2.0, 3.5], [3.0, 1.0]]
adaptation_layers = [1]
module_lr = 1e-3
plain_share = 0.2

[data]
val_images = 1
val_crop = 36
texture_threshold = 0.01

[meta]
iterations = {iterations}
tasks = 2
support = 2
query = 2
patch = 24
inner_steps = 2
meta_lr = 1e-3
anneal_iterations = 1
kernel_variance_min = 0.2
log_every = 1
val_every = 100
checkpoint_every = 2

[validation]
kernels = [[1.3, 1.3, 0.0]]
kernel_size = 9
scales = [[2.0, 2.0], [1.5, 3.0]]
steps = [0, 1]
"""


def _recipe(folder, architecture="scale-aware", iterations=3):
    text = RECIPE.format(architecture=architecture, iterations=iterations)
    path = folder / f"{architecture}-{iterations}.toml"
    path.write_text(text)
    return load_recipe(path)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_training_images(tmp_path_factory.mktemp("images"), 4)


@pytest.fixture(scope="module")
def init(tmp_path_factory):
    """A plain theta_M of the recipe's shape (8 features, 4 layers)."""
    net = MZSRNet(3, 8, 4, generator=torch.Generator().manual_seed(0))
    info = ModelInfo("plain", [2.0], "bicubic", 3, features=8, layers=4)
    return save_model(tmp_path_factory.mktemp("init") / "plain.pt", net, info)


def test_shipped_recipes_draw_arbsr_pairs_and_one_axis_pairs():
    recipe = load_recipe(ROOT / "training" / "recipes" / "arbitrary.toml")
    scale_tasks.check_recipe(recipe)
    pairs = scale_tasks.task_pairs(recipe)
    symmetric = [p for p in pairs if p[0] == p[1]]
    one_axis = [p for p in pairs if 1.0 in p]
    asymmetric = [p for p in pairs if p[0] != p[1] and 1.0 not in p]
    assert len(symmetric) == 30 and symmetric[0] == (1.1, 1.1) and symmetric[-1] == (4.0, 4.0)
    assert len(asymmetric) == 30 and (1.5, 4.0) in asymmetric and (4.0, 1.5) in asymmetric
    assert (3.0, 1.0) in one_axis and (1.0, 3.0) in one_axis
    assert scale_tasks.served_scales(recipe)[0] == 1.0
    for name in ("arbitrary-gray", "multiscale", "arbitrary-gpu"):
        other = load_recipe(ROOT / "training" / "recipes" / f"{name}.toml")
        assert scale_tasks.task_pairs(other) == pairs


def test_bad_scale_recipes_are_refused(tmp_path):
    for old, new, message in (
        ('architecture = "scale-aware"', 'architecture = "rcan"', "architecture"),
        ("pairs = [[2.0, 3.5], [3.0, 1.0]]", "pairs = [[1.0, 1.0]]", "not both 1"),
        ("pairs = [[2.0, 3.5], [3.0, 1.0]]", "pairs = [[2.0]]", "pair"),
        ("adaptation_layers = [1]", "adaptation_layers = [3]", "adaptation_layers"),
        ("plain_share = 0.2", "plain_share = 1.0", "plain_share"),
    ):
        path = tmp_path / "bad.toml"
        path.write_text(RECIPE.format(architecture="scale-aware", iterations=1).replace(old, new))
        with pytest.raises(RecipeError, match=message):
            scale_tasks.check_recipe(load_recipe(path))


def test_task_kernels_follow_the_factors():
    rng = np.random.default_rng(0)
    assert scale_tasks.pair_kernel_size((2.0, 2.0)) == 15
    assert scale_tasks.pair_kernel_size((1.5, 4.0)) == 29
    assert scale_tasks.sample_pair_kernel(rng, (2.0, 2.0), 0.2, plain_share=0.999).shape == (1, 1)

    def mean_covariance(pair):
        covs = [
            kernel_covariance(scale_tasks.sample_pair_kernel(rng, pair, 0.2)) for _ in range(300)
        ]
        return np.mean(covs, axis=0)  # (x, y) order

    at_x2, stretched = mean_covariance((2.0, 2.0)), mean_covariance((4.0, 1.0))
    # Variances scale with (s / 2)^2 per axis: x 4 along y (factor 4), / 4 along x (factor 1).
    np.testing.assert_allclose(stretched[1, 1] / at_x2[1, 1], 4.0, rtol=0.15)
    np.testing.assert_allclose(stretched[0, 0] / at_x2[0, 0], 0.25, rtol=0.15)
    # At x2 the paper's range (variances up to 2.5 s = 5), orientations uniform.
    assert 1.5 < at_x2[0, 0] < 3.0 and abs(at_x2[0, 1]) < 0.3


@pytest.mark.parametrize("architecture", ["scale-aware", "mzsr"])
def test_toy_meta_training_over_pairs_exports_a_usable_model(images, init, tmp_path, architecture):
    recipe = _recipe(tmp_path, architecture)
    path = scale_tasks.run(recipe, init, data_dir=images, out=tmp_path / "run")
    model = napari_mzsr.load_model(path)
    info = model.info
    assert info.architecture == architecture and info.scales == [1.0, 1.5, 2.0, 3.0, 3.5]
    assert info.adaptation_layers == ([1] if architecture == "scale-aware" else [])
    assert info.training["iterations"] == 3 and info.training["init"]["file"] == str(init)
    assert set(info.training["validation_psnr"]) == {"0", "1"}
    records = [
        json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    ]
    cpu = [r["cpu_s"] for r in records if "loss" in r]
    assert len(cpu) == 3 and cpu == sorted(cpu) and cpu[0] > 0
    assert info.training["cpu_time_s"] == cpu[-1]
    network = model.network("cpu", (2.5, 1.5))
    assert isinstance(network, ScaleAwareNet) == (architecture == "scale-aware")
    lr_img = np.random.default_rng(1).integers(0, 256, (30, 26, 3), dtype=np.uint8)
    sr = napari_mzsr.super_resolve(lr_img, scale=(2.5, 1.5), kernel=1.0, steps=1, model=path)
    assert sr.shape == (75, 39, 3)


def test_export_of_a_stopped_run_validates_its_last_step_and_counts_its_cpu(images, init, tmp_path):
    scale_tasks.run(_recipe(tmp_path, iterations=2), init, data_dir=images, out=tmp_path / "run")
    payload = checkpoint.load(tmp_path / "run" / "checkpoint.pt")
    measured = payload["validation"].pop()  # as if the run had stopped before validating
    del payload["cpu_s"]  # as a checkpoint written before run_loop kept CPU time
    assert measured["step"] == 2 and payload["validation"][-1]["step"] == 0
    stopped = checkpoint.save(tmp_path / "run" / "stopped.pt", payload)
    path = scale_tasks.export(stopped, tmp_path / "exported.pt", data_dir=images)
    training = napari_mzsr.load_model(path).info.training
    assert training["iterations"] == 2
    last = training["validation_history"][-1]
    assert last["step"] == 2 and last["val"] == measured["val"] and last["val_cpu_s"] > 0
    assert training["validation_psnr"] == measured["val"]
    records = [
        json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    ]
    assert training["cpu_time_s"] == [r["cpu_s"] for r in records if "loss" in r][-1] > 0


def test_scale_aware_training_starts_from_the_plain_weights_and_resumes(images, init, tmp_path):
    recipe = _recipe(tmp_path, iterations=2)
    net = scale_tasks.initial_network(recipe, init)
    plain = napari_mzsr.load_model(init).network()
    x = torch.rand(1, 3, 20, 20)
    torch.testing.assert_close(net(x, (1.5, 3.0)), plain(x))
    scale_tasks.run(recipe, init, data_dir=images, out=tmp_path / "a")
    old = checkpoint.load(tmp_path / "a" / "checkpoint.pt")
    spent = old.pop("cpu_s")  # as a checkpoint written before run_loop kept CPU time
    checkpoint.save(tmp_path / "a" / "checkpoint.pt", old)
    longer = _recipe(tmp_path, iterations=4)
    resumed = scale_tasks.run(
        longer, init, data_dir=images, out=tmp_path / "a", resume=tmp_path / "a" / "checkpoint.pt"
    )
    straight = scale_tasks.run(longer, init, data_dir=images, out=tmp_path / "b")
    a, b = (napari_mzsr.load_model(p).state_dict for p in (resumed, straight))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The resumed run counts the CPU time of the first steps from their log.
    assert napari_mzsr.load_model(resumed).info.training["cpu_time_s"] > spent > 0


def test_freeze_body_meta_learns_the_modules_only(images, init, tmp_path):
    path = tmp_path / "frozen.toml"
    text = RECIPE.format(architecture="scale-aware", iterations=2)
    path.write_text(text.replace("plain_share = 0.2", "plain_share = 0.2\nfreeze_body = true"))
    out = scale_tasks.run(load_recipe(path), init, data_dir=images, out=tmp_path / "run")
    trained = napari_mzsr.load_model(out).state_dict
    start = napari_mzsr.load_model(init).state_dict
    assert all(torch.equal(trained[k], v) for k, v in start.items())
    assert trained["adaptations.1.adapt.experts"].abs().max() > 0
    plain = tmp_path / "plain.toml"
    plain.write_text(
        path.read_text().replace('architecture = "scale-aware"', 'architecture = "mzsr"')
    )
    with pytest.raises(RecipeError, match="freeze_body"):
        scale_tasks.run(load_recipe(plain), init, data_dir=images, out=tmp_path / "run2")


def test_one_channel_run_starts_from_a_colour_scale_aware_model(tmp_path):
    rgb = ScaleAwareNet(3, 8, 4, adaptation_layers=[1], generator=torch.Generator().manual_seed(2))
    with torch.no_grad():  # experts start at zero: give them an effect to carry over
        for name, p in rgb.named_parameters():
            if name.endswith("experts"):
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(3))
    info = ModelInfo(
        "arb", [2.0], "bicubic", 3, features=8, layers=4,
        architecture="scale-aware", adaptation_layers=[1],
    )  # fmt: skip
    path = save_model(tmp_path / "arb.pt", rgb, info)
    gray_recipe = _recipe(tmp_path)
    gray_recipe["channels"] = 1
    gray = scale_tasks.initial_network(gray_recipe, path)
    x = torch.rand(1, 1, 20, 22)
    with torch.no_grad():
        expected = rgb(x.repeat(1, 3, 1, 1), (2.0, 3.5)).mean(dim=1, keepdim=True)
        torch.testing.assert_close(gray(x, (2.0, 3.5)), expected, rtol=1e-5, atol=1e-6)
    other = _recipe(tmp_path)
    other["scale_tasks"]["adaptation_layers"] = [2]
    with pytest.raises(ValueError, match=r"adaptation layers \[2\]"):
        scale_tasks.initial_network(other, path)
