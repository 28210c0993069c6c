"""Meta-learning on real degradations (training/real_degradations.py, real_tasks.py,
validate_real.py), at toy size."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from training_images import write_training_images

import napari_mzsr
from napari_mzsr.core.jpeg import jpeg
from napari_mzsr.core.kernels import kernel_covariance
from napari_mzsr.core.scale_aware import ScaleAwareNet
from napari_mzsr.io.model_file import ModelInfo, save_model
from napari_mzsr.pipeline import run as pipeline_run
from training import checkpoint, real_degradations, real_tasks, validate_real
from training.recipe import DEFAULTS, ROOT, RecipeError, load_recipe
from training.session import open_session

pytestmark = pytest.mark.usefixtures("one_thread")

RECIPE = """
name = "tiny-real"
channels = 3
architecture = "scale-aware"
scales = [2.0, 3.0]
degradation = "bicubic"
seed = 1
device = "cpu"
precision = "float32"

[network]
features = 8
layers = 4

[scale_tasks]
pairs = [[1.5, 3.0]]
adaptation_layers = [1]
module_lr = 1e-3
freeze_body = false

[real_tasks]
lr_side = 24
max_hr_side = 72

[data]
val_images = 1
val_crop = 60
texture_threshold = 0.01

[meta]
iterations = {iterations}
tasks = 2
support = 2
query = 2
patch = 16
inner_steps = 2
meta_lr = 1e-3
anneal_iterations = 1
kernel_variance_min = 0.2
log_every = 1
val_every = 100
checkpoint_every = 2

[validation]
set = "real"
scales = [[2.0, 2.0], [1.5, 3.0]]
steps = [0, 1]
"""


def _recipe(folder, iterations=2, **table):
    path = folder / f"real-{iterations}.toml"
    path.write_text(RECIPE.format(iterations=iterations))
    return load_recipe(path, [f"{k}={v}" for k, v in table.items()])


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_training_images(
        tmp_path_factory.mktemp("images"), 3, shape=(90, 96), edge=(40, 20, 10)
    )


@pytest.fixture(scope="module")
def init(tmp_path_factory):
    """A scale-aware theta_M of the recipe's shape (8 features, 4 layers, layer 1)."""
    net = ScaleAwareNet(3, 8, 4, adaptation_layers=[1], generator=torch.Generator().manual_seed(0))
    torch.nn.init.normal_(net.adaptations["1"].adapt.experts, std=0.01)
    info = ModelInfo(
        "aware", [1.5, 2.0, 3.0], "bicubic", 3, features=8, layers=4,
        architecture="scale-aware", adaptation_layers=[1],
    )  # fmt: skip
    return save_model(tmp_path_factory.mktemp("init") / "aware.pt", net, info)


@pytest.mark.parametrize("family", [f for f in real_degradations.FAMILIES if f != "none"])
def test_kernels_are_centred_normalised_and_stretched_by_the_factors(family):
    rng = np.random.default_rng(3)
    for _ in range(5):
        seed = int(rng.integers(1000))
        square = real_degradations.sample_kernel(np.random.default_rng(seed), family, (2.0, 2.0))
        tall = real_degradations.sample_kernel(np.random.default_rng(seed), family, (4.0, 1.0))
        for k in (square, tall):
            assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
            assert k.min() >= 0 and math.isclose(k.sum(), 1.0)
            yy, xx = np.mgrid[: k.shape[0], : k.shape[1]] - k.shape[0] // 2
            # Every family is point-symmetric about the centre: no shift of the image.
            assert abs((k * yy).sum()) < 1e-6 and abs((k * xx).sum()) < 1e-6
        # The same blur in LR pixels: 4x the spread along rows at factor 4, 1x along columns.
        var_x, var_y = np.diag(kernel_covariance(tall))
        ref_x, ref_y = np.diag(kernel_covariance(square))
        # (Pixel sampling blurs the ratios of the smallest kernels.)
        assert 2.5 < var_y / ref_y < 6.0
        assert var_x < 0.5 * ref_x + 0.05


def test_airy_and_disk_kernels_have_their_drawn_radius():
    airy = real_degradations.sample_kernel(np.random.default_rng(0), "airy", (2.0, 2.0))
    centre = airy.shape[0] // 2
    profile = airy[centre, centre:]
    # The first dark ring is a local minimum far below the peak.
    minimum = next(i for i in range(1, len(profile) - 1) if profile[i] <= profile[i + 1])
    assert profile[minimum] < 0.05 * profile[0] and 1 <= minimum <= 4
    disk = real_degradations.sample_kernel(np.random.default_rng(0), "disk", (2.0, 2.0))
    c = disk.shape[0] // 2
    assert np.ptp(disk[c - 1 : c + 2, c - 1 : c + 2]) < 1e-3 * disk.max() or disk.shape[0] <= 5


