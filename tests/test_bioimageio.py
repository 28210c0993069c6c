"""BioImage.IO export (napari_mzsr.export_bioimageio, ``napari-mzsr export``): packages
that pass ``bioimageio test``, compute what this package computes and load back."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from synthetic_pairs import camera_pair
from tiny_models import save_tiny_model

import napari_mzsr
from napari_mzsr import calibrate, export_bioimageio, load_model
from napari_mzsr.cli.main import main as cli
from napari_mzsr.core.resize import imresize_tensor
from napari_mzsr.core.scripted import Upsample, rational_factor
from napari_mzsr.pipeline.run import drive, iter_adapt

bioimageio_core = pytest.importorskip("bioimageio.core")
pytestmark = pytest.mark.usefixtures("one_thread")


def _photo(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: shape[0], : shape[1]]
    base = 0.5 + 0.3 * np.sin(x / 3 + seed) * np.cos(y / 5)
    extra = (shape[2],) if len(shape) == 3 else ()
    image = base.reshape(*base.shape, *(1,) * len(extra)) + rng.normal(0, 0.05, shape[:2] + extra)
    return np.clip(image, 0, 1).astype(np.float32)


def _predict(package: Path, image: np.ndarray) -> np.ndarray:
    """The package run by bioimageio.core alone, on (H, W[, C]) data; (H', W'[, C])."""
    from bioimageio.core import Tensor, predict
    from bioimageio.spec import load_model_description

    descr = load_model_description(package)
    bcyx = image[None, None] if image.ndim == 2 else image.transpose(2, 0, 1)[None]
    tensor = Tensor.from_numpy(bcyx, dims=("batch", "channel", "y", "x"))
    sample = predict(model=descr, inputs={descr.inputs[0].id: tensor})
    out = sample.members[descr.outputs[0].id].data.values[0]
    return out[0] if image.ndim == 2 else out.transpose(1, 2, 0)


@pytest.fixture(scope="module")
def rgb_package(tiny_model, tmp_path_factory):
    image = np.rint(_photo((40, 48, 3)) * 255).astype(np.uint8)
    adapted = drive(iter_adapt(image, scale=2, steps=2, model=tiny_model, self_check=False))
    path = tmp_path_factory.mktemp("bmz") / "rgb.zip"
    export_bioimageio(adapted, path, sample=image, name="tiny rgb x2")
    return path, adapted, image


@pytest.fixture(scope="module")
def gray_profile(tmp_path_factory):
    tiny = save_tiny_model(tmp_path_factory.mktemp("cal") / "g.pt", "tiny-g", channels=1)
    pairs = []
    for seed in range(2):
        lr, hr = camera_pair(seed, side=160, scale=2.5, variance=3.0, kernel_size=15)
        pairs.append((lr.mean(axis=-1).astype(np.uint8), hr.mean(axis=-1).astype(np.uint8)))
    return calibrate(pairs, 2.5, model=str(tiny), steps=2, holdout=0.3, name="grey-cam"), pairs


def test_upsampling_by_a_fraction_is_matlab_bicubic():
    for scale, shape in ((2.0, (1, 3, 10, 12)), (2.5, (2, 1, 8, 14)), ((3.0, 4 / 3), (1, 1, 9, 9))):
        x = torch.rand(shape)
        torch.testing.assert_close(Upsample(scale)(x), imresize_tensor(x, scale), atol=1e-6, rtol=0)
    assert rational_factor(2.5) == (5, 2)
    with pytest.raises(ValueError, match=r"q <= 8"):
        rational_factor(2.37)


def test_adapted_rgb_package_passes_bioimageio_test_and_matches_apply(rgb_package):
    path, adapted, _ = rgb_package
    summary = bioimageio_core.test_model(str(path))
    assert summary.status == "passed", summary.format()
    # An image the package was not made from, in the data's units (8-bit levels).
    other = np.rint(_photo((36, 44, 3), seed=3) * 255).astype(np.uint8)
    expected = adapted.apply(other, output_dtype=np.float32) / 255
    got = _predict(path, other) / 255
    assert got.shape == expected.shape == (72, 88, 3)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_package_holds_provenance_citation_and_loads_back(rgb_package):
    path, adapted, image = rgb_package
    with zipfile.ZipFile(path) as archive:
        rdf = yaml.safe_load(archive.read("rdf.yaml"))
        names = set(archive.namelist())
    assert {"cover.png", "README.md", "test_input.npy", "napari_mzsr_model.pt"} <= names
    config = rdf["config"]["napari-mzsr"]
    assert config["kind"] == "adapted model" and config["scale"] == [2.0, 2.0]
    assert config["provenance"]["steps_taken"] == adapted.steps_taken
    assert any("Meta-Transfer" in c["text"] for c in rdf["cite"])
    assert rdf["inputs"][0]["preprocessing"][1]["id"] == "scale_linear"
    model = load_model(path)
    assert model.info.name.endswith("-adapted")
    state = adapted.net.state_dict()
    assert all(torch.equal(model.state_dict[k], state[k].cpu()) for k in state)
    again = napari_mzsr.super_resolve(image[:20, :20], scale=2, steps=0, model=path)
    assert again.shape == (40, 40, 3)


def test_grey_profile_at_a_non_integer_factor(gray_profile, tmp_path):
    profile, pairs = gray_profile
    lr = pairs[0][0]
    path = export_bioimageio(profile, tmp_path / "profile.zip", sample=lr)
    summary = bioimageio_core.test_model(str(path))
    assert summary.status == "passed", summary.format()
    rdf = yaml.safe_load(zipfile.ZipFile(path).read("rdf.yaml"))
    assert rdf["config"]["napari-mzsr"]["kind"] == "camera profile"
    assert any("distortion-relation" in c["text"] for c in rdf["cite"])
    # Inputs in blocks of 2 pixels: 2.5 x an even side is a whole number of pixels.
    assert rdf["inputs"][0]["axes"][2]["size"]["step"] == 2
    crop = lr[:30, :42]
    # Without adaptation the package computes what theta_M gives with 0 steps.
    expected = (
        napari_mzsr.super_resolve(
            crop, scale=2.5, steps=0, model=profile, self_check=False, output_dtype=np.float32
        )
        / 255
    )
    got = _predict(path, crop) / 255
    assert got.shape == expected.shape == (75, 105)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_bioimageio_command_line_test_passes(rgb_package):
    command = shutil.which("bioimageio", path=str(Path(sys.executable).parent))
    assert command, "the bioimageio command comes with bioimageio.core"
    done = subprocess.run([command, "test", str(rgb_package[0])], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_bad_exports_are_refused(rgb_package, tiny_model, tmp_path):
    path, adapted, image = rgb_package
    with pytest.raises(FileExistsError, match="overwrite"):
        export_bioimageio(adapted, path, sample=image)
    with pytest.raises(ValueError, match=r"path must end in \.zip"):
        export_bioimageio(adapted, tmp_path / "model.pt", sample=image)
    with pytest.raises(ValueError, match="sample must be"):
        export_bioimageio(adapted, tmp_path / "a.zip", sample=np.zeros((4, 5, 6, 7)))
    with pytest.raises(ValueError, match="channel"):
        export_bioimageio(adapted, tmp_path / "a.zip", sample=image[..., 0])
    with pytest.raises(ValueError, match="name may hold"):
        export_bioimageio(adapted, tmp_path / "a.zip", sample=image, name="x2.5/mine")
    with pytest.raises(ValueError, match=r"scale 2\.37"):
        export_bioimageio("multiscale", tmp_path / "a.zip", sample=image, scale=2.37)
    with pytest.raises(ValueError, match="serves"):
        export_bioimageio(tiny_model, tmp_path / "a.zip", sample=image, scale=3)
    assert not list(tmp_path.glob("*.zip"))


def test_export_command(tiny_model, tmp_path, capsys):
    image = (_photo((40, 40, 3)) * 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "in.png")
    out = tmp_path / "run.zip"
    args = ["export", str(tmp_path / "in.png"), "-o", str(out), "--model", str(tiny_model)]
    assert cli([*args, "--steps", "1", "--no-self-check"]) == 0
    assert "adapted in 1 steps" in capsys.readouterr().out
    assert load_model(out).info.name == "tiny-adapted"
    assert cli([*args, "--no-self-check"]) == 1
    assert "overwrite" in capsys.readouterr().err
    assert cli([*args[:4], "--as-is", "-o", str(tmp_path / "x.zip")]) == 2
    assert "--as-is needs --model" in capsys.readouterr().err
    assert bioimageio_core.test_model(str(out)).status == "passed"
    assert cli([*args, "--as-is", "-o", str(tmp_path / "theta.zip")]) == 0
    assert bioimageio_core.test_model(str(tmp_path / "theta.zip")).status == "passed"
    assert (
        yaml.safe_load(zipfile.ZipFile(tmp_path / "theta.zip").read("rdf.yaml"))["config"][
            "napari-mzsr"
        ]["kind"]
        == "theta_M"
    )
