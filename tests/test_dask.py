"""Dask arrays: lazy block-wise super-resolution equals the in-memory path."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_models import save_tiny_model

from napari_mzsr import gaussian_kernel, imresize, super_resolve
from napari_mzsr.pipeline import lazy as dask_arrays

da = pytest.importorskip("dask.array")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def range_model(tmp_path_factory):
    """A tiny 1-channel theta_M for any scale from 2 to 3."""
    path = tmp_path_factory.mktemp("models") / "range.pt"
    return save_tiny_model(
        path, "tiny-range", channels=1, features=16, scales=(2.0, 3.0), lr_schedule=[[0, 2e-2]]
    )


def _smooth(shape, seed=0) -> np.ndarray:
    coarse = np.random.default_rng(seed).random((shape[0] // 6, shape[1] // 6, *shape[2:]))
    return np.clip(imresize(coarse, output_shape=shape[:2]), 0, 1).astype(np.float32)


def _options(model, scale, **extra):
    options = dict(scale=scale, kernel=1.0, steps=2, model=model, device="cpu")
    options.update(precision="float32", adapt_patch=40, adapt_patches=3)
    return {**options, **extra}


@pytest.mark.parametrize(("scale", "chunks"), [(2, 40), (2.5, (45, 37))])
def test_dask_equals_numpy(range_model, scale, chunks):
    image = _smooth((130, 111))
    options = _options(range_model, scale)
    expected = super_resolve(image, **options)
    lazy = dask_arrays.super_resolve_dask(da.from_array(image, chunks=chunks), **options)
    assert lazy.shape == expected.shape and lazy.numblocks[0] > 1
    np.testing.assert_allclose(lazy.compute(), expected, atol=1e-5)


def test_dask_thin_image_in_one_block_along_an_axis(range_model):
    """An axis shorter than the overlap is one block; chunks too short are merged."""
    image = _smooth((6, 30))
    options = _options(range_model, 2.5, kernel=gaussian_kernel(1.0, size=5))
    lazy = dask_arrays.super_resolve_dask(da.from_array(image, chunks=(3, 7)), **options)
    assert lazy.chunks == ((15,), (20, 20, 35))
    np.testing.assert_allclose(lazy.compute(), super_resolve(image, **options), atol=1e-5)


def test_dask_rgba_uint8(tiny_model):
    image = np.rint(_smooth((70, 62, 4), seed=2) * 255).astype(np.uint8)
    options = _options(tiny_model, 2)
    expected = super_resolve(image, **options)
    lazy = dask_arrays.super_resolve_dask(da.from_array(image, chunks=(30, 25, 2)), **options)
    assert lazy.dtype == np.uint8
    # Float rounding may flip a rounded uint8 value, nothing more.
    np.testing.assert_allclose(lazy.compute(), expected, atol=1)


class _Recording:
    """An array that records the regions read from it."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.reads = data, []
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim

    def __getitem__(self, key):
        self.reads.append(key)
        return self.data[key]


def test_adaptation_reads_only_the_chunks_of_its_patches(range_model):
    source = _Recording(np.rint(_smooth((400, 400)) * 255).astype(np.uint8))
    image = da.from_array(source, chunks=50, asarray=False)
    lazy = dask_arrays.super_resolve_dask(image, **_options(range_model, 2))
    read = {tuple((r.start, r.stop) for r in key) for key in source.reads}
    read = {key for key in read if key[0][1] > key[0][0]}  # dask probes with empty slices
    assert all(stop - start <= 50 for key in read for start, stop in key)
    # 2 steps of 3 patches, 4 chunks at most each, and the self-check's window (the
    # centre 192 px: 4 x 4 chunks).
    assert 0 < len(read) <= 2 * 3 * 4 + 16 < 64
    assert lazy.shape == (800, 800)


def test_block_chunks_are_aligned_and_long_enough():
    assert dask_arrays.block_chunks((40, 40, 30), 1, 7) == (40, 40, 30)
    assert dask_arrays.block_chunks((45, 45, 20), 2, 8) == (46, 46, 18)
    assert dask_arrays.block_chunks((40, 40, 3), 1, 7) == (40, 43)
    assert dask_arrays.block_chunks((5,), 2, 8) == (5,)


def test_local_cluster_gives_the_same_result(range_model):
    distributed = pytest.importorskip("distributed")
    image = _smooth((100, 90))
    options = _options(range_model, 2.5)
    expected = super_resolve(image, **options)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        lazy = dask_arrays.super_resolve_dask(
            da.from_array(image, chunks=40), client=client, **options
        )
        out = client.compute(lazy).result()
        ran_on = client.run(lambda: True)
    assert len(ran_on) == 2
    np.testing.assert_allclose(out, expected, atol=1e-5)
