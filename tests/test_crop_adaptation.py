"""Crop adaptation: random patches per step for large images (meta_test and the API)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_mzsr import gaussian_kernel, imresize, iter_adapt, load_model
from napari_mzsr.core.adaptation import adapt, make_son, patch_corners
from napari_mzsr.pipeline import run as api

pytestmark = pytest.mark.usefixtures("one_thread")


def _smooth(shape, channels=3, seed=0) -> np.ndarray:
    base = np.random.default_rng(seed).random((shape[0] // 6, shape[1] // 6, channels))
    return np.clip(imresize(base, output_shape=shape), 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def lr_batch() -> torch.Tensor:
    return torch.from_numpy(_smooth((96, 84)).transpose(2, 0, 1)[None].copy())


KERNEL = torch.from_numpy(gaussian_kernel(1.0, size=9)).float()


def _adapted(tiny_model, lr_batch, steps, seed):
    net = load_model(tiny_model).network()
    rng = np.random.default_rng(seed)
    reports = list(
        adapt(net, lr_batch, KERNEL, 2, steps, lambda s: 2e-2, patch_size=32, patches=4, rng=rng)
    )
    return net, reports


def test_patch_corners_are_seeded_and_inside():
    a = patch_corners((50, 40), (32, 16), 4, 3, np.random.default_rng(7))
    b = patch_corners((50, 40), (32, 16), 4, 3, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 4, 2)
    assert a[..., 0].max() <= 50 - 32 and a[..., 1].max() <= 40 - 16 and a.min() >= 0
    with pytest.raises(ValueError, match="do not fit"):
        patch_corners((20, 40), (32, 16), 1, 1, np.random.default_rng())


def test_crop_adaptation_is_deterministic(tiny_model, lr_batch):
    first, reports = _adapted(tiny_model, lr_batch, 3, seed=5)
    again, _ = _adapted(tiny_model, lr_batch, 3, seed=5)
    other, _ = _adapted(tiny_model, lr_batch, 3, seed=6)
    assert [r.step for r in reports] == [0, 1, 2]
    for p, q in zip(first.parameters(), again.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=0, rtol=0)
    assert any(
        not torch.equal(p, q) for p, q in zip(first.parameters(), other.parameters(), strict=True)
    )


def test_crop_adaptation_needs_an_explicit_rng(tiny_model, lr_batch):
    net = load_model(tiny_model).network()
    with pytest.raises(ValueError, match="rng"):
        next(adapt(net, lr_batch, KERNEL, 2, 1, lambda s: 1e-2, patch_size=32))


def test_crop_adaptation_reduces_the_whole_image_loss(tiny_model, lr_batch):
    son_up = make_son(lr_batch, KERNEL, 2, "direct")

    def whole_loss(net):
        with torch.no_grad():
            return float((net(son_up) - lr_batch).abs().mean())

    before = whole_loss(load_model(tiny_model).network())
    net, _ = _adapted(tiny_model, lr_batch, 15, seed=0)
    assert whole_loss(net) < 0.8 * before


def _final_weights(run):
    try:
        while True:
            next(run)
    except StopIteration as done:
        return [p.detach().clone() for p in done.value.net.parameters()]


def test_api_crops_are_meta_test_crops(tiny_model):
    """iter_adapt reads the patches from the image itself; the same as cropping the
    whole image tensor with an rng seeded by ``seed``."""
    image = _smooth((96, 84))
    api = _final_weights(
        iter_adapt(image, 2, KERNEL.numpy(), 3, tiny_model, "cpu", seed=4, precision="float32",
                   adapt_patch=32, adapt_patches=4)
    )  # fmt: skip
    net = load_model(tiny_model).network()
    x = torch.from_numpy(image.transpose(2, 0, 1)[None].copy())
    schedule = load_model(tiny_model).info.lr_at
    rng = np.random.default_rng(4)
    for _ in adapt(net, x, KERNEL, 2, 3, schedule, patch_size=32, patches=4, rng=rng):
        pass
    for p, q in zip(api, net.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)


def _same(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


def test_auto_adapts_small_images_whole_and_large_ones_on_patches(tiny_gray_model, monkeypatch):
    monkeypatch.setattr(api, "AUTO_WHOLE_IMAGE_PIXELS", 48 * 48)
    monkeypatch.setattr(api, "AUTO_PATCH", 32)
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
    run = iter_adapt(
        _smooth((40, 40)), 2, gaussian_kernel(1.0, size=9), 1, tiny_model, "cpu",
        adapt_patch=patch, adapt_patches=patches,
    )  # fmt: skip
    with pytest.raises(ValueError, match=match):
        next(run)