def test_degradations_follow_the_recipe_shares():
    cfg = {**DEFAULTS["real_tasks"], "families": dict.fromkeys(real_degradations.FAMILIES, 0.0)}
    cfg["families"]["airy"] = 1.0
    rng = np.random.default_rng(0)
    clean = [
        real_degradations.sample_degradation(
            rng, (2.0, 2.0), {**cfg, "noise_share": 0.0, "jpeg_share": 0.0}
        )
        for _ in range(20)
    ]
    assert {d.family for d in clean} == {"airy"}
    assert all(d.gain == d.floor == 0 and d.jpeg is None for d in clean)
    dirty = [
        real_degradations.sample_degradation(
            rng, (2.0, 2.0), {**cfg, "noise_share": 1.0, "jpeg_share": 1.0}
        )
        for _ in range(40)
    ]
    low, high = cfg["noise_std"]
    assert all(low**2 <= d.floor <= high**2 and 50 <= d.jpeg <= 95 for d in dirty)
    assert {d.subsampling for d in dirty} == set(real_degradations.SUBSAMPLINGS)


def test_lr_images_are_8_bit_with_the_drawn_noise():
    hr = torch.full((1, 1, 96, 120), 0.5, dtype=torch.float64)
    chain = real_degradations.Degradation("none", np.ones((1, 1)), "area", 0.0, 0.02**2)
    lr = real_degradations.degrade_hr(hr, chain, (2.0, 3.0), torch.Generator().manual_seed(0))
    assert lr.shape == (1, 1, 48, 40) and lr.dtype == torch.float32
    assert torch.equal(torch.round(lr * 255), lr * 255)
    assert float(lr.std()) == pytest.approx(0.02, rel=0.1)


def test_sharpened_tasks_follow_their_share_and_leave_older_draws_alone():
    cfg = dict(DEFAULTS["real_tasks"])
    assert cfg["sharpen_share"] == 0
    before = [real_degradations.sample_degradation(np.random.default_rng(3), (2.0, 2.0), cfg)
              for _ in range(3)]  # fmt: skip
    assert all(d.sharpen is None for d in before)
    # A share of 0 draws no number for sharpening: the stream goes on as before it existed
    # (a share that never fires still draws one).
    unused, never = np.random.default_rng(5), np.random.default_rng(5)
    real_degradations.sample_degradation(unused, (2.0, 2.0), cfg)
    real_degradations.sample_degradation(never, (2.0, 2.0), {**cfg, "sharpen_share": 1e-300})
    assert unused.random() != never.random()
    rng = np.random.default_rng(0)
    sharp = [
        real_degradations.sample_degradation(rng, (2.0, 2.0), {**cfg, "sharpen_share": 1.0})
        for _ in range(20)
    ]
    (v_low, v_high), (a_low, a_high) = cfg["sharpen_variance"], cfg["sharpen_amount"]
    assert all(v_low <= d.sharpen[0] <= v_high and a_low <= d.sharpen[1] <= a_high for d in sharp)
    assert "/sharpen" in sharp[0].describe()


