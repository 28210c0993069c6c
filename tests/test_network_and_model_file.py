import json
import pickle

import pytest
import torch

from napari_mzsr import ModelFileError, ModelInfo, load_model, save_model
from napari_mzsr.core.network import MZSRNet
from napari_mzsr.core.schedules import rate_at
from napari_mzsr.io.model_file import VERSION, shipped_models


def test_parameter_count_matches_paper():
    assert sum(p.numel() for p in MZSRNet(3).parameters()) == 225_091
    # C -> 64 and 64 -> C layers shrink for one channel.
    assert sum(p.numel() for p in MZSRNet(1).parameters()) == 225_091 - 2 * 64 * 9 * 2 - 2


def test_structure_residual_and_init():
    net = MZSRNet(3)
    convs = [m for m in net.body if isinstance(m, torch.nn.Conv2d)]
    relus = [m for m in net.body if isinstance(m, torch.nn.ReLU)]
    assert len(convs) == 8 and len(relus) == 7
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert all(torch.count_nonzero(c.bias) == 0 for c in convs)
    x = torch.rand(1, 3, 10, 12)
    with torch.no_grad():
        convs[-1].weight.zero_()
    torch.testing.assert_close(net(x), x)


def _info(**kw):
    base = dict(name="t", scales=[2.0], degradation="direct", channels=3, features=8)
    base.update(kw)
    return ModelInfo(**base)


def test_roundtrip_keeps_weights_and_metadata(tmp_path):
    net = MZSRNet(3, features=8)
    info = _info(lr_schedule=[[0, 2e-2], [1, 1e-2], [4, 5e-3]], training={"iterations": 5})
    path = save_model(tmp_path / "m.pt", net, info)
    model = load_model(path)
    assert model.info == info
    assert rate_at(model.info.lr_schedule, 0) == 2e-2 and rate_at(model.info.lr_schedule, 3) == 1e-2
    assert rate_at(model.info.lr_schedule, 9) == 5e-3
    for key, value in net.state_dict().items():
        torch.testing.assert_close(model.state_dict[key], value)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_save_refuses_to_overwrite(tmp_path):
    path = save_model(tmp_path / "m.pt", MZSRNet(3, features=8), _info())
    with pytest.raises(FileExistsError):
        save_model(path, MZSRNet(3, features=8), _info())
    save_model(path, MZSRNet(3, features=8), _info(), overwrite=True)


def test_missing_file_and_unknown_name(tmp_path):
    with pytest.raises(FileNotFoundError, match="no shipped model"):
        load_model("no-such-model")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "absent.pt")


def test_corrupt_file_is_refused(tmp_path):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ModelFileError, match="not a readable"):
        load_model(path)
    good = save_model(tmp_path / "good.pt", MZSRNet(3, features=8), _info())
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(ModelFileError):
        load_model(truncated)


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, (f"touch {_Exploit.marker}",))


def test_malicious_pickle_is_not_executed(tmp_path):
    _Exploit.marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "napari-mzsr-theta", "payload": _Exploit()}, path)
    with pytest.raises(ModelFileError, match="refused for safety"):
        load_model(path)
    assert not _Exploit.marker.exists()
    raw = tmp_path / "evil.pkl.pt"
    raw.write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(ModelFileError):
        load_model(raw)
    assert not _Exploit.marker.exists()


def test_mismatched_files_are_refused(tmp_path):
    # Weights of a 1-channel net under 3-channel metadata.
    path = tmp_path / "mismatch.pt"
    info = _info()
    payload = {
        "format": "napari-mzsr-theta",
        "version": VERSION,
        # Shapes are checked before the checksum, so any checksum will do here.
        "metadata": json.dumps({**info.__dict__, "checksum": "0" * 64}),
        "state_dict": MZSRNet(1, features=8).state_dict(),
    }
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="wrong shape"):
        load_model(path)
    payload["state_dict"] = {"body.0.weight": torch.zeros(1)}
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="do not match"):
        load_model(path)
    torch.save({"format": "something-else"}, path)
    with pytest.raises(ModelFileError, match="not a napari-mzsr"):
        load_model(path)
    payload["version"] = 99
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="version"):
        load_model(path)
    bad = MZSRNet(3, features=8).state_dict()
    bad["body.0.bias"][0] = float("nan")
    payload.update(version=VERSION, state_dict=bad)
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="NaN"):
        load_model(path)


def test_metadata_validation():
    with pytest.raises(ModelFileError, match="degradation"):
        _info(degradation="blur")
    with pytest.raises(ModelFileError, match="channels"):
        _info(channels=2)
    with pytest.raises(ModelFileError, match="step 0"):
        _info(lr_schedule=[[1, 1e-2]])


def test_scale_support():
    assert _info().supports_scale(2.0) and not _info().supports_scale(3.0)
    multi = _info(scales=[2.0, 4.0])
    assert multi.supports_scale(2.7) and not multi.supports_scale(4.5)


def test_shipped_models_are_loadable():
    for name in shipped_models():
        model = load_model(name)
        assert model.info.name == name


def test_initial_weights_are_scaled_by_fan_in():
    """Variance scaling by fan-in (the original's init): std sqrt(1 / fan_in) per layer,
    which for the first layer (fan-in 27, fan-out 576) is far from fan-out scaling."""
    net = MZSRNet(3, generator=torch.Generator().manual_seed(0))
    convs = [m for m in net.body if isinstance(m, torch.nn.Conv2d)]
    for conv in convs:
        fan_in = conv.in_channels * 9
        std = float(conv.weight.std())
        assert std == pytest.approx((1 / fan_in) ** 0.5, rel=0.15), conv
        assert float(conv.weight.abs().max()) <= 2 * (1 / fan_in) ** 0.5 / 0.8796 + 1e-6
        assert torch.all(conv.bias == 0)
