"""Unit tests of the training building blocks (no training runs)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from training import data, tasks
from training.pretrain import learning_rate
from training.recipe import RecipeError, load_recipe


def test_multi_step_weights_anneal_to_last_step():
    first = tasks.multi_step_weights(0, 5, 100)
    middle = tasks.multi_step_weights(50, 5, 100)
    end = tasks.multi_step_weights(100, 5, 100)
    later = tasks.multi_step_weights(10_000, 5, 100)
    np.testing.assert_allclose(first, 0.2)
    for w in (first, middle, end, later):
        assert w.sum() == pytest.approx(1.0)
        assert (w > 0).all()
    assert middle[-1] > first[-1] and middle[0] < first[0]
    np.testing.assert_allclose(end[:-1], 0.03 / 5)
    assert end[-1] == pytest.approx(1 - 4 * 0.03 / 5)
    np.testing.assert_allclose(later, end)
    np.testing.assert_allclose(tasks.multi_step_weights(7, 1, 100), [1.0])


def test_kernel_distribution_scales_with_factor():
    rng = np.random.default_rng(0)
    assert tasks.kernel_size(2.0) == 15
    for scale in (2.0, 3.3, 4.0):
        for _ in range(20):
            k = tasks.sample_kernel(rng, scale)
            assert k.shape == (tasks.kernel_size(scale),) * 2
            assert k.sum() == pytest.approx(1.0)
            # Total variance l1 + l2 lies in [2, 5 s] (trace of the covariance).
            r = np.arange(k.shape[0]) - k.shape[0] // 2
            var = (k.sum(0) * r**2).sum() + (k.sum(1) * r**2).sum()
            assert 1.9 < var < 5 * scale + 0.1


def test_widened_kernel_distribution_reaches_sharp_kernels():
    def total_variance(k):
        r = np.arange(k.shape[0]) - k.shape[0] // 2
        return (k.sum(0) * r**2).sum() + (k.sum(1) * r**2).sum()

    rng = np.random.default_rng(0)
    paper = [total_variance(tasks.sample_kernel(rng, 2.0)) for _ in range(200)]
    wide = [total_variance(tasks.sample_kernel(rng, 2.0, 0.2)) for _ in range(200)]
    assert min(paper) > 1.9
    # g^d_0.2 has total variance 0.4; the widened range must sample near it.
    assert min(wide) < 0.8
    assert max(wide) < 10.1


def test_make_pairs_shapes_for_non_integer_scale():
    hr = torch.rand(2, 3, 33, 33)
    k = torch.from_numpy(tasks.sample_kernel(np.random.default_rng(1), 2.2)).float()
    for kernel, method in ((None, "direct"), (k, "direct"), (k, "bicubic")):
        x = tasks.make_pairs(hr, 2.2, kernel, method)
        assert x.shape == hr.shape
        assert 0 <= float(x.min()) and float(x.max()) <= 1.0 + 1e-5


def test_learning_rate_halves_to_floor():
    cfg = {"lr": 4e-4, "lr_halve_every": 10, "lr_min": 1e-4}
    assert [learning_rate(s, cfg) for s in (0, 9, 10, 20, 30, 99)] == [
        4e-4,
        4e-4,
        2e-4,
        1e-4,
        1e-4,
        1e-4,
    ]


def test_read_images_of_any_kind(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 256, (40, 50), dtype=np.uint8)).save(tmp_path / "b.png")
    tifffile.imwrite(tmp_path / "c.tif", rng.integers(100, 4096, (40, 50), dtype=np.uint16))
    tifffile.imwrite(
        tmp_path / "d.tiff",
        rng.integers(0, 256, (3, 40, 50), dtype=np.uint8),
        photometric="rgb",
        planarconfig="separate",
    )
    paths = data.list_images(tmp_path)
    assert [p.name for p in paths] == ["a.png", "b.png", "c.tif", "d.tiff"]
    images = [data.read_image(p) for p in paths]
    assert [im.shape for im in images] == [(40, 50, 3), (40, 50, 1), (40, 50, 1), (40, 50, 3)]
    sixteen = images[2]
    assert sixteen.dtype == np.float32 and sixteen.min() == 0 and sixteen.max() == 1
    for channels in (1, 3):
        bank = data.load_bank(paths, channels, texture_threshold=0.0)
        patches = bank.sample(np.random.default_rng(0), 16, 24)
        assert patches.shape == (16, channels, 24, 24) and patches.dtype == np.float32
        assert 0 <= patches.min() and patches.max() <= 1


def test_gray_model_sees_luma_and_single_channels():
    rgb = np.zeros((4, 4, 3), np.float32)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 0.2, 0.5, 0.9
    rng = np.random.default_rng(0)
    seen = {round(float(data.to_channels(rgb, 1, rng)[0, 0, 0]), 4) for _ in range(200)}
    luma = round(float(rgb[0, 0] @ data.LUMA), 4)
    assert seen == {0.2, 0.5, 0.9, luma}
    assert data.to_channels(rgb, 1, None)[0, 0, 0] == pytest.approx(luma)
    assert data.to_channels(rgb[..., :1], 3, None).shape == (4, 4, 3)


def test_split_validation_is_spread_and_disjoint(tmp_path):
    paths = [tmp_path / f"{i:02d}.png" for i in range(20)]
    train, val = data.split_validation(paths, 4)
    assert len(val) == 4 and len(train) == 16 and not set(train) & set(val)
    assert max(int(p.stem) for p in val) >= 15


def test_texture_filter_rejects_flat_patches():
    flat = np.full((16, 16, 3), 0.5, np.float32)
    busy = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    assert data.texture(flat) == 0 and data.texture(busy) > 0.1


def test_recipe_rejects_unknown_keys(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('name = "x"\n[meta]\ninner_stepz = 3\n')
    with pytest.raises(RecipeError, match="inner_stepz"):
        load_recipe(path)
    path.write_text('name = "x"\nscales = [2.0, 4.0]\n[meta]\ninner_steps = 3\n')
    recipe = load_recipe(path)
    assert recipe["meta"]["inner_steps"] == 3 and recipe["meta"]["tasks"] == 5
    assert recipe["validation"]["scales"] == [2.0, 4.0]
    assert recipe["source"].startswith('name = "x"')
    path.write_text('name = "x"\n[meta]\nkernel_variance_min = 0\n')
    with pytest.raises(RecipeError, match="kernel_variance_min"):
        load_recipe(path)


def test_shipped_recipes_load():
    from training.recipe import ROOT

    recipes = sorted((ROOT / "training" / "recipes").glob("*.toml"))
    assert len(recipes) >= 5
    for path in recipes:
        recipe = load_recipe(path)
        assert recipe["meta"]["tasks"] >= 1
        assert not math.isnan(recipe["meta"]["inner_lr"])


class _FixedBank:
    """The same HR patches for every task: the task's randomness is its kernel only."""

    def __init__(self, patches: np.ndarray) -> None:
        self.patches = patches

    def sample(self, rng: np.random.Generator, count: int, size: int) -> np.ndarray:
        return self.patches[:count]


