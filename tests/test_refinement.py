"""Self-ensemble and back-projection (module and API options), and kernel="estimate"
through the API, the stack runner and the command line."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from compare import assert_same_rounded

from napari_mzsr import degrade, gaussian_kernel, imresize, super_resolve
from napari_mzsr.cli.arguments import parse_kernel
from napari_mzsr.cli.main import build_parser, main
from napari_mzsr.core.degradation import degrade_tensor
from napari_mzsr.core.kernel_estimation import KernelEstimate
from napari_mzsr.core.refinement import (
    TRANSFORMS,
    back_project,
    dihedral,
    kernel_symmetries,
    self_ensemble,
    undo_dihedral,
)
from napari_mzsr.core.resize import imresize_tensor
from napari_mzsr.pipeline.run import drive, iter_adapt
from napari_mzsr.pipeline.stacks import iter_super_resolve_stack


def _texture(shape=(40, 40, 3), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.random((shape[0] // 4, shape[1] // 4, *shape[2:]))
    return np.clip(imresize(small, 4) * 255, 0, 255).astype(np.uint8)


def _direct_linear(x: torch.Tensor, scale: int = 2) -> torch.Tensor:
    """A stand-in network with the ``direct`` geometry: HR pixel j reads LR position
    j / scale (linear interpolation, the last LR pixel repeated)."""
    h, w = x.shape[-2:]
    pad = F.pad(x, (0, 1, 0, 1), mode="replicate")
    up = F.interpolate(pad, size=(h * scale + 1, w * scale + 1), mode="bilinear",
                       align_corners=True)  # fmt: skip
    return up[..., : h * scale, : w * scale]


def test_dihedral_transforms_are_distinct_and_undone():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    seen = set()
    for index in TRANSFORMS:
        moved = dihedral(x, index)
        seen.add(tuple(moved.flatten().tolist()) + tuple(moved.shape))
        torch.testing.assert_close(undo_dihedral(moved, index), x)
    assert len(seen) == 8


def test_kernel_symmetries():
    assert kernel_symmetries(gaussian_kernel(2.0)) == TRANSFORMS
    assert kernel_symmetries(gaussian_kernel(4.0, 1.0, 0.0)) == (0, 2, 4, 6)
    assert kernel_symmetries(gaussian_kernel(4.0, 1.0, -0.5)) == (0, 2)


@pytest.mark.parametrize("shape", [(1, 3, 10, 14), (2, 1, 9, 9)])
def test_ensemble_of_an_equivariant_upscaler_changes_nothing(shape):
    """The grid shift of mirrored inputs under direct subsampling is undone exactly: an
    upscaler with the direct geometry gives the same image through every transform
    (but at the last row and column, where the shifted result repeats its edge)."""
    x = torch.rand(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    plain = _direct_linear(x)
    for combine in ("mean", "median"):
        out = self_ensemble(_direct_linear, x, 2, "direct", TRANSFORMS, combine)
        assert out.shape == plain.shape
        torch.testing.assert_close(out[..., :-1, :-1], plain[..., :-1, :-1])
    # Without the shift a mirrored transform is one HR pixel off.
    mirrored = undo_dihedral(_direct_linear(dihedral(x, 4)), 4)
    assert (mirrored - plain)[..., :-1, :-1].abs().max() > 0.01
    # The centred (bicubic) geometry needs no shift: MATLAB's resize is mirror-symmetric.
    up = imresize_tensor(x, 2)
    centred = self_ensemble(lambda t: imresize_tensor(t, 2), x, 2, "bicubic", TRANSFORMS)
    torch.testing.assert_close(centred, up)


def test_ensemble_checks_its_options():
    x = torch.rand(1, 1, 8, 8)
    with pytest.raises(ValueError, match="combine"):
        self_ensemble(_direct_linear, x, 2, combine="max")
    with pytest.raises(ValueError, match="transforms"):
        self_ensemble(_direct_linear, x, 2, transforms=(0, 8))


def test_back_projection_makes_the_result_consistent_with_the_input():
    rng = np.random.default_rng(0)
    hr = torch.from_numpy(imresize(rng.random((12, 12)), 4))[None, None]
    kernel = torch.from_numpy(gaussian_kernel(2.0))
    lr = degrade_tensor(hr, kernel, 2)
    sr = imresize_tensor(lr, 2)
    before = sr.clone()

    def misfit(img: torch.Tensor) -> float:
        return float((degrade_tensor(img, kernel, 2) - lr).abs().mean())

    errors = [misfit(back_project(sr, lr, kernel, 2, iterations=n)) for n in (0, 1, 5)]
    assert errors[2] < errors[1] < errors[0]
    assert float((back_project(sr, lr, kernel, 2, iterations=5) - hr).abs().mean()) < float(
        (sr - hr).abs().mean()
    )
    torch.testing.assert_close(sr, before)
    with pytest.raises(ValueError, match="iterations"):
        back_project(sr, lr, kernel, 2, iterations=-1)


@pytest.mark.parametrize("shape", [(40, 40, 3), (36, 44)])
def test_api_options_change_the_result_and_keep_its_shape(tiny_model, shape):
    image = _texture(shape)
    copy = image.copy()
    run = {"scale": 2, "steps": 1, "model": tiny_model, "device": "cpu", "kernel": (4, 1, 0.3)}
    plain = super_resolve(image, **run)
    for options in (
        {"ensemble": "mean"},
        {"ensemble": "median"},
        {"back_projection": 2},
        {"ensemble": "mean", "back_projection": 2},
    ):
        out = super_resolve(image, **run, **options)
        assert out.shape == plain.shape and out.dtype == plain.dtype
        assert np.abs(out.astype(int) - plain).max() > 0, options
    np.testing.assert_array_equal(image, copy)


def test_back_projection_runs_on_the_whole_image_across_tiles(tiny_model):
    image = _texture((48, 48, 3))
    run = {"scale": 2, "steps": 1, "model": tiny_model, "device": "cpu", "back_projection": 3}
    # Tiles of another size sum their convolutions in another order: equal up to rounding.
    assert_same_rounded(super_resolve(image, **run, tile=16), super_resolve(image, **run, tile=64))


def test_api_refuses_bad_options(tiny_model):
    image = _texture()
    adapted = drive(
        iter_adapt(image, scale=2, kernel=2.0, steps=1, model=tiny_model, device="cpu"), None, None
    )
    with pytest.raises(ValueError, match="ensemble"):
        adapted.apply(image, ensemble="max")
    with pytest.raises(ValueError, match="back_projection"):
        adapted.apply(image, back_projection=-1)
    with pytest.raises(ValueError, match="whole image"):
        adapted.apply(image, back_projection=1, region=(slice(0, 8), slice(0, 8)))


def test_estimate_through_the_api(tiny_model):
    hr = _texture((96, 96, 3), seed=2).astype(np.float64) / 255
    lr = np.rint(np.clip(degrade(hr, gaussian_kernel(2.0), 2), 0, 1) * 255).astype(np.uint8)
    adapted = drive(
        iter_adapt(lr, scale=2, kernel="estimate", steps=1, model=tiny_model, device="cpu"),
        None,
        None,
    )
    assert isinstance(adapted.kernel_estimate, KernelEstimate)
    np.testing.assert_array_equal(adapted.kernel, adapted.kernel_estimate.kernel)
    out = super_resolve(lr, scale=2, kernel="estimate", steps=1, model=tiny_model, device="cpu")
    same = super_resolve(
        lr, scale=2, kernel=adapted.kernel, steps=1, model=tiny_model, device="cpu"
    )
    np.testing.assert_array_equal(out, same)


def test_estimate_through_the_stack_runner(tiny_gray_model):
    stack = np.stack([_texture((40, 40), seed=s) for s in range(2)])
    run = iter_super_resolve_stack(stack, scale=2, kernel="estimate", steps=1,
                                   model=tiny_gray_model, device="cpu",
                                   mode="per_slice", ensemble="mean")  # fmt: skip
    result = _drive_stack(run)
    assert result.shape == (2, 80, 80)


def _drive_stack(run):
    try:
        while True:
            next(run)
    except StopIteration as done:
        return done.value


def test_command_line_accepts_estimate_and_refinements(tmp_path, tiny_model):
    assert parse_kernel("estimate") == "estimate"
    args = build_parser().parse_args(
        ["run", "in.png", "-o", "out", "--kernel", "estimate", "--ensemble", "median",
         "--back-projection", "3"]
    )  # fmt: skip
    assert (args.kernel, args.ensemble, args.back_projection) == ("estimate", "median", 3)
    from PIL import Image

    Image.fromarray(_texture((40, 40, 3))).save(tmp_path / "img.png")
    code = main(
        ["run", str(tmp_path / "img.png"), "-o", str(tmp_path / "out"), "--model",
         str(tiny_model), "--steps", "1", "--device", "cpu", "--kernel", "estimate",
         "--ensemble", "mean", "--back-projection", "2"]
    )  # fmt: skip
    assert code == 0
    assert np.asarray(Image.open(tmp_path / "out" / "img_x2_mzsr.png")).shape == (80, 80, 3)
