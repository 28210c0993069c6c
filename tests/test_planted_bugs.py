"""Behaviour that realistic slips used to get past the whole suite (issue 31): each test
names the slip it catches. The tile margin of factor pairs is held in test_tiling.py.

Every test was checked against its slip, planted in the source: it fails with the slip
and passes without it."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from synthetic_pairs import scene
from tiny_models import save_tiny_model

from napari_mzsr import calibrate, imresize
from napari_mzsr.core import calibration as cal
from napari_mzsr.core.distortions import Distortion, motion_kernel
from napari_mzsr.core.kernels import gaussian_kernel
from napari_mzsr.core.pair_checks import check_pair, measure_pair
from napari_mzsr.core.scale_aware import ScaleAwareNet, bind_scale
from napari_mzsr.io.model_file import load_model, save_model
from napari_mzsr.pipeline import axial as axial_pipeline
from napari_mzsr.pipeline.axial import iter_adapt_axial
from napari_mzsr.pipeline.axial_options import AxialOptions
from napari_mzsr.pipeline.calibrate import calibrate_profile
from napari_mzsr.pipeline.run import iter_adapt

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    """An 8-filter RGB theta_M: calibrations of a few steps take a second or two."""
    return str(save_tiny_model(tmp_path_factory.mktemp("planted") / "tiny.pt", "tiny", features=8))


# --- 1. the scale-aware network reads its pair as (sy, sx) ------------------------------

# Second differences along Y (down the middle column) and along X (across the middle row).
SECOND_DIFFERENCE = {
    "y": torch.tensor([[0.0, 1, 0], [0, -2, 0], [0, 1, 0]]).reshape(1, 1, 3, 3),
    "x": torch.tensor([[0.0, 0, 0], [1, -2, 1], [0, 0, 0]]).reshape(1, 1, 3, 3),
}


def _axis_routed_net() -> ScaleAwareNet:
    """A one-channel scale-aware network set by hand so that its routing does what
    meta-learning makes it do: the more an axis is magnified, the more of that axis's
    expert it uses. Expert 0 acts along Y (its logit grows with ``1 - 1/sy``), expert 1
    along X; the mask is 1 and every convolution of the body the identity, so that

        ``net(x, (sy, sx)) = 2 x + D(x)``

    for x >= 0, ``D`` the second difference along the axis of the larger factor."""
    net = ScaleAwareNet(1, features=1, layers=2, adaptation_layers=(0,))
    identity = torch.zeros(1, 1, 3, 3)
    identity[0, 0, 1, 1] = 1.0
    adaptation = net.adaptations["0"]
    routing = adaptation.adapt.routing
    with torch.no_grad():
        for conv in (net.body[0], net.body[2]):
            conv.weight.copy_(identity)
            conv.bias.zero_()
        for module in adaptation.mask:
            if isinstance(module, torch.nn.Conv2d):
                module.weight.zero_()
                module.bias.zero_()
        adaptation.mask[4].bias.fill_(40.0)  # sigmoid(40) is 1 in float32
        for layer in (routing[0], routing[2]):
            layer.weight.zero_()
            layer.bias.zero_()
        # Hidden unit a reads routing input a (1 / sy, then 1 / sx) as 1 - 1/s >= 0.
        routing[0].weight[0, 0], routing[0].weight[1, 1] = -1.0, -1.0
        routing[0].bias[:2] = 1.0
        routing[2].weight[0, 0], routing[2].weight[1, 1] = 40.0, 40.0
        routing[2].bias[2:] = -100.0  # experts 2 and 3 stay unused
        adaptation.adapt.experts.zero_()
        adaptation.adapt.experts[0, 0] = SECOND_DIFFERENCE["y"].reshape(9)
        adaptation.adapt.experts[1, 0] = SECOND_DIFFERENCE["x"].reshape(9)
    return net.eval()


@pytest.mark.parametrize(
    ("scale", "axis"),
    [((4.0, 1.0), "y"), ((1.0, 4.0), "x"), ((4.0, 1.5), "y"), ((1.5, 4.0), "x")],
)
def test_scale_aware_network_reads_its_pair_as_sy_sx(scale, axis):
    """Bug 1: the scale-aware network reading its factor pair the wrong way round
    ((sx, sy) for (sy, sx)): asked for a pair that magnifies Y more, it must restore
    along Y (rows), bound or given the pair at the call, and along X for the
    transposed pair."""
    net = _axis_routed_net()
    x = torch.rand(1, 1, 12, 16, generator=torch.Generator().manual_seed(0))
    expected = 2 * x + F.conv2d(x, SECOND_DIFFERENCE[axis], padding=1)
    with torch.no_grad():
        given = net(x, scale)
        bound = bind_scale(net, scale)(x)
    torch.testing.assert_close(given, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(bound, expected, atol=1e-5, rtol=0)


# --- 2 and 3. the DRTL objectives -------------------------------------------------------

TOY_TASKS = (
    Distortion("sharp/direct", gaussian_kernel(0.2, size=3), "direct"),
    Distortion("wide", gaussian_kernel(6.0, size=15)),
    Distortion("motion", motion_kernel(6.0, 0.0, size=15)),
    Distortion("noisy", gaussian_kernel(1.0, size=15), noise=0.06),
)


def _shot(hr: np.ndarray, distortion: Distortion, scale: float, seed: int) -> np.ndarray:
    t = torch.from_numpy(hr.astype(np.float32)).permute(2, 0, 1)[None]
    lr = distortion.apply(t, scale, np.random.default_rng(seed))
    return lr[0].permute(1, 2, 0).numpy()


@pytest.fixture(scope="module")
def toy_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """The calibration tests' toy camera (test_calibration.py): blur, noise and a tone
    change that none of the auxiliary distortions has, so only the real pairs teach it."""
    truth = Distortion("truth", gaussian_kernel(2.0, 1.0, 0.5, size=15), noise=0.005)
    pairs = []
    for s in range(2):
        hr = scene(192, s, detail=(4, 8, 16)).astype(np.float32)
        lr = np.clip(0.8 * _shot(hr, truth, 2.0, s) + 0.05, 0, 1).astype(np.float32)
        pairs.append((lr, hr))
    return pairs


def test_drtl_meta_outer_loss_is_the_target_query_after_the_step(tiny, toy_pairs):
    """Bug 2: DRTL-meta taking its after-step loss on the support batch (synthetic
    distortions) instead of the query batch (the real pairs). With ``aux_weight`` 1 the
    after-step loss is the whole objective: on the query it still learns the camera's
    tone (about +6.7 dB here), on the support nothing of it (about -0.2 dB)."""
    options = cal.CalibrationOptions(
        steps=30, lr=3e-3, batch=4, patch=32, relation_every=15, holdout=0.25, aux_weight=1.0
    )
    result = calibrate_profile(
        toy_pairs, 2.0, model=tiny, method="drtl-meta", options=options, distortions=TOY_TASKS
    )
    held = result.held_out
    assert held["profile"] > held["base"] + 3.0, held


def test_drtl_auxiliary_loss_is_a_mean_over_the_auxiliary_patches(tiny, toy_pairs, monkeypatch):
    """Bug 3: the DRTL auxiliary loss losing each task's share of the batch (the sum of
    the per-task means instead of their mean weighted by patch count). ``aux_weight`` is
    the weight of the auxiliary loss against the target loss: each update must minimise
    ``L1(target patches) + aux_weight * L1(all auxiliary patches of the step)``, however
    the multinomial draw split those patches among the tasks."""
    aux_weight = 0.5
    seen: dict[str, list] = {"target": [], "auxiliary": [], "objective": []}
    sample, task_batch, descend = cal.sample_patches, cal._AuxiliaryTasks.batch, cal._descend

    def sample_spy(pairs, rng, count, size):
        out = sample(pairs, rng, count, size)
        seen["target"].append(out[:2])
        return out

    def batch_spy(self, task, count):
        out = task_batch(self, task, count)
        seen["auxiliary"].append(out)
        return out

    def descend_spy(optimizer, loss, options, step):
        # The net before this update: the objective it was handed, and what it should be.
        x, y = seen["target"][-1]
        with torch.no_grad():
            want = (net(x) - y).abs().mean()
            if seen["auxiliary"]:
                xa = torch.cat([b[0] for b in seen["auxiliary"]])
                ya = torch.cat([b[1] for b in seen["auxiliary"]])
                want = want + aux_weight * (net(xa) - ya).abs().mean()
        seen["objective"].append((float(loss), float(want), len(seen["auxiliary"])))
        seen["auxiliary"].clear()
        descend(optimizer, loss, options, step)

    monkeypatch.setattr(cal, "sample_patches", sample_spy)
    monkeypatch.setattr(cal._AuxiliaryTasks, "batch", batch_spy)
    monkeypatch.setattr(cal, "_descend", descend_spy)
    net = load_model(tiny).network()
    # A high temperature spreads the draw over every related task: batches get split.
    options = cal.CalibrationOptions(
        steps=4, lr=3e-3, batch=8, patch=32, relation_every=4, holdout=0.25,
        aux_weight=aux_weight, temperature=100.0,
    )  # fmt: skip
    run = cal.iter_calibrate(
        toy_pairs, 2.0, network=net, method="drtl", options=options, distortions=TOY_TASKS
    )
    for _ in run:
        pass
    objectives = seen["objective"]
    assert len(objectives) == 4
    assert max(tasks for *_, tasks in objectives) >= 2, "no step split its batch"
    for got, want, tasks in objectives:
        assert got == pytest.approx(want, rel=1e-4), f"{tasks} tasks: {got} != {want}"


# --- 4. the registration tolerance is in HR pixels --------------------------------------


@pytest.mark.parametrize("scale", [2, 3])
def test_pair_misplacement_is_measured_and_checked_in_hr_pixels(scale):
    """Bug 4: the pair registration check comparing the misplacement in LR pixels with
    its tolerance in HR pixels. A pair whose HR image is ``scale`` HR pixels (one LR
    pixel) off is misplaced by ``scale`` HR pixels: it must be reported so and refused
    by the default tolerance of 1 HR pixel (not accepted as "0.98 px"), and accepted only
    by a tolerance above ``scale``."""
    big = scene(240, 0, detail=(4, 8, 16))
    side = 64 * scale
    hr = big[:side, :side]
    lr = imresize(big[scale : scale + side, :side], 1 / scale)  # HR lower by `scale` px
    reg = measure_pair(lr, hr, float(scale))
    assert reg.shift[0] == pytest.approx(scale, abs=0.25) and abs(reg.shift[1]) < 0.25
    assert reg.error == pytest.approx(scale, abs=0.3)
    with pytest.raises(ValueError, match="misregistered") as err:
        check_pair(lr, hr, float(scale), max_error=scale - 0.5)
    reported = float(re.search(r"misplacement up to ([\d.]+) px", str(err.value)).group(1))
    assert reported == pytest.approx(scale, abs=0.3)
    with pytest.raises(ValueError, match="misregistered"):
        check_pair(lr, hr, float(scale))
    accepted = check_pair(lr, hr, float(scale), max_error=scale + 0.5)
    assert accepted.error == pytest.approx(reg.error)


# --- 5. a profile's provenance keeps each pair's LR and HR shapes -------------------------


def test_profile_provenance_records_each_pairs_lr_and_hr_shapes(tiny, tmp_path):
    """Bug 5: a calibration profile's provenance with the LR and HR shapes swapped.
    Non-square pairs of different shapes: each pair's record gives its own LR shape as
    ``lr_shape`` and its HR shape as ``hr_shape``, (rows, columns), in the saved file too."""
    truth = Distortion("truth", gaussian_kernel(2.0, size=15))
    pairs = []
    for seed, (rows, cols) in enumerate([(192, 160), (160, 192)]):
        hr = scene(192, seed, detail=(4, 8, 16))[:rows, :cols].astype(np.float32)
        pairs.append((_shot(hr, truth, 2.0, seed), hr))
    profile = calibrate(
        pairs, 2.0, model=tiny, method="finetune", steps=1, names=["wide", "tall"], device="cpu"
    )
    path = save_model(tmp_path / "camera.pt", profile.state_dict, profile.info)
    for training in (profile.info.training, load_model(path).info.training):
        shapes = {p["name"]: (p["lr_shape"], p["hr_shape"]) for p in training["pairs"]}
        assert shapes == {"wide": ([96, 80], [192, 160]), "tall": ([80, 96], [160, 192])}


# --- 6. axial adaptation uses both lateral axes as Z ------------------------------------


def test_axial_adaptation_fits_patches_with_x_as_well_as_y_in_the_role_of_z(
    tiny_gray_model, monkeypatch
):
    """Bug 6: axial adaptation patches never transposed, so that only Y ever plays the
    role of Z. A stack whose XY slices vary along X only: the patches each step fits
    (degraded along their rows) must have X along the rows for half of them, and Y
    (along which they are constant) for the other half."""
    rng = np.random.default_rng(0)
    profiles = imresize(rng.random((6, 12)), (1, 4))  # (Z, X): smooth along X
    volume = np.repeat(profiles[:, None, :], 40, axis=1).astype(np.float32)  # (6, 40, 48)
    batches = []
    adapt = axial_pipeline.adapt_axial

    def recorded(net, batch_iter, *args, **kwargs):
        def tee():
            for batch in batch_iter:
                batches.append(batch.detach().clone())
                yield batch

        return adapt(net, tee(), *args, **kwargs)

    monkeypatch.setattr(axial_pipeline, "adapt_axial", recorded)
    options = AxialOptions(
        kernel=1.0, steps=3, model=tiny_gray_model, device="cpu", precision="float32",
        adapt_patch=16, adapt_patches=4,
    )  # fmt: skip
    for _ in iter_adapt_axial(volume, 2, options):
        pass
    assert len(batches) == 3
    for step, batch in enumerate(batches):
        along_rows = batch[:, 0].std(dim=-2).amax(dim=-1)  # (patches,)
        along_cols = batch[:, 0].std(dim=-1).amax(dim=-1)
        x_on_rows = int((along_rows > 1e-3).sum())
        y_on_rows = int(((along_rows < 1e-6) & (along_cols > 1e-3)).sum())
        assert (x_on_rows, y_on_rows) == (2, 2), f"step {step}: {along_rows}, {along_cols}"


# --- 7. the meta-test halves its rate after a refused step --------------------------------


@pytest.mark.parametrize("patch", [None, 24], ids=["whole-image", "patches"])
def test_learning_rate_is_halved_after_each_refused_step(tiny_model, patch):
    """Bug 7: the learning rate not halved after a refused step. A rate that overshoots
    (constant 3.0 on a smooth image) makes steps be undone; every report after a refused
    step must give half the rate of the refused one, every report after a kept step the
    same rate (the schedule is constant)."""
    base = np.random.default_rng(3).random((8, 7, 3))
    image = np.clip(imresize(base, 6) * 255, 0, 255).astype(np.uint8)  # 48 x 42, smooth
    run = iter_adapt(
        image, scale=2, kernel=gaussian_kernel(1.0, size=9), steps=8, model=tiny_model,
        device="cpu", precision="float32", lr=3.0, adapt_patch=patch, adapt_patches=2,
    )  # fmt: skip
    reports = list(run)
    refused = [r.step for r in reports[:-1] if not r.accepted]
    assert refused, "the overshooting rate should have made steps be undone"
    assert reports[0].learning_rate == pytest.approx(3.0)
    for before, after in itertools.pairwise(reports):
        factor = 1.0 if before.accepted else 0.5
        assert after.learning_rate == pytest.approx(before.learning_rate * factor), (
            f"step {after.step} after {'a kept' if before.accepted else 'a refused'} step"
        )
