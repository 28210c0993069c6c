"""Self-ensemble and back-projection (module and API options), and kernel="estimate"
through the API, the stack runner and the command line."""

import dataclasses
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from compare import assert_same_rounded
from PIL import Image
from tiny_models import save_tiny_model

from napari_mzsr import degrade, gaussian_kernel, imresize, super_resolve
from napari_mzsr.cli.arguments import parse_kernel
from napari_mzsr.cli.main import build_parser, main
from napari_mzsr.core.degradation import degrade_tensor
from napari_mzsr.core.kernel_estimation import KernelEstimate
from napari_mzsr.core.refinement import (
    PHOTO_DEGRADATION,
    TRANSFORMS,
    back_project,
    dihedral,
    kernel_symmetries,
    self_ensemble,
    undo_dihedral,
)
from napari_mzsr.core.resize import imresize_tensor
from napari_mzsr.pipeline.adapted import PHOTO_BACK_PROJECTION
from napari_mzsr.pipeline.run import drive, iter_adapt
from napari_mzsr.pipeline.stacks import iter_super_resolve_stack


def _texture(shape=(40, 40, 3), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.random((shape[0] // 4, shape[1] // 4, *shape[2:]))
    return np.clip(imresize(small, 4) * 255, 0, 255).astype(np.uint8)


def _wavy(side: int = 96) -> np.ndarray:
    """Waves and noise (uint8 RGB): detail that JPEG quantises recognisably."""
    y, x = np.mgrid[:side, :side]
    noise = np.random.default_rng(0).normal(0, 10, x.shape)
    wavy = 128 + 60 * np.sin(x / 3) * np.cos(y / 5) + noise
    return np.clip(np.stack([wavy, wavy[::-1], wavy.T], axis=-1), 0, 255).astype(np.uint8)


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


def test_back_projection_against_a_blend_of_subsamplings():
    """An image downscaled by an unknown tool is back-projected against area averaging
    and bicubic downscaling half and half: the result fits the blend, not either one."""
    rng = np.random.default_rng(0)
    hr = torch.from_numpy(imresize(rng.random((12, 12)), 4))[None, None]
    kernel = torch.ones(1, 1, dtype=hr.dtype)
    area, cubic = (degrade_tensor(hr, kernel, 2, m) for m in ("area", "bicubic"))
    lr = (area + cubic) / 2
    sr = imresize_tensor(lr, 2)

    def misfit(img: torch.Tensor) -> float:
        blend = sum(degrade_tensor(img, kernel, 2, m) for m in ("area", "bicubic")) / 2
        return float((blend - lr).abs().mean())

    blended = back_project(sr, lr, kernel, 2, PHOTO_DEGRADATION, iterations=10)
    assert misfit(blended) < misfit(sr) / 5
    for alone in ("area", "bicubic"):
        assert misfit(blended) < misfit(back_project(sr, lr, kernel, 2, alone, 10)) / 2
    # Weights are normalised.
    doubled = back_project(sr, lr, kernel, 2, {"area": 1, "bicubic": 1}, iterations=10)
    torch.testing.assert_close(doubled, blended)
    for bad in ({"direct": 0.5, "area": 0.5}, {}, {"area": -1.0, "bicubic": 2.0}, {"box": 1}):
        with pytest.raises(ValueError, match="blend"):
            back_project(sr, lr, kernel, 2, bad, iterations=1)


@pytest.mark.self_check  # the defaults' JPEG recognition, live
def test_the_photo_assumption_back_projects_by_default(tmp_path):
    """With the default kernel (the photo assumption) inference back-projects once
    against the blend; with a kernel given, or 0 asked, it does not."""
    model = save_tiny_model(tmp_path / "cubic.pt", "tiny-cubic", features=16,
                            degradation="bicubic")  # fmt: skip
    image = _texture((40, 40, 3))
    run = {"scale": 2, "steps": 1, "model": model, "device": "cpu", "self_check": False}
    adapted = drive(iter_adapt(image, **run))
    assert adapted.photo_assumption
    assert adapted.back_projection_for(None) == PHOTO_BACK_PROJECTION == 1
    assert adapted.back_projection_for(None, region=(slice(0, 8), slice(0, 8))) == 0
    default = super_resolve(image, **run)
    assert_same_rounded(default, super_resolve(image, **run, back_projection=1))
    assert_same_rounded(default, super_resolve(image, **run, back_projection="auto"))
    assert np.abs(default.astype(int) - super_resolve(image, **run, back_projection=0)).max() > 2

    # The correction fits the blend: its misfit to the input is smallest there.
    lr = torch.from_numpy(image / 255.0).permute(2, 0, 1)[None]
    kernel = torch.ones(1, 1, dtype=lr.dtype)
    out = adapted.apply(image, back_projection=30, output_dtype=np.float64)
    sr = torch.from_numpy(out / 255.0).permute(2, 0, 1)[None]

    def misfit(weights: dict[str, float]) -> float:
        degraded = sum(w * degrade_tensor(sr, kernel, 2, m) for m, w in weights.items())
        return float((degraded - lr).abs().mean())

    assert misfit(PHOTO_DEGRADATION) < 0.5 * min(misfit({"area": 1}), misfit({"bicubic": 1}))
    assert adapted.back_projection_used == 30

    # Nor a camera profile's result: its downscale was learnt from the camera's pairs.
    profile = drive(iter_adapt(image, **run))
    profile.info = dataclasses.replace(profile.info, training={"stage": "calibration"})
    assert profile.calibrated and profile.back_projection_for(None) == 0

    # A JPEG image is not back-projected by default (its blocks would come back).
    buffer = io.BytesIO()
    Image.fromarray(_wavy()).save(buffer, format="JPEG", quality=50)
    compressed = drive(iter_adapt(np.asarray(Image.open(buffer)), **run))
    assert abs(compressed.jpeg_quality - 50) <= 3 and compressed.back_projection_for(None) == 0

    given = {**run, "kernel": 0.5}
    assert not drive(iter_adapt(image, **given)).photo_assumption
    unrefined = super_resolve(image, **given, back_projection=0)
    assert_same_rounded(super_resolve(image, **given), unrefined)


@pytest.mark.self_check  # the defaults' JPEG recognition, live
def test_gradual_steps_follow_the_first_steps_back_projection(tmp_path):
    """In gradual steps (x4 with a x2 model) the later steps see float results, not the
    user's JPEG: the first step's choice holds for all of them."""
    model = save_tiny_model(tmp_path / "cubic.pt", "tiny-cubic", degradation="bicubic")
    run = {"scale": 4, "steps": 1, "model": model, "device": "cpu", "self_check": False}
    photo = _texture((32, 32, 3))
    assert_same_rounded(super_resolve(photo, **run), super_resolve(photo, **run, back_projection=1))
    buffer = io.BytesIO()
    Image.fromarray(_wavy()).save(buffer, format="JPEG", quality=50)
    compressed = np.asarray(Image.open(buffer))
    assert_same_rounded(
        super_resolve(compressed, **run), super_resolve(compressed, **run, back_projection=0)
    )


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
    with pytest.raises(ValueError, match=r"back_projection must be None or 'auto'.* >= 0"):
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
    for given, expected in ((["--back-projection", "auto"], None), ([], None)):
        args = build_parser().parse_args(["run", "in.png", "-o", "out", *given])
        assert args.back_projection is expected

    Image.fromarray(_texture((40, 40, 3))).save(tmp_path / "img.png")
    code = main(
        ["run", str(tmp_path / "img.png"), "-o", str(tmp_path / "out"), "--model",
         str(tiny_model), "--steps", "1", "--device", "cpu", "--kernel", "estimate",
         "--ensemble", "mean", "--back-projection", "2"]
    )  # fmt: skip
    assert code == 0
    assert np.asarray(Image.open(tmp_path / "out" / "img_x2_mzsr.png")).shape == (80, 80, 3)


def test_command_line_says_when_it_back_projected(tmp_path, capsys):
    """The defaults' back-projection is named in the file's summary line, and gone with
    --back-projection 0."""
    model = save_tiny_model(tmp_path / "cubic.pt", "tiny-cubic", degradation="bicubic")
    Image.fromarray(_texture((40, 40, 3))).save(tmp_path / "img.png")
    run = ["run", str(tmp_path / "img.png"), "--model", str(model), "--steps", "1",
           "--device", "cpu"]  # fmt: skip
    assert main([*run, "-o", str(tmp_path / "a")]) == 0
    assert "back-projected 1 time;" in capsys.readouterr().err
    assert main([*run, "-o", str(tmp_path / "b"), "--back-projection", "0"]) == 0
    assert "back-projected" not in capsys.readouterr().err
