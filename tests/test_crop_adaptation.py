"""Crop adaptation: random patches per step for large images (core adaptation and the API)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from napari_mzsr import gaussian_kernel, imresize, iter_adapt, load_model
from napari_mzsr.core import adaptation
from napari_mzsr.core.adaptation import adapt, make_son, patch_corner
from napari_mzsr.core.schedules import rate_at
from napari_mzsr.pipeline import options
from napari_mzsr.pipeline.run import drive

pytestmark = pytest.mark.usefixtures("one_thread")


def _smooth(shape, channels=3, seed=0) -> np.ndarray:
    base = np.random.default_rng(seed).random((shape[0] // 6, shape[1] // 6, channels))
    return np.clip(imresize(base, output_shape=shape), 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def lr_batch() -> torch.Tensor:
    return torch.from_numpy(_smooth((96, 84)).transpose(2, 0, 1)[None].copy())


KERNEL = torch.from_numpy(gaussian_kernel(1.0, size=9)).float()


def _final_weights(run):
    return [p.detach().clone() for p in drive(run).net.parameters()]


def _crop_run(tiny_model, image, steps, seed):
    return iter_adapt(
        image, scale=2, kernel=KERNEL.numpy(), steps=steps, model=tiny_model, device="cpu",
        seed=seed, precision="float32", adapt_patch=32, adapt_patches=4,
    )  # fmt: skip


def test_patch_corners_are_seeded_and_inside():
    a = patch_corner((50, 40), (32, 16), 4, np.random.default_rng(7))
    b = patch_corner((50, 40), (32, 16), 4, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (4, 2)
    assert a[..., 0].max() <= 50 - 32 and a[..., 1].max() <= 40 - 16 and a.min() >= 0
    with pytest.raises(ValueError, match="do not fit"):
        patch_corner((20, 40), (32, 16), 1, np.random.default_rng())


def test_crop_adaptation_is_deterministic(tiny_model):
    image = _smooth((96, 84))
    first = _final_weights(_crop_run(tiny_model, image, 3, seed=5))
    again = _final_weights(_crop_run(tiny_model, image, 3, seed=5))
    other = _final_weights(_crop_run(tiny_model, image, 3, seed=6))
    reports = list(_crop_run(tiny_model, image, 3, seed=5))
    assert [r.step for r in reports] == [0, 1, 2]
    for p, q in zip(first, again, strict=True):
        torch.testing.assert_close(p, q, atol=0, rtol=0)
    assert any(not torch.equal(p, q) for p, q in zip(first, other, strict=True))


def test_crop_adaptation_reduces_the_whole_image_loss(tiny_model, lr_batch):
    son_up = make_son(lr_batch, KERNEL, 2, "direct")

    def whole_loss(net):
        with torch.no_grad():
            return float((net(son_up) - lr_batch).abs().mean())

    before = whole_loss(load_model(tiny_model).network())
    image = lr_batch[0].permute(1, 2, 0).numpy()
    adapted = drive(_crop_run(tiny_model, image, 15, seed=0))
    assert whole_loss(adapted.net) < 0.8 * before


def test_api_crops_are_meta_test_crops(tiny_model):
    """iter_adapt reads the patches from the image itself, drawn step by step: the same
    as cropping the whole image tensor at corners from an rng seeded by ``seed``."""
    image = _smooth((96, 84))
    api = _final_weights(_crop_run(tiny_model, image, 3, seed=4))
    net = load_model(tiny_model).network()
    x = torch.from_numpy(image.transpose(2, 0, 1)[None].copy())
    schedule = load_model(tiny_model).info.lr_schedule
    rng = np.random.default_rng(4)

    def batch_at(step):
        corners = patch_corner((96, 84), (32, 32), 4, rng)
        return torch.cat([x[..., y : y + 32, c : c + 32] for y, c in corners])

    run = adapt(net, batch_at, KERNEL, 2, steps=3, learning_rate=lambda s: rate_at(schedule, s),
                whole_image=False)  # fmt: skip
    for _ in run:
        pass
    for p, q in zip(api, net.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)


@pytest.mark.parametrize("rate", [1e-2, 0.3, 3.0])
def test_son_loss_never_rises_beyond_the_tolerance(tiny_model, lr_batch, rate):
    """Whole-image runs of 0, 1, 2, ... steps share their first steps, so the son loss
    after n steps is at most (1 + RISE_TOLERANCE) times that after n - 1, whatever the
    rate (3.0 overshoots: steps are undone)."""
    son_up = make_son(lr_batch, KERNEL, 2, "direct")
    losses = []
    for n in range(7):
        net = load_model(tiny_model).network()
        run = adapt(net, lambda step: lr_batch, KERNEL, 2, steps=n,
                    learning_rate=lambda step: rate, whole_image=True)  # fmt: skip
        for _ in run:
            pass
        with torch.no_grad():
            losses.append(float((net(son_up) - lr_batch).abs().mean()))
    bound = 1 + adaptation.RISE_TOLERANCE
    assert all(b <= a * bound * (1 + 1e-6) for a, b in itertools.pairwise(losses)), losses


def test_a_rise_counts_beyond_the_tolerance_and_nan_always():
    one = torch.tensor(1.0)
    assert not adaptation._rose(one * (1 + adaptation.RISE_TOLERANCE / 2), one)
    assert adaptation._rose(one * (1 + 2 * adaptation.RISE_TOLERANCE), one)
    assert adaptation._rose(torch.tensor(float("nan")), one)


def _same(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


def test_auto_adapts_small_images_whole_and_large_ones_on_patches(tiny_gray_model, monkeypatch):
    monkeypatch.setattr(options, "AUTO_WHOLE_IMAGE_PIXELS", 48 * 48)
    monkeypatch.setattr(options, "AUTO_PATCH", 32)
    kw = dict(scale=2, kernel=1.0, steps=1, model=tiny_gray_model, device="cpu")
    small = _smooth((48, 48), 1)[..., 0]
    auto = _final_weights(iter_adapt(small, **kw))
    assert _same(auto, _final_weights(iter_adapt(small, adapt_patch=None, **kw)))
    large = np.pad(small, ((0, 1), (0, 0)), mode="edge")
    auto = _final_weights(iter_adapt(large, **kw))
    assert _same(auto, _final_weights(iter_adapt(large, adapt_patch=32, **kw)))
    assert not _same(auto, _final_weights(iter_adapt(large, adapt_patch=None, **kw)))


@pytest.mark.parametrize(
    ("patch", "patches", "match"),
    [(4, 4, "at least 9"), ("big", 4, "'auto', None"), (32, 0, "adapt_patches")],
)
def test_bad_crop_options_are_refused(tiny_model, patch, patches, match):
    with pytest.raises(ValueError, match=match):
        run = iter_adapt(
            _smooth((40, 40)), scale=2, kernel=gaussian_kernel(1.0, size=9), steps=1,
            model=tiny_model, device="cpu", adapt_patch=patch, adapt_patches=patches,
        )  # fmt: skip
        next(run)
