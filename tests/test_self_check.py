"""The defaults for an image of unknown origin: noise estimated and matched in the son, the
result self-checked against bicubic, and the fallback where the network loses."""

import math

import numpy as np
import pytest
import torch
from compare import assert_same_rounded

from napari_mzsr import imresize, super_resolve
from napari_mzsr.core.adaptation import make_son
from napari_mzsr.core.noise import NoiseModel, estimate_noise
from napari_mzsr.core.self_check import SelfCheck, choose_output, son_gain
from napari_mzsr.io.model_file import load_model, save_model
from napari_mzsr.pipeline.options import AdaptOptions
from napari_mzsr.pipeline.run import drive, iter_adapt

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.self_check]


def _texture(shape=(64, 64, 3), seed=0) -> np.ndarray:
    """A smooth random texture (uint8) with structure at every scale."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    field = sum(
        ndimage.zoom(rng.random((shape[0] // f + 1, shape[1] // f + 1, *shape[2:])),
                     (f, f) + (1,) * (len(shape) - 2), order=3)[: shape[0], : shape[1]]
        for f in (2, 4, 8)
    )  # fmt: skip
    field = (field - field.min()) / np.ptp(field)
    return np.rint(field * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def harmful_model(tmp_path_factory, tiny_model):
    """The tiny model with its last layer scaled up: it adds strong noise to any image,
    the kind of network that must lose to bicubic on its son."""
    model = load_model(tiny_model)
    net = model.network()
    with torch.no_grad():
        net.body[-1].weight.mul_(50)
    return save_model(tmp_path_factory.mktemp("bad") / "harmful.pt", net, model.info)


def test_noise_model_recovers_poisson_gaussian_noise():
    """A sensor's noise grows with the signal: the estimate must find both parts, or a
    bright nucleus gets the background's (too small) noise in the son and its noise is
    sharpened (the fluorescence defect of the real-images issue)."""
    rng = np.random.default_rng(1)
    ramp = np.tile(np.linspace(0.05, 0.95, 300), (300, 1))
    noisy = ramp + rng.normal(0, 1, ramp.shape) * np.sqrt(0.002 * ramp + 4e-5)
    model = estimate_noise(noisy)
    assert model.gain == pytest.approx(0.002, rel=0.15)
    for level in (0.1, 0.5, 0.9):
        assert model.variance(level) == pytest.approx(0.002 * level + 4e-5, rel=0.2)
    # A clean smooth image reads as (nearly) noiseless; a flat one as exactly that.
    assert estimate_noise(ramp).typical_std(ramp) < 1e-6
    assert estimate_noise(np.full((32, 32), 0.3)) == NoiseModel(0.0, 0.0)
    rgb = np.stack([noisy, noisy[::-1], noisy[:, ::-1]], axis=-1)
    assert estimate_noise(rgb).gain == pytest.approx(0.002, rel=0.15)
    with pytest.raises(ValueError, match="at least 4 x 4"):
        estimate_noise(np.zeros((3, 10)))


def test_noise_model_difference_keeps_a_signed_floor():
    """The Poisson part added is never negative; the floor keeps its sign (a camera's
    dark offset) and the variance it gives is never below 0."""
    image, son = NoiseModel(0.01, 1e-4), NoiseModel(0.004, 2e-4)
    added = image.less(son)
    assert added.gain == pytest.approx(0.006) and added.floor == pytest.approx(-1e-4)
    assert NoiseModel(0.001, 0.0).less(son).gain == 0.0
    assert added.variance(0.0) == 0.0 and added.variance(0.5) == pytest.approx(0.0029)
    assert image.variance(-1.0) == 0.0


def test_son_noise_follows_the_model():
    """The son's added noise has the model's standard deviation at each intensity."""
    image = torch.cat([torch.full((1, 1, 64, 64), 0.2), torch.full((1, 1, 64, 64), 0.8)], -1)
    generator = torch.Generator().manual_seed(0)
    noise = NoiseModel(0.01, 0.0)
    son = make_son(image, torch.ones(1, 1), 2, "direct", noise=noise, generator=generator)
    clean = make_son(image, torch.ones(1, 1), 2, "direct")
    diff = (son - clean)[0, 0]
    # Away from the step between the halves, where upsampling mixes the two levels.
    low, high = diff[4:-4, 4:56].std().item(), diff[4:-4, 72:-4].std().item()
    # Bicubic upsampling of white noise keeps about 0.6-0.8 of its std.
    assert 0.4 < low / np.sqrt(0.01 * 0.2) < 1.0
    assert high / low == pytest.approx(2.0, rel=0.15)  # sqrt(0.8 / 0.2)


def test_son_gain_is_zero_for_bicubic_and_negative_for_a_bad_network():
    image = torch.from_numpy(_texture((48, 48)).astype(np.float32) / 255)[None, None]
    kernel = torch.ones(1, 1)

    class Identity(torch.nn.Module):
        def __init__(self, shift=0.0):
            super().__init__()
            self.shift = torch.nn.Parameter(torch.tensor(shift))

        def forward(self, x):
            return x + self.shift

    assert son_gain(Identity(), image, kernel, 2, "bicubic") == pytest.approx(0.0, abs=1e-9)
    assert son_gain(Identity(0.05), image, kernel, 2, "bicubic") < -1.0


@pytest.mark.parametrize(
    ("before", "after", "choice"),
    [(0.5, 1.2, "adapted"), (0.8, 0.5, "unadapted"), (-2.0, 0.05, "lanczos"),
     (0.05, 0.09, "lanczos"), (-1.0, 0.1, "adapted")],
)  # fmt: skip
def test_choice_from_predicted_gains(before, after, choice):
    check = choose_output(before, after, threshold=0.1)
    assert check.choice == choice
    assert check.predicted_gain == {"adapted": after, "unadapted": before, "lanczos": 0.0}[choice]
    assert "self-check" in check.describe()


def test_defaults_assume_a_photo_and_keep_the_microscope_preset():
    """A user who says nothing gets the photo assumption (no blur, bicubic subsampling,
    the bicubic model); the former default stays one word away."""
    default = AdaptOptions(scale=2).for_image(rgb=True)
    assert default.kernel.shape == (1, 1) and default.kernel_spec == "auto"
    assert default.model.info.degradation == "bicubic"
    assert default.noise == "auto" and default.self_check is True
    micro = AdaptOptions(scale=2, kernel="microscope").for_image(rgb=True)
    assert micro.kernel.shape == (21, 21) and micro.model.info.degradation == "direct"
    with pytest.raises(ValueError, match="noise must be one of"):
        AdaptOptions(noise="loud")
    with pytest.raises(ValueError, match="self_check must be True or False"):
        AdaptOptions(self_check="yes")


def _lanczos(image: np.ndarray, scale: float = 2) -> np.ndarray:
    """Lanczos-3 interpolation of an 8-bit image, the self-check's fallback."""
    unit = imresize(image / 255.0, scale, kernel="lanczos3")
    return np.rint(np.clip(unit, 0, 1) * 255).astype(np.uint8)