def _tiny_session(patches: np.ndarray, first_order: bool = False):
    from contextlib import nullcontext
    from types import SimpleNamespace

    cfg = {"inner_steps": 2, "inner_lr": 0.3, "first_order": first_order, "support": 2,
           "query": 2, "patch": patches.shape[-1], "kernel_variance_min": 1.0}  # fmt: skip
    return SimpleNamespace(
        settings=cfg,
        recipe={"scales": [2.0], "degradation": "direct"},
        rng=np.random.default_rng(0),
        bank=_FixedBank(patches),
        device=torch.device("cpu"),
        prepare=lambda x: x,
        autocast=nullcontext,
    )


def test_meta_gradient_is_second_order_maml_on_the_query_set():
    """The meta-gradient of one fixed task equals a hand-written second-order MAML
    gradient: inner SGD steps on the support L1 loss, differentiated through, and the
    weighted query L1 losses after each step. First order differs measurably here."""
    from torch.func import functional_call

    from napari_mzsr.core.network import MZSRNet
    from training.meta import task_loss

    patches = np.random.default_rng(1).random((4, 1, 16, 16)).astype(np.float32)
    net = MZSRNet(1, features=3, layers=3, generator=torch.Generator().manual_seed(2))
    weights = torch.tensor([0.3, 0.7])
    params = list(net.parameters())
    meta = torch.autograd.grad(task_loss(_tiny_session(patches), net, weights)[0], params)

    # The same task, drawn from the same generator as task_loss draws it.
    session = _tiny_session(patches)
    rng = session.rng
    scale = float(session.recipe["scales"][int(rng.integers(1))])
    kernel = torch.from_numpy(tasks.sample_kernel(rng, scale, 1.0)).float()
    hr = torch.from_numpy(session.bank.sample(rng, 4, 16))
    x = tasks.make_pairs(hr, scale, kernel, "direct")
    fast = dict(net.named_parameters())
    total = 0.0
    for step in range(2):
        support = (functional_call(net, fast, (x[:2],)) - hr[:2]).abs().mean()
        grads = torch.autograd.grad(support, list(fast.values()), create_graph=True)
        fast = {k: w - 0.3 * g for (k, w), g in zip(fast.items(), grads, strict=True)}
        query = (functional_call(net, fast, (x[2:],)) - hr[2:]).abs().mean()
        total = total + weights[step] * query
    expected = torch.autograd.grad(total, params)
    for m, e in zip(meta, expected, strict=True):
        torch.testing.assert_close(m, e, atol=1e-6, rtol=1e-4)
    first = torch.autograd.grad(
        task_loss(_tiny_session(patches, first_order=True), net, weights)[0], params
    )
    assert max(float((m - f).abs().max()) for m, f in zip(meta, first, strict=True)) > 1e-4
