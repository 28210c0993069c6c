import numpy as np
import pytest
import torch

from napari_mzsr import (
    Cancelled,
    degrade,
    gaussian_kernel,
    imresize,
    iter_adapt,
    load_model,
    psnr,
    super_resolve,
)
from napari_mzsr.core.schedules import rate_at


def test_one_step_matches_algorithm_2_written_out(tiny_model, rgb_image):
    """Son = degrade(LR), upsampled to LR size; one SGD step of L1(f(son_up), LR) at the
    model's first learning rate; output f(imresize(LR, 2)) clipped."""
    model = load_model(tiny_model)
    lr = rgb_image / 255.0
    kernel = gaussian_kernel(1.0, size=9)
    son = np.clip(degrade(lr, kernel, 2), 0, 1)
    son_up = imresize(son, 2, output_shape=lr.shape[:2])

    def chw(a):
        return torch.from_numpy(a.transpose(2, 0, 1)[None]).float()

    net = model.network()
    loss = (net(chw(son_up)) - chw(lr)).abs().mean()
    grads = torch.autograd.grad(loss, list(net.parameters()))
    with torch.no_grad():
        for p, g in zip(net.parameters(), grads, strict=True):
            p -= rate_at(model.info.lr_schedule, 0) * g
        expected = net(chw(imresize(lr, 2))).clamp(0, 1)[0].permute(1, 2, 0).numpy()

    out = super_resolve(
        rgb_image,
        scale=2,
        kernel=kernel,
        steps=1,
        model=tiny_model,
        device="cpu",
        precision="float32",
        output_dtype="float64",
    )
    np.testing.assert_allclose(out, expected * 255, atol=2e-3)


def test_self_supervised_loss_decreases(tiny_model, rgb_image):
    losses = []
    super_resolve(
        rgb_image,
        scale=2,
        kernel=1.0,
        steps=8,
        model=tiny_model,
        device="cpu",
        progress=lambda s, loss: losses.append((s, loss)),
    )
    assert [s for s, _ in losses] == list(range(1, 9))
    assert losses[-1][1] < losses[0][1]


def test_cancel_stops_within_one_step(tiny_model, rgb_image):
    seen = []
    with pytest.raises(Cancelled, match="after 2 of 10"):
        super_resolve(
            rgb_image,
            scale=2,
            kernel=1.0,
            steps=10,
            model=tiny_model,
            device="cpu",
            progress=lambda s, loss: seen.append(s),
            cancel=lambda: len(seen) >= 2,
        )
    assert seen == [1, 2]


def test_generator_close_runs_nothing_more(tiny_model, rgb_image):
    run = iter_adapt(rgb_image, scale=2, kernel=1.0, steps=10, model=tiny_model, device="cpu")
    first = next(run)
    assert first.step == 0 and first.steps == 10 and first.loss > 0
    run.close()
    with pytest.raises(StopIteration):
        next(run)


def test_input_untouched_and_reproducible(tiny_model, rgb_image):
    before = rgb_image.copy()
    rgb_image.setflags(write=False)  # any in-place write would raise
    a = super_resolve(
        rgb_image, scale=2, kernel=1.0, steps=3, model=tiny_model, device="cpu", seed=3
    )
    b = super_resolve(
        rgb_image, scale=2, kernel=1.0, steps=3, model=tiny_model, device="cpu", seed=3
    )
    np.testing.assert_array_equal(rgb_image, before)
    np.testing.assert_array_equal(a, b)


