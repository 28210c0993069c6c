"""Unit tests of the training building blocks (no training runs)."""

from __future__ import annotations

import itertools
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
    hr = torch.rand(2, 3, 33, 33, generator=torch.Generator().manual_seed(0))
    k = torch.from_numpy(tasks.sample_kernel(np.random.default_rng(1), 2.2)).float()
    for kernel, method in ((None, "direct"), (k, "direct"), (k, "bicubic")):
        x = tasks.make_pairs(hr, 2.2, kernel, method)
        assert x.shape == hr.shape
        # The LR is clipped to [0, 1]; the bicubic upsampling after it may overshoot by
        # at most 2N(1 + N) = 0.159, N = 0.074 the cubic's negative lobe sum per axis.
        assert -0.16 <= float(x.min()) and float(x.max()) <= 1.16


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


def test_recipe_overrides_are_checked_and_recorded(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('name = "x"\n[meta]\npatch = 64\n')
    recipe = load_recipe(path, ["meta.patch=48", "meta.meta_lr_decay=cosine", "seed=3"])
    assert recipe["meta"]["patch"] == 48 and recipe["meta"]["meta_lr_decay"] == "cosine"
    assert recipe["seed"] == 3 and recipe["overrides"][0] == "meta.patch=48"
    with pytest.raises(RecipeError, match="pach"):
        load_recipe(path, ["meta.pach=48"])
    with pytest.raises(RecipeError, match="KEY=VALUE"):
        load_recipe(path, ["meta.patch"])
    with pytest.raises(RecipeError, match="meta_lr_decay"):
        load_recipe(path, ["meta.meta_lr_decay=linear"])
    with pytest.raises(RecipeError, match="second_order_last_only"):
        load_recipe(path, ["meta.first_order=true", "meta.second_order_last_only=true"])
    with pytest.raises(RecipeError, match="kernels"):
        load_recipe(path, ["pretrain.kernels=bicubic"])


def test_meta_learning_rate_warms_up_then_decays_to_the_floor():
    from training.meta import meta_learning_rate

    cfg = {
        "meta_lr": 1e-4,
        "meta_lr_warmup": 4,
        "meta_lr_decay": "cosine",
        "meta_lr_min": 1e-6,
        "iterations": 24,
    }
    lrs = [meta_learning_rate(s, cfg) for s in range(30)]
    assert lrs[:4] == pytest.approx([2.5e-5, 5e-5, 7.5e-5, 1e-4])
    assert lrs[4] == pytest.approx(1e-4)
    assert lrs[14] == pytest.approx(1e-6 + 0.5 * (1e-4 - 1e-6))  # half way: the mean
    assert all(a > b for a, b in itertools.pairwise(lrs[4:25]))
    assert lrs[24:] == pytest.approx([1e-6] * 6)
    constant = {**cfg, "meta_lr_warmup": 0, "meta_lr_decay": "none"}
    assert {meta_learning_rate(s, constant) for s in range(30)} == {1e-4}


def _meta_gradient(net, task, weights, cfg):
    from training.meta import task_loss

    net.zero_grad()
    loss, _ = task_loss(net, task, weights, cfg)
    loss.backward()
    return torch.cat([p.grad.flatten() for p in net.parameters()])


def test_second_order_through_the_last_inner_step_only():
    from torch.func import functional_call

    from napari_mzsr.core.network import MZSRNet
    from training.meta import Task

    torch.manual_seed(0)
    net = MZSRNet(3, features=4, layers=3).double()
    task = Task(*(torch.rand(2, 3, 10, 10, dtype=torch.float64) for _ in range(4)))
    weights = torch.tensor([0.3, 0.7], dtype=torch.float64)
    cfg = {"inner_steps": 2, "inner_lr": 0.5, "first_order": False}
    full = _meta_gradient(net, task, weights, {**cfg, "second_order_last_only": False})
    last = _meta_gradient(net, task, weights, {**cfg, "second_order_last_only": True})
    first = _meta_gradient(
        net, task, weights, {**cfg, "first_order": True, "second_order_last_only": False}
    )

    # The same by hand: a constant first inner gradient, a differentiated second one.
    def l1(params, x, y):
        return (functional_call(net, params, (x,)) - y).abs().mean()

    theta = dict(net.named_parameters())
    g0 = torch.autograd.grad(l1(theta, task.support_x, task.support_y), tuple(theta.values()))
    fast1 = {k: w - 0.5 * g.detach() for (k, w), g in zip(theta.items(), g0, strict=True)}
    g1 = torch.autograd.grad(
        l1(fast1, task.support_x, task.support_y), tuple(fast1.values()), create_graph=True
    )
    fast2 = {k: w - 0.5 * g for (k, w), g in zip(fast1.items(), g1, strict=True)}
    loss = 0.3 * l1(fast1, task.query_x, task.query_y) + 0.7 * l1(fast2, task.query_x, task.query_y)
    expected = torch.cat([g.flatten() for g in torch.autograd.grad(loss, tuple(theta.values()))])
    torch.testing.assert_close(last, expected)
    assert not torch.allclose(last, full) and not torch.allclose(last, first)
    # With one inner step, "last only" is the full second order.
    one = {**cfg, "inner_steps": 1}
    torch.testing.assert_close(
        _meta_gradient(net, task, weights[1:], {**one, "second_order_last_only": True}),
        _meta_gradient(net, task, weights[1:], {**one, "second_order_last_only": False}),
    )


def test_kernel_pretraining_blurs_each_patch_with_its_own_kernel(tmp_path):
    from training import distributed
    from training.pretrain import sample_batch
    from training.session import Session

    # A radially symmetric image: every flip and rotation of its one patch is the same.
    r = np.hypot(*np.mgrid[-11.5:12.5, -11.5:12.5])
    image = (np.stack([np.cos(r / 2)] * 3, axis=-1) * 0.5 + 0.5).astype(np.float32)
    bank = data.ImageBank([image], ["a"], 3, texture_threshold=0.0)
    path = tmp_path / "r.toml"
    path.write_text('name = "x"\n[pretrain]\npatch = 24\n[meta]\nkernel_variance_min = 0.2\n')

    def batch(kernels, seed=1):
        recipe = load_recipe(path, [f"pretrain.kernels={kernels}"])
        session = Session(
            recipe,
            "pretrain",
            tmp_path,
            torch.device("cpu"),
            None,
            distributed.Context(),
            bank,
            [],
            np.random.default_rng(seed),
        )
        return sample_batch(session, 3)

    x, hr = batch("none")
    assert torch.equal(hr[0], hr[1]) and torch.equal(x[0], x[2])
    torch.testing.assert_close(x, tasks.make_pairs(hr, 2.0))
    x, hr = batch("meta")
    assert torch.equal(hr[0], hr[1]) and not torch.allclose(x[0], x[1])
    # Replaying the random stream: scale, patches, then one kernel per patch.
    rng = np.random.default_rng(1)
    rng.integers(1)
    bank.sample(rng, 3, 24)
    for i in range(3):
        kernel = torch.from_numpy(tasks.sample_kernel(rng, 2.0, 0.2)).float()
        torch.testing.assert_close(x[i : i + 1], tasks.make_pairs(hr[i : i + 1], 2.0, kernel))


def test_identity_tasks_and_validation_without_blur():
    from napari_mzsr.core.resize import imresize_tensor
    from training import validate

    a, b = np.random.default_rng(4), np.random.default_rng(4)
    # No share: the same kernels from the same stream as before the option existed.
    for _ in range(5):
        np.testing.assert_array_equal(
            tasks.task_kernel(a, 2.0, 0.2), tasks.sample_kernel(b, 2.0, 0.2)
        )
    np.testing.assert_array_equal(tasks.task_kernel(a, 2.0, 0.2, 1.0), np.ones((1, 1)))
    shapes = [tasks.task_kernel(a, 2.0, 0.2, 0.3).shape for _ in range(400)]
    assert 0.2 < shapes.count((1, 1)) / 400 < 0.4 and (15, 15) in shapes

    hr = np.random.default_rng(0).random((24, 24, 3)).astype(np.float32)
    recipe = {
        "validation": {"kernels": [[0.0, 0.0, 0.0]], "kernel_size": 21, "scales": [2.0]},
        "degradation": "bicubic",
    }
    (item,) = validate.build([hr], recipe)
    plain = imresize_tensor(torch.from_numpy(hr.transpose(2, 0, 1).copy())[None].double(), 0.5)
    torch.testing.assert_close(item.lr, (torch.round(plain.clamp(0, 1) * 255) / 255).float())
    assert item.kernel.shape == (1, 1)


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
           "query": 2, "patch": patches.shape[-1], "kernel_variance_min": 1.0,
           "identity_kernel_share": 0.0, "second_order_last_only": False}  # fmt: skip
    return SimpleNamespace(
        settings=cfg,
        recipe={"scales": [2.0], "degradation": "direct"},
        rng=np.random.default_rng(0),
        bank=_FixedBank(patches),
        device=torch.device("cpu"),
        prepare=lambda x: x,
        autocast=nullcontext,
    )