def test_a_network_that_loses_falls_back_to_interpolation(harmful_model):
    """Where the network does worse than bicubic on the image's own son, the result is
    Lanczos interpolation (tiled with exact seams), and the run says so."""
    image = _texture()
    adapted = drive(iter_adapt(image, scale=2, steps=1, model=harmful_model, device="cpu"))
    check = adapted.self_check
    assert check.choice == "lanczos" and check.gain_adapted < check.threshold
    assert "fell back to Lanczos interpolation" in check.describe()
    out = super_resolve(image, scale=2, steps=1, model=harmful_model, device="cpu")
    lanczos = _lanczos(image)
    assert_same_rounded(out, lanczos)
    assert_same_rounded(adapted.apply(image, tile=24), lanczos)
    bicubic = np.rint(np.clip(imresize(image / 255.0, 2), 0, 1) * 255).astype(np.uint8)
    assert np.abs(out.astype(int) - bicubic).max() > 2
    # Refinements are not applied to interpolation either.
    refined = super_resolve(image, scale=2, steps=1, model=harmful_model, device="cpu",
                            ensemble="mean", back_projection=2)  # fmt: skip
    assert_same_rounded(refined, lanczos)
    # With the check off the network's own (bad) result comes back.
    raw = super_resolve(image, scale=2, steps=1, model=harmful_model, device="cpu",
                        self_check=False)  # fmt: skip
    assert np.abs(raw.astype(int) - lanczos).mean() > 5


