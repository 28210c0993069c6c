"""Tiled inference (napari_mzsr.core.tiling): exact seams, the margin it needs, out-of-memory
retries, and its use by the public API."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_mzsr import imresize, super_resolve
from napari_mzsr.core.adaptation import infer
from napari_mzsr.core.network import MZSRNet
from napari_mzsr.core.tiling import (
    auto_tile,
    for_each_tile,
    grid_step,
    plan_tiles,
    region_output_shape,
    tile_margin,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def net() -> MZSRNet:
    return MZSRNet(3, features=16, generator=torch.Generator().manual_seed(0)).eval()


@pytest.fixture(scope="module")
def lr_tensor() -> torch.Tensor:
    return torch.rand(1, 3, 53, 67, generator=torch.Generator().manual_seed(1))


def _tiles_with_margin(net, x, scale, margin, tile):
    out = torch.full_like(infer(net, x, scale), float("nan"))

    def process(t):
        sr = infer(net, x[..., t.window[0], t.window[1]], scale)
        out[..., t.target[0], t.target[1]] = sr[..., t.crop[0], t.crop[1]]

    for_each_tile(process, tuple(x.shape[-2:]), scale, margin, tile)
    return out


@pytest.mark.parametrize("scale", [2, 2.5, 4 / 3])
@pytest.mark.parametrize("tile", [16, 30])
def test_tiled_equals_untiled(net, lr_tensor, scale, tile):
    whole = infer(net, lr_tensor, scale)
    tiled = _tiles_with_margin(net, lr_tensor, scale, tile_margin(scale), tile)
    assert len(plan_tiles((53, 67), scale, tile, tile_margin(scale))) > 4
    assert tiled.shape == whole.shape
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)


@pytest.mark.parametrize("scale", [(1.5, 4.0), (4.0, 2.0), (2.5, 4 / 3)])
def test_tiled_equals_untiled_for_factor_pairs(net, lr_tensor, scale):
    """Issue 31, bug 8: a tile margin taken from the larger factor of a pair. The axis
    with the smaller factor needs the wider margin (its output pixels reach further in
    LR pixels): tiles of a pair must join as exactly as those of one factor."""
    whole = infer(net, lr_tensor, scale)
    margin = tile_margin(scale)
    assert len(plan_tiles((53, 67), scale, 16, margin)) > 4
    tiled = _tiles_with_margin(net, lr_tensor, scale, margin, 16)
    assert tiled.shape == whole.shape
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)


@pytest.mark.parametrize("scale", [2, 2.5])
def test_margin_is_needed_and_enough(net, lr_tensor, scale):
    """The smallest margin that reproduces the untiled output is positive and at most
    tile_margin's (which adds one pixel of slack to the analysis)."""
    whole = infer(net, lr_tensor, scale)
    step = grid_step(scale)
    exact = [
        margin
        for margin in range(0, tile_margin(scale) + 1, step)
        if (_tiles_with_margin(net, lr_tensor, scale, margin, 16) - whole).abs().max() < 1e-6
    ]
    assert exact and exact[0] > 0
    assert exact == list(range(exact[0], tile_margin(scale) + 1, step))


def test_tiles_partition_the_output():
    shape, scale = (41, 29), 2.5
    covered = np.zeros(region_output_shape(shape, scale), int)
    for t in plan_tiles(shape, scale, 10, tile_margin(scale)):
        assert t.core[0].start % 2 == 0 and t.window[0].start % 2 == 0
        covered[t.target] += 1
    assert covered.shape == (103, 73) and (covered == 1).all()


def test_untileable_scale_runs_in_one_piece():
    assert grid_step(2**0.5) is None and tile_margin(2**0.5) == 0
    (only,) = plan_tiles((40, 50), 2**0.5, 8, 0)
    assert only.window == (slice(0, 40), slice(0, 50))


def test_misaligned_region_is_refused():
    with pytest.raises(ValueError, match="multiples of 2"):
        plan_tiles((40, 40), 2.5, 16, 8, (slice(3, 20), slice(0, 40)))


def _oom_above(monkeypatch, width: int, seen: list[int]):
    """Make inference (eval mode) of inputs wider than ``width`` raise CUDA's OOM."""
    forward = MZSRNet.forward

    def limited(self, x):
        seen.append(x.shape[-1])
        if not self.training and x.shape[-1] > width:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(self, x)

    monkeypatch.setattr(MZSRNet, "forward", limited)


def test_out_of_memory_halves_the_tile(net, lr_tensor, monkeypatch):
    whole = infer(net, lr_tensor, 2)
    seen: list[int] = []
    _oom_above(monkeypatch, 80, seen)
    shape = tuple(lr_tensor.shape[-2:])
    out = torch.empty_like(whole)

    def process(t):
        sr = infer(net, lr_tensor[..., t.window[0], t.window[1]], 2)
        out[..., t.target[0], t.target[1]] = sr[..., t.crop[0], t.crop[1]]

    final = for_each_tile(process, shape, 2, tile_margin(2), 64)
    assert final < 64 and max(seen) > 80
    torch.testing.assert_close(out, whole, atol=1e-5, rtol=0)


def test_out_of_memory_on_the_smallest_tile_is_raised(net, lr_tensor, monkeypatch):
    _oom_above(monkeypatch, 1, [])
    with pytest.raises(torch.cuda.OutOfMemoryError):
        _tiles_with_margin(net, lr_tensor, 2, tile_margin(2), 64)


def _smooth_gray(shape, seed=0) -> np.ndarray:
    base = np.random.default_rng(seed).random((shape[0] // 6, shape[1] // 6))
    return np.clip(imresize(base, output_shape=shape), 0, 1).astype(np.float32)


def test_api_retries_out_of_memory_and_matches(tiny_gray_model, monkeypatch):
    image = _smooth_gray((96, 90))
    kw = dict(scale=2, kernel=1.0, steps=1, model=tiny_gray_model, device="cpu")
    expected = super_resolve(image, precision="float32", **kw)
    seen: list[int] = []
    _oom_above(monkeypatch, 100, seen)
    out = super_resolve(image, precision="float32", tile=128, **kw)
    assert max(seen) > 100  # the first try was the whole image
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_api_default_tile_follows_free_memory(tiny_gray_model, monkeypatch):
    """With little memory free, super_resolve splits even a small image."""
    import napari_mzsr.core.tiling as tiling

    image = _smooth_gray((96, 90))
    # The self-check's forward pass over its window is not inference: left out here.
    kw = dict(scale=2, kernel=1.0, steps=0, model=tiny_gray_model, device="cpu", self_check=False)
    expected = super_resolve(image, precision="float32", **kw)
    budget = 4 * 50**2 * tiling.bytes_per_output_pixel(16, 1)  # room for 50x50 outputs
    monkeypatch.setattr(tiling, "available_memory", lambda device: budget)
    assert auto_tile(torch.device("cpu"), 2, 16, 1, tile_margin(2)) == 16
    seen: list[int] = []
    _oom_above(monkeypatch, 10**6, seen)
    out = super_resolve(image, precision="float32", **kw)
    assert max(seen) <= 2 * (16 + 2 * tile_margin(2))
    np.testing.assert_allclose(out, expected, atol=1e-5)