def _task_loss(session, net, weights):
    from training.meta import sample_task, task_loss

    return task_loss(net, sample_task(session), weights, session.settings)[0]


def test_meta_gradient_is_second_order_maml_on_the_query_set():
    """The meta-gradient of one fixed task equals a hand-written second-order MAML
    gradient: inner SGD steps on the support L1 loss, differentiated through, and the
    weighted query L1 losses after each step. First order differs measurably here."""
    from torch.func import functional_call

    from napari_mzsr.core.network import MZSRNet

    patches = np.random.default_rng(1).random((4, 1, 16, 16)).astype(np.float32)
    net = MZSRNet(1, features=3, layers=3, generator=torch.Generator().manual_seed(2))
    weights = torch.tensor([0.3, 0.7])
    params = list(net.parameters())
    meta = torch.autograd.grad(_task_loss(_tiny_session(patches), net, weights), params)

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
        _task_loss(_tiny_session(patches, first_order=True), net, weights), params
    )
    assert max(float((m - f).abs().max()) for m, f in zip(meta, first, strict=True)) > 1e-4


def test_study_resumes_a_stage_from_its_checkpoint(tmp_path):
    """An interrupted stage (checkpoint, no output) is resumed from its own checkpoint,
    replacing any ``resume`` of the arms file; a finished stage is skipped."""
    from training import study

    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "x"\n')
    plan = {
        "recipe": str(recipe),
        "arm": [
            {
                "name": "a",
                "stage": [
                    {"command": "pretrain", "resume": "old.pt", "cpu_minutes": 1},
                    {"command": "meta", "pretrained": "@previous", "cpu_minutes": 2},
                ],
            }
        ],
    }
    runs = tmp_path / "runs"
    first, second = study.stage_dirs(plan["arm"][0], runs)
    calls = []
    study.run_arm(plan, plan["arm"][0], "DATA", runs, lambda cmd, log: calls.append(cmd))
    assert [c[c.index("--resume") + 1] for c in calls if "--resume" in c] == ["old.pt"]
    assert "--resume" not in calls[1]

    calls.clear()
    (first / "pretrained.pt").write_bytes(b"")
    (second / "checkpoint.pt").write_bytes(b"")
    study.run_arm(plan, plan["arm"][0], "DATA", runs, lambda cmd, log: calls.append(cmd))
    (cmd,) = calls
    assert cmd[0] == "meta" and cmd.count("--resume") == 1
    assert cmd[cmd.index("--resume") + 1] == str(second / "checkpoint.pt")
    assert cmd[cmd.index("--pretrained") + 1] == str(first / "pretrained.pt")
    assert len((second / "command.txt").read_text().splitlines()) == 2

    calls.clear()
    (first / "pretrained.pt").unlink()
    (first / "checkpoint.pt").write_bytes(b"")
    study.run_arm(plan, plan["arm"][0], "DATA", runs, lambda cmd, log: calls.append(cmd))
    assert calls[0].count("--resume") == 1
    assert calls[0][calls[0].index("--resume") + 1] == str(first / "checkpoint.pt")
