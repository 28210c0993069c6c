"""The scale-aware network (core/scale_aware.py) and its model files (io/model_file.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.func import functional_call

from napari_mzsr.core.network import MZSRNet
from napari_mzsr.core.scale_aware import (
    ScaleAwareNet,
    bind_scale,
    parameter_shapes,
    receptive_radius,
)
from napari_mzsr.core.tiling import tile_margin
from napari_mzsr.io.model_file import (
    VERSION,
    VERSION_SCALE_AWARE,
    ModelFileError,
    ModelInfo,
    load_model,
    save_model,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _net(features=8, layers=(2, 5), channels=3, seed=0, experts_std=0.05):
    generator = torch.Generator().manual_seed(seed)
    net = ScaleAwareNet(channels, features, adaptation_layers=layers, generator=generator)
    with torch.no_grad():
        for name, value in net.named_parameters():
            if name.endswith("experts"):
                value.normal_(0, experts_std, generator=generator)
    return net


def test_parameter_count_and_shapes():
    net = ScaleAwareNet(3)
    assert sum(p.numel() for p in net.parameters()) == 544_301  # plain MZSR: 225,091
    assert sum(p.numel() for p in MZSRNet(3).parameters()) == 225_091
    shapes = parameter_shapes(3)
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == shapes
    small = _net(layers=(0, 3), channels=1)
    assert {k: tuple(v.shape) for k, v in small.state_dict().items()} == parameter_shapes(
        1, 8, 8, (0, 3)
    )


def test_starts_as_the_plain_network_and_then_depends_on_the_factors():
    plain = MZSRNet(3, 8, generator=torch.Generator().manual_seed(1))
    aware = ScaleAwareNet(3, 8)
    missing, unexpected = aware.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("adaptations.") for k in missing)
    x = torch.rand(1, 3, 17, 23)
    # Zero experts: exactly the plain network, whatever the factors.
    torch.testing.assert_close(aware(x, (1.5, 4.0)), plain(x), rtol=0, atol=0)
    net = _net()
    a, b = net(x, (2.0, 2.0)), net(x, (2.0, 3.5))
    assert a.shape == x.shape and float((a - b).abs().max()) > 1e-4
    torch.testing.assert_close(net(x, (2.0, 3.5)), bind_scale(net, (2.0, 3.5))(x))


def test_functional_call_gives_second_order_gradients_to_every_parameter():
    net = _net()
    params = dict(net.named_parameters())
    x, y = torch.rand(2, 3, 12, 12), torch.rand(2, 3, 12, 12)
    loss = (functional_call(net, params, (x,), {"scale": (1.5, 3.0)}) - y).abs().mean()
    grads = torch.autograd.grad(loss, tuple(params.values()), create_graph=True)
    fast = {n: w - 0.1 * g for (n, w), g in zip(params.items(), grads, strict=True)}
    query = (functional_call(net, fast, (x,), {"scale": (1.5, 3.0)}) - y).abs().mean()
    meta = torch.autograd.grad(query, tuple(params.values()), allow_unused=True)
    missing = [n for n, g in zip(params, meta, strict=True) if g is None or not g.abs().sum() > 0]
    assert not missing


def test_needs_a_scale_and_checks_its_layers():
    net = _net()
    with pytest.raises(ValueError, match="needs a scale"):
        net(torch.rand(1, 3, 8, 8))
    for layers in ([7], [2, 2], [-1], ["a"]):
        with pytest.raises(ValueError, match="adaptation_layers"):
            ScaleAwareNet(3, 8, adaptation_layers=layers)


def test_receptive_radius_bounds_the_influence_of_a_pixel():
    """The tiling margin relies on it: a pixel moves outputs at most `radius` away."""
    net = _net(layers=(0, 1, 2, 3, 4, 5, 6), experts_std=0.2)
    radius = receptive_radius(8, (0, 1, 2, 3, 4, 5, 6))
    x = torch.rand(1, 3, 71, 71)
    bumped = x.clone()
    bumped[..., 35, 35] += 1.0
    with torch.no_grad():
        diff = (net(bumped, (2.0, 2.0)) - net(x, (2.0, 2.0))).abs().amax(dim=(0, 1))
    rows, cols = torch.nonzero(diff > 0, as_tuple=True)
    reach = max(int((rows - 35).abs().max()), int((cols - 35).abs().max()))
    # The adaptations widen the reach beyond the body's 8 pixels, and never past radius.
    assert radius == 29 and receptive_radius(8) < reach <= radius


def _info(**kwargs):
    fields = dict(
        name="tiny-arb",
        scales=[1.0, 1.1, 4.0],
        degradation="bicubic",
        channels=3,
        features=8,
        architecture="scale-aware",
        adaptation_layers=[2, 5],
    )
    return ModelInfo(**{**fields, **kwargs})


def test_model_files_record_the_architecture(tmp_path):
    net = _net()
    path = save_model(tmp_path / "arb.pt", net, _info())
    payload = torch.load(path, weights_only=True)
    metadata = json.loads(payload["metadata"])
    assert payload["version"] == VERSION_SCALE_AWARE == 3
    assert metadata["architecture"] == "scale-aware" and metadata["adaptation_layers"] == [2, 5]
    model = load_model(path)
    loaded = model.network("cpu", (2.5, 1.5))
    assert isinstance(loaded, ScaleAwareNet) and loaded.scale == (2.5, 1.5)
    x = torch.rand(1, 3, 10, 10)
    torch.testing.assert_close(loaded(x), net(x, (2.5, 1.5)))
    assert model.info.radius == 14
    # A plain network's file stays version 2, without the new fields.
    plain = save_model(
        tmp_path / "plain.pt", MZSRNet(3, 8), ModelInfo("p", [2.0], "direct", 3, features=8)
    )
    payload = torch.load(plain, weights_only=True)
    assert payload["version"] == VERSION == 2
    assert "architecture" not in json.loads(payload["metadata"])
    assert load_model(plain).info.architecture == "mzsr" and load_model(plain).info.radius == 8


def test_mismatched_architecture_files_are_refused(tmp_path):
    with pytest.raises(ModelFileError, match="scale-aware network"):
        save_model(tmp_path / "a.pt", MZSRNet(3, 8), _info())
    with pytest.raises(ModelFileError, match="weights do not match"):
        save_model(tmp_path / "b.pt", _net(), _info(architecture="mzsr", adaptation_layers=[]))
    for bad, message in (
        ({"architecture": "rcan"}, "architecture"),
        ({"adaptation_layers": [9]}, "adaptation_layers"),
        ({"adaptation_layers": []}, "adaptation_layers"),
        ({"architecture": "mzsr"}, "adaptation_layers"),
    ):
        with pytest.raises(ModelFileError, match=message):
            _info(**bad)
    # Hand-made files: a version 2 file claiming the scale-aware network, and a
    # version 3 file that names no architecture.
    path = save_model(tmp_path / "ok.pt", _net(), _info())
    payload = torch.load(path, weights_only=True)
    for version, change in ((2, {}), (3, {"architecture": None})):
        metadata = json.loads(payload["metadata"])
        metadata.update(change)
        metadata = {k: v for k, v in metadata.items() if v is not None}
        forged = dict(payload, version=version, metadata=json.dumps(metadata))
        torch.save(forged, tmp_path / "forged.pt")
        with pytest.raises(ModelFileError, match="version"):
            load_model(tmp_path / "forged.pt")


def test_tiled_inference_of_the_scale_aware_network_is_exact(tmp_path, monkeypatch):
    """Tiles need the wider receptive radius as their margin (info.radius)."""
    from napari_mzsr.pipeline import adapted as adapted_module

    radii = []

    def recording_margin(scale, radius=8):
        radii.append(radius)
        return tile_margin(scale, radius)

    monkeypatch.setattr(adapted_module, "tile_margin", recording_margin)
    from tiny_models import save_tiny_model

    from napari_mzsr import iter_adapt
    from napari_mzsr.pipeline.run import drive

    path = save_tiny_model(
        tmp_path / "wide.pt",
        "wide",
        features=8,
        scales=[1.0, 4.0],
        degradation="bicubic",
        adaptation_layers=(0, 1, 2, 3, 4, 5, 6),
        experts_std=0.3,
    )
    image = (np.random.default_rng(0).random((40, 44)) * 255).astype(np.uint8)
    scale = (1.5, 2.0)
    adapted = drive(iter_adapt(image, scale=scale, model=path, steps=1, device="cpu"))
    assert tile_margin(scale, adapted.info.radius) > tile_margin(scale, 8)
    whole = adapted.apply(image, output_dtype=np.float32, tile=64)
    tiled = adapted.apply(image, output_dtype=np.float32, tile=16)
    assert whole.shape == (60, 88)
    np.testing.assert_allclose(tiled, whole, atol=1e-3)
    assert set(radii) == {29}