def test_bfloat16_path_is_close_to_float32(tiny_model, rgb_image):
    kw = dict(scale=2, kernel=1.0, steps=3, model=tiny_model, device="cpu")
    fp32 = super_resolve(rgb_image, precision="float32", **kw)
    bf16 = super_resolve(rgb_image, precision="bfloat16", **kw)
    assert psnr(fp32, bf16) > 40


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        ((40, 44), np.uint8),
        ((40, 44), np.uint16),
        ((40, 44, 3), np.float32),
        ((40, 44, 4), np.uint8),
    ],
)
def test_shapes_and_dtypes(tiny_model, tiny_gray_model, shape, dtype):
    rng = np.random.default_rng(0)
    base = imresize(rng.random((10, 11, *shape[2:])), 4)
    if np.issubdtype(dtype, np.integer):
        img = (np.clip(base, 0, 1) * np.iinfo(dtype).max).astype(dtype)
    else:
        img = np.clip(base, 0, 1).astype(dtype)
    for model in (tiny_model, tiny_gray_model):
        out = super_resolve(img, scale=2, kernel=1.0, steps=1, model=model, device="cpu")
        assert out.shape == (80, 88, *shape[2:])
        assert out.dtype == dtype
    if len(shape) == 3 and shape[2] == 4:
        # Alpha is resized bicubically, not passed through the network.
        expected = np.rint(np.clip(imresize(img[..., 3] / 255.0, 2), 0, 1) * 255)
        np.testing.assert_allclose(out[..., 3], expected, atol=1)
    as_float = super_resolve(
        img, scale=2, kernel=1.0, steps=1, model=tiny_model, device="cpu", output_dtype="float32"
    )
    assert as_float.dtype == np.float32


def test_percentile_normalisation_for_dim_uint16(tiny_gray_model):
    rng = np.random.default_rng(0)
    img = (100 + np.clip(imresize(rng.random((12, 12)), 4), 0, 1) * 900).astype(np.uint16)
    out = super_resolve(
        img,
        scale=2,
        kernel=1.0,
        steps=2,
        model=tiny_gray_model,
        device="cpu",
        normalization="percentile",
    )
    assert out.dtype == np.uint16
    assert 50 < out.mean() < 1100 and out.max() < 2000


def test_adapted_model_applies_to_other_slices(tiny_model, rgb_image):
    run = iter_adapt(rgb_image, scale=2, kernel=1.0, steps=2, model=tiny_model, device="cpu")
    reports = []
    try:
        while True:
            reports.append(next(run))
    except StopIteration as done:
        adapted = done.value
    assert len(reports) == 2
    same = adapted.apply(rgb_image)
    np.testing.assert_array_equal(
        same, super_resolve(rgb_image, scale=2, kernel=1.0, steps=2, model=tiny_model, device="cpu")
    )
    assert adapted.apply(rgb_image[::-1]).shape == same.shape


@pytest.mark.parametrize(
    ("image", "kwargs", "error", "message"),
    [
        (np.full((40, 40), np.nan, np.float32), {}, ValueError, "NaN"),
        (np.full((40, 40), np.inf), {}, ValueError, "infinite"),
        (np.zeros((0, 40)), {}, ValueError, "empty"),
        (np.zeros((10, 12)), {"kernel": 2.0}, ValueError, "too small"),
        (np.zeros((40, 40), bool), {}, ValueError, "boolean"),
        (np.zeros((40, 40), complex), {}, ValueError, "complex"),
        (np.zeros((2, 40, 40, 3)), {}, ValueError, "expected a 2D"),
        (np.full((40, 40), 3.0), {"normalization": "dtype"}, ValueError, "outside"),
        (np.zeros((40, 40), np.uint8), {"steps": -1}, ValueError, "steps"),
        (np.zeros((40, 40), np.uint8), {"scale": 3}, ValueError, "supports scale 2"),
        (np.zeros((40, 40), np.uint8), {"kernel": np.ones((4, 4))}, ValueError, "odd"),
        (np.zeros((40, 40), np.uint8), {"device": "cuda:7"}, ValueError, "CUDA"),
        (np.zeros((40, 40), np.uint8), {"normalization": "percentile"}, ValueError, "constant"),
        (np.zeros((40, 40), np.uint8), {"precision": "int8"}, ValueError, "precision"),
        (np.zeros((40, 40), np.uint8), {"model": "nope"}, FileNotFoundError, "no shipped"),
    ],
)
def test_bad_inputs_give_clear_errors(tiny_model, image, kwargs, error, message):
    args = dict(scale=2, kernel=None, steps=1, model=tiny_model, device="cpu")
    args.update(kwargs)
    before = image.copy()
    with pytest.raises(error, match=message):
        super_resolve(image, **args)
    np.testing.assert_array_equal(image, before)