def test_the_fallback_reaches_stacks(harmful_model):
    """Every adaptation of a stack is checked, and the stack's summary says how many
    fell back (the widget's status line and the command line's report)."""
    from napari_mzsr.pipeline.options import ApplyOptions
    from napari_mzsr.pipeline.stacks import run_stack, stack_data

    stack = np.stack([_texture(seed=s) for s in range(2)])
    options = AdaptOptions(scale=2, steps=1, model=harmful_model, device="cpu")
    data, options = stack_data(stack, options, rgb=True)
    result = drive(run_stack(data, options, ApplyOptions(), mode="per_slice"))
    assert [c.choice for c in result.self_checks] == ["lanczos", "lanczos"]
    assert "2 of 2 adaptations fell back" in result.describe_checks()
    assert_same_rounded(result.data[1], _lanczos(stack[1]))


def test_unadapted_choice_gives_theta_m_back(tiny_model, monkeypatch):
    """Where the steps lowered the prediction, the result is theta_M's, unadapted (the
    adapted weights restored to the start), and no step is counted as kept."""
    from napari_mzsr.core import self_check
    from napari_mzsr.pipeline import run

    def steps_hurt(before, after, *, threshold, noise=0.0, jpeg_quality=None):
        return self_check.SelfCheck(before, after, "unadapted", threshold, noise, jpeg_quality)

    monkeypatch.setattr(run, "choose_output", steps_hurt)
    monkeypatch.setattr(run, "coarser_check", lambda check, gain, *, threshold: check)
    image = _texture()
    adapted = drive(iter_adapt(image, scale=2, steps=3, model=tiny_model, device="cpu", lr=0.5))
    assert adapted.self_check.choice == "unadapted" and adapted.steps_taken == 0
    fresh = drive(iter_adapt(image, scale=2, steps=0, model=tiny_model, device="cpu"))
    np.testing.assert_array_equal(adapted.apply(image), fresh.apply(image))


def test_cli_reports_the_self_check(tmp_path, tiny_model, capsys):
    import tifffile

    from napari_mzsr.cli.main import main

    tifffile.imwrite(tmp_path / "in.tif", _texture((48, 48)))
    command = ["run", str(tmp_path / "in.tif"), "-o", str(tmp_path / "out"), "--steps", "1",
               "--model", str(tiny_model), "--device", "cpu"]  # fmt: skip
    assert main(command) == 0
    assert "in.tif: self-check:" in capsys.readouterr().err
    assert main([*command, "--no-self-check", "--noise", "off", "--overwrite"]) == 0
    assert "in.tif: self-check off" in capsys.readouterr().err


def _jpeg_texture(quality: int | None) -> np.ndarray:
    from napari_mzsr.core.jpeg import jpeg

    rng = np.random.default_rng(0)
    y, x = np.mgrid[:96, :96]
    texture = 128 + 60 * np.sin(x / 3) * np.cos(y / 5) + rng.normal(0, 10, x.shape)
    rgb = np.clip(np.stack([texture, texture[::-1], texture.T], axis=-1), 0, 255)
    rgb = rgb.astype(np.uint8)
    return rgb if quality is None else jpeg(rgb, quality)