def test_sharpening_overshoots_at_edges_and_keeps_flat_areas():
    edge = torch.zeros(1, 1, 32, 32, dtype=torch.float64)
    edge[..., 16:] = 0.6
    edge += 0.2
    sharp = real_degradations.unsharp_mask(edge, 1.0, 1.0)
    # A halo on both sides of the edge, nothing far from it.
    assert float(sharp.max()) > 0.85 and float(sharp.min()) < 0.15
    assert torch.allclose(sharp[..., :8], edge[..., :8]) and torch.allclose(
        sharp[..., 24:], edge[..., 24:]
    )
    hr = torch.full((1, 1, 64, 64), 0.5, dtype=torch.float64)
    hr[..., 32:] = 0.7
    chain = real_degradations.Degradation("none", np.ones((1, 1)), "area", sharpen=(1.0, 1.0))
    lr = real_degradations.degrade_hr(hr, chain, (2.0, 2.0), torch.Generator().manual_seed(0))
    plain = real_degradations.degrade_hr(
        hr, real_degradations.Degradation("none", np.ones((1, 1)), "area"), (2.0, 2.0),
        torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert float(lr.max()) > float(plain.max()) + 0.05


@pytest.mark.self_check  # the defaults' noise and JPEG matching, not the suite's stand-ins
@pytest.mark.parametrize("quality", [None, 60])
def test_the_son_of_a_task_is_the_son_a_default_run_makes(init, monkeypatch, quality):
    rng = np.random.default_rng(0)
    smooth = ndimage.gaussian_filter(rng.random((64, 72, 3)), (2, 2, 0))
    noisy = (smooth - smooth.min()) / np.ptp(smooth) * 0.8 + 0.1 + rng.normal(0, 0.05, smooth.shape)
    image = np.round(np.clip(noisy, 0, 1) * 255).astype(np.uint8)
    image = image if quality is None else jpeg(image, quality)
    seen = {}

    def recording(target):
        def wrapper(*args, **kwargs):
            seen.setdefault(target, (args, kwargs))
            return original[target](*args, **kwargs)

        return wrapper

    original = {"run": pipeline_run.adapt, "task": real_tasks.make_son}
    monkeypatch.setattr(pipeline_run, "adapt", recording("run"))
    monkeypatch.setattr(real_tasks, "make_son", recording("task"))
    napari_mzsr.super_resolve(image, scale=2.0, steps=1, model=init, self_check=False)
    lr = torch.from_numpy(image.transpose(2, 0, 1).copy())[None].float() / 255
    real_tasks.runtime_son(lr, (2.0, 2.0), torch.Generator().manual_seed(0))
    (run_args, run), (task_args, task) = seen["run"], seen["task"]
    assert np.array_equal(run_args[2].numpy(), task_args[1].numpy())  # the kernel
    assert run["degradation"] == task_args[3] == "area"
    assert run["jpeg_quality"] == task["jpeg_quality"]
    assert (run["jpeg_quality"] is None) == (quality is None)
    if quality is None:
        assert run["noise"] is not None
        assert (run["noise"].gain, run["noise"].floor) == pytest.approx(
            (task["noise"].gain, task["noise"].floor)
        )
    else:
        assert (run["noise"] is None) == (task["noise"] is None)


def test_toy_real_training_learns_every_weight_resumes_exactly_and_exports(images, init, tmp_path):
    recipe = _recipe(tmp_path, iterations=2)
    real_tasks.check_recipe(recipe)
    first = real_tasks.scale_tasks.run(
        recipe, init, data_dir=images, out=tmp_path / "a", task=real_tasks.task_loss
    )
    start = napari_mzsr.load_model(init).state_dict
    moved = napari_mzsr.load_model(first).state_dict
    assert not torch.equal(start["body.0.weight"], moved["body.0.weight"])
    longer = _recipe(tmp_path, iterations=4)
    resumed = real_tasks.scale_tasks.run(
        longer, init, data_dir=images, out=tmp_path / "a",
        resume=tmp_path / "a" / "checkpoint.pt", task=real_tasks.task_loss,
    )  # fmt: skip
    straight = real_tasks.scale_tasks.run(
        longer, init, data_dir=images, out=tmp_path / "b", task=real_tasks.task_loss
    )
    a, b = (napari_mzsr.load_model(p).state_dict for p in (resumed, straight))
    assert all(torch.equal(a[k], b[k]) for k in a)
    model = napari_mzsr.load_model(resumed)
    training = model.info.training
    assert training["iterations"] == 4 and training["cpu_time_s"] > 0
    assert set(training["validation_psnr"]) == {"0", "1", "gain"}
    assert model.info.architecture == "scale-aware" and model.info.degradation == "bicubic"
    out = napari_mzsr.super_resolve(
        np.zeros((20, 24, 3), np.uint8) + 90, scale=(1.5, 3.0), model=resumed, steps=1
    )
    assert out.shape == (30, 72, 3)
    assert checkpoint.load(tmp_path / "a" / "checkpoint.pt")["step"] == 4


def test_real_validation_is_fixed_and_scores_the_defaults(images, init, tmp_path):
    recipe = _recipe(tmp_path)
    crops = [np.asarray(Image.open(images / "img0.png"), np.float32)[:60, :60] / 255]
    items, again = validate_real.build(crops, recipe), validate_real.build(crops, recipe)
    assert [i.label for i in items] == [i.label for i in again]
    assert all(np.array_equal(i.lr, j.lr) for i, j in zip(items, again, strict=True))
    assert items[0].lr.dtype == np.uint8 and items[1].lr.shape[:2] == (40, 20)
    net = napari_mzsr.load_model(init).network()
    result = validate_real.evaluate(net, items, recipe, torch.device("cpu"), None)
    assert set(result) == {"0", "1", "gain"}
    scores = []
    for item in items:
        out = napari_mzsr.super_resolve(
            item.lr, scale=item.scale, steps=1, model=init, self_check=False
        )
        scores.append(validate_real.score(out / 255.0, item.hr, item.scale) - item.bicubic)
    assert result["gain"] == pytest.approx(np.mean(scores), abs=1e-3)


def test_shipped_real_recipes_load_and_bad_ones_are_refused(tmp_path):
    for name in ("real", "real-control", "real-camera"):
        recipe = load_recipe(ROOT / "training" / "recipes" / f"{name}.toml")
        real_tasks.check_recipe(recipe)
        assert recipe["validation"]["set"] == "real" and recipe["data"]["val_crop"] == 240
    for table, message in (
        ({"validation.set": '"photos"'}, "validation set"),
        ({"real_tasks.noise_std": "[0.0, 0.1]"}, "noise_std"),
        ({"real_tasks.jpeg_quality": "[50, 100]"}, "jpeg_quality"),
        ({"real_tasks.jpeg_share": "1.5"}, "jpeg_share"),
        ({"real_tasks.sharpen_share": "-0.1"}, "sharpen_share"),
        ({"real_tasks.sharpen_amount": "[0.0, 1.0]"}, "sharpen_amount"),
    ):
        with pytest.raises(RecipeError, match=message):
            _recipe(tmp_path, **table)
    with pytest.raises(RecipeError, match="too small"):
        real_tasks.check_recipe(_recipe(tmp_path, **{"real_tasks.lr_side": 4}))


def test_real_recipes_never_train_on_the_photos_auto_is_chosen_on(images, tmp_path):
    from benchmarks.real_images import VALIDATION

    for name in ("real", "real-control", "real-camera"):
        recipe = load_recipe(ROOT / "training" / "recipes" / f"{name}.toml")
        assert sorted(recipe["data"]["exclude"]) == sorted(VALIDATION)
    recipe = _recipe(tmp_path, **{"data.exclude": '["img1.png"]', "data.val_images": 0})
    session = open_session(recipe, "meta", data_dir=images, out=tmp_path / "s")
    assert sorted(session.bank.names) == ["img0.png", "img2.png"]
    assert session.provenance["excluded_images"] == ["img1.png"]
    with pytest.raises(FileNotFoundError, match=r"img9\.png"):
        open_session(_recipe(tmp_path, **{"data.exclude": '["img9.png"]'}), "meta", data_dir=images)


def test_real_steps_study_measures_rates_patches_and_layers(images, init, tmp_path):
    from benchmarks import real_steps

    model = napari_mzsr.load_model(init)
    frozen = real_steps.FrozenLayers(model.info, model.state_dict, adapted=(3,))
    net = frozen.network("cpu", (2.0, 2.0))
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    assert trainable == ["body.6.weight", "body.6.bias"]
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.format(iterations=1).replace("val_images = 1", "val_images = 1"))
    md = real_steps.main(
        ["--recipe", str(recipe), "--models", f"tiny={init}", "--data", str(images),
         "--lrs", "0.01", "--steps", "0,1", "--out", str(tmp_path), "--name", "s"]
    )  # fmt: skip
    text = md.read_text()
    assert "| 0.01 |" in text and "whole image" in text and "last two" in text
    payload = json.loads((tmp_path / "s.json").read_text())
    curve = payload["results"]["tiny"]["curves"]["0.01"]
    assert set(curve) == {"0", "1"} and all(len(v) == 2 for v in curve.values())


def test_training_curves_compare_runs_against_cpu_minutes(tmp_path):
    from benchmarks import training_curves

    logs = {}
    for name, gains in (("a", (0.3, 0.5)), ("b", (0.3, 0.35))):
        lines = [
            {"step": 0, "val": {"0": 27.0, "10": 27.5, "gain": gains[0]}, "cpu_s": 0.0},
            {"step": 5, "loss": 0.03, "cpu_s": 30.0},
            {"step": 10, "val": {"0": 27.1, "10": 27.9, "gain": gains[1]}, "cpu_s": 120.0},
        ]
        logs[name] = tmp_path / f"{name}.jsonl"
        logs[name].write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    md = training_curves.main(
        ["--runs", *(f"{n}={p}" for n, p in logs.items()), "--out", str(tmp_path), "--name", "c"]
    )
    text = md.read_text()
    assert (
        "| 10 | 2.0 | 27.10 | 27.90 | 0.50 |" in text
        and "| 10 | 2.0 | 27.10 | 27.90 | 0.35 |" in text
    )
    assert (tmp_path / "c.png").stat().st_size > 0