def test_jpeg_is_recognised_and_reproduced_in_the_son(tiny_model):
    """A JPEG photo's son is saved at the photo's own quality (its blocks are not
    sharpened, and its self-check needs a clear gain); a clean one's is not, nor is
    data whose 8-bit levels are not the image's own (another intensity mapping)."""
    from napari_mzsr.core.jpeg import jpeg, jpeg_quality_of, jpeg_tensor
    from napari_mzsr.pipeline.auto import JPEG_CHECK_THRESHOLD

    for quality in (50, 75, 90):
        assert abs(jpeg_quality_of(_jpeg_texture(quality)) - quality) <= 3
    assert jpeg_quality_of(_jpeg_texture(None)) is None
    clean = _jpeg_texture(None)
    batch = torch.from_numpy(clean.transpose(2, 0, 1)[None].astype(np.float32) / 255)
    np.testing.assert_array_equal(
        np.rint(jpeg_tensor(batch, 60)[0].numpy().transpose(1, 2, 0) * 255), jpeg(clean, 60)
    )
    run = dict(scale=2, steps=1, model=tiny_model, device="cpu")
    saved = drive(iter_adapt(_jpeg_texture(75), **run)).self_check
    assert abs(saved.jpeg_quality - 75) <= 3 and saved.threshold == JPEG_CHECK_THRESHOLD
    assert drive(iter_adapt(clean, **run)).self_check.jpeg_quality is None
    stretched = drive(iter_adapt(_jpeg_texture(75), normalization="percentile", **run))
    assert stretched.self_check.jpeg_quality is None
    assert drive(iter_adapt(_jpeg_texture(75), noise="off", **run)).self_check.jpeg_quality is None


def test_the_fallback_reaches_dask_blocks(harmful_model):
    """A lazy result is made block by block on workers: they fall back too where the
    adaptation's self-check did, with the same seams as a whole image."""
    import dask.array as da

    from napari_mzsr import super_resolve_dask

    image = _texture((64, 64, 3))
    lazy = super_resolve_dask(da.from_array(image, chunks=32), scale=2, steps=1,
                              model=harmful_model, device="cpu")  # fmt: skip
    assert_same_rounded(lazy.compute(), _lanczos(image))


def test_tiny_images_are_not_checked_and_metadata_stays_finite(tiny_model):
    """An image too small for a son pair is given the network's result, unchecked; a
    check's infinite gain (an exact son pair) is written as None, never as NaN/inf."""
    tiny = _texture((12, 12, 3))
    adapted = drive(iter_adapt(tiny, scale=2, steps=1, model=tiny_model, device="cpu"))
    assert adapted.self_check is None and adapted.uses_network
    exact = choose_output(np.inf, np.inf, threshold=-0.2)
    assert exact.choice == "adapted" and exact.as_dict()["predicted_gain_db"] is None


def test_photo_assumption_never_takes_a_direct_model():
    """Area averaging has bicubic's pixel centres: at x4, with no bicubic x4 model
    shipped, the default takes the scale-aware bicubic one, not direct-x4."""
    for scale in (2, 3, 4, 2.5):
        options = AdaptOptions(scale=scale).for_image(rgb=True)
        assert options.model.info.degradation == "bicubic"
        assert options.son_degradation == "area"
    assert (
        AdaptOptions(scale=4, kernel="microscope").for_image(rgb=True).son_degradation == "direct"
    )


def test_matched_noise_is_the_noise_the_son_lost_in_network_units():
    """White noise of 8 grey levels on a smooth image: the son (area x2) keeps half its
    standard deviation, so about sqrt(3/4) of 8/255 is added back; the clean image gets
    none."""
    from napari_mzsr.pipeline.auto import matched_noise
    from napari_mzsr.pipeline.images import image_data

    rng = np.random.default_rng(0)
    smooth = np.add.outer(np.arange(128.0), np.arange(128.0)) * 0.7 + 30
    noisy = np.clip(np.rint(smooth + rng.normal(0, 8, smooth.shape)), 0, 255).astype(np.uint8)
    kernel = np.ones((1, 1))
    added = matched_noise(image_data(noisy), kernel, (2.0, 2.0), "area")
    std = added.typical_std(noisy / 255.0)
    assert 0.75 * 8 / 255 < std < 1.0 * 8 / 255
    clean = np.rint(smooth).astype(np.uint8)
    assert matched_noise(image_data(clean), kernel, (2.0, 2.0), "area") is None


def test_jpeg_quality_changes_the_son():
    """The son is saved at the given quality: a low one moves it by JPEG's error."""
    image = torch.from_numpy(_jpeg_texture(None).transpose(2, 0, 1)[None].astype(np.float32))
    image = image / 255
    kernel = torch.ones(1, 1)
    plain = make_son(image, kernel, 2, "area")
    saved = make_son(image, kernel, 2, "area", jpeg_quality=20)
    assert 1 / 255 < (saved - plain).abs().mean() < 20 / 255
    np.testing.assert_array_equal(make_son(image, kernel, 2, "area", jpeg_quality=None), plain)


def test_the_coarser_level_refuses_a_network_whose_gain_falls_there():
    """One scale further down, a network that over-sharpens an optics-limited image
    loses although its son pair predicted a gain (issue 36: synthetic fluorescence
    passed the son pair at +0.05 dB and lost 4.4 dB)."""
    from napari_mzsr.core.self_check import SelfCheck, coarser_check

    kept = SelfCheck(-4.6, 0.05, "adapted", -0.2)
    refused = coarser_check(kept, -1.1, threshold=-0.7)
    assert refused.choice == "lanczos" and refused.fell_back_on_scale
    assert refused.predicted_gain == 0.0
    assert "not alike across scales" in refused.describe()
    assert refused.as_dict()["gain_coarser_db"] == -1.1
    alike = coarser_check(kept, 0.2, threshold=-0.7)
    assert alike.choice == "adapted" and not alike.fell_back_on_scale
    assert alike.as_dict()["gain_coarser_db"] == 0.2
    # A check that already fell back on the son pair is not measured again.
    neither = SelfCheck(-1.0, -0.5, "lanczos", -0.2)
    assert coarser_check(neither, 1.0, threshold=-0.7) is neither


@pytest.mark.self_check
def test_the_run_measures_the_coarser_level(tiny_model, monkeypatch):
    """The pipeline scores the kept network on the son of the check window and gives
    Lanczos interpolation where that score is below the threshold."""
    from napari_mzsr.pipeline import run

    scored = []

    def keep_network(before, after, *, threshold, noise=0.0, jpeg_quality=None):
        return SelfCheck(before, after, "adapted", threshold, noise, jpeg_quality)

    real_gain = run.son_gain

    def recording_gain(net, image, *args, **kwargs):
        scored.append(tuple(image.shape[-2:]))
        return real_gain(net, image, *args, **kwargs)

    monkeypatch.setattr(run, "choose_output", keep_network)
    monkeypatch.setattr(run, "son_gain", recording_gain)
    monkeypatch.setattr(run, "COARSER_CHECK_THRESHOLD", math.inf)  # always refuse
    image = _texture((96, 96))
    adapted = drive(iter_adapt(image, scale=2, steps=1, model=tiny_model, device="cpu"))
    # Before and after adaptation on the 96 px window, then its 48 px son.
    assert scored == [(96, 96), (96, 96), (48, 48)]
    assert adapted.self_check.choice == "lanczos" and adapted.self_check.fell_back_on_scale
    assert_same_rounded(adapted.apply(image), _lanczos(image))  # float32 against float64
