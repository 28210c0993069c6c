"""Bad inputs, faults and interruptions through the public API, theta_M files and the
command line: each is handled correctly or refused with a one-line message naming the
problem; the input is never modified and nothing partial is left behind.

The reliability paragraph of docs/development.md counts the cases of this module
(``pytest tests/test_hardening.py``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from scipy import ndimage

from napari_mzsr import ModelFileError, ModelInfo, load_model, save_model, super_resolve
from napari_mzsr.cli import batch
from napari_mzsr.cli.main import main
from napari_mzsr.core.network import MZSRNet
from napari_mzsr.io.atomic import atomic_folder, atomic_path
from napari_mzsr.io.model_file import FORMAT, VERSION, checksum
from napari_mzsr.pipeline.run import drive, iter_adapt

pytestmark = pytest.mark.usefixtures("one_thread")


def _smooth(shape=(40, 40), dtype=np.uint8, low=0.0, high=None, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.random(shape), 3)
    base = (base - base.min()) / (base.max() - base.min())
    high = float(np.iinfo(dtype).max) if high is None else high
    return np.rint(low + base * (high - low)).astype(dtype)


def _one_line(message: str, *words: str) -> None:
    assert "\n" not in message and len(message) < 320, message
    for word in words:
        assert word in message, message


# -- API: every argument refused with its name ---------------------------------------

BAD_ARGUMENTS = [
    ({"scale": (2, 3)}, ValueError, "scale"),
    ({"scale": "two"}, ValueError, "scale"),
    ({"scale": "23"}, ValueError, "scale"),
    ({"scale": 0.5}, ValueError, "scale"),
    ({"scale": float("nan")}, ValueError, "scale"),
    ({"scale": (2,)}, ValueError, "scale"),
    ({"scale": True}, ValueError, "scale"),
    ({"steps": -1}, ValueError, "steps"),
    ({"steps": 2.5}, ValueError, "steps"),
    ({"steps": "10"}, ValueError, "steps"),
    ({"steps": True}, ValueError, "steps"),
    ({"seed": None}, ValueError, "seed"),
    ({"seed": "abc"}, ValueError, "seed"),
    ({"seed": 2**64}, ValueError, "seed"),
    ({"seed": -1}, ValueError, "seed"),
    ({"seed": 1.5}, ValueError, "seed"),
    ({"model": 123}, ValueError, "model"),
    ({"model": "nope"}, FileNotFoundError, "no shipped"),
    ({"kernel": object()}, ValueError, "kernel"),
    ({"kernel": [[1, 2], [3]]}, ValueError, "kernel"),
    ({"kernel": -1.0}, ValueError, "kernel"),
    ({"kernel": (4.0, 1.0, float("nan"))}, ValueError, "kernel"),
    ({"kernel": np.ones((4, 4))}, ValueError, "kernel"),
    ({"kernel": np.ones((3, 5))}, ValueError, "kernel"),
    ({"kernel": np.full((3, 3), np.nan)}, ValueError, "kernel"),
    ({"kernel": "no-such-file.mat"}, FileNotFoundError, "kernel"),
    ({"device": "meta"}, ValueError, "device"),
    ({"device": 3}, ValueError, "device"),
    ({"device": "cuda:7"}, ValueError, "CUDA"),
    ({"device": "gpu"}, ValueError, "device"),
    ({"lr": float("nan")}, ValueError, "lr"),
    ({"lr": float("inf")}, ValueError, "lr"),
    ({"lr": 0}, ValueError, "lr"),
    ({"lr": -1e-2}, ValueError, "lr"),
    ({"lr": "fast"}, ValueError, "lr"),
    ({"lr": [[1, 1e-2]]}, ValueError, "lr"),
    ({"lr": [[0, 1e-2], [0, 1e-3]]}, ValueError, "lr"),
    ({"precision": "int8"}, ValueError, "precision"),
    ({"normalization": "foo"}, ValueError, "normalization"),
    ({"percentiles": (50, 10)}, ValueError, "percentiles"),
    ({"percentiles": "low"}, ValueError, "percentiles"),
    ({"output_dtype": "nope"}, ValueError, "output_dtype"),
    ({"output_dtype": bool}, ValueError, "output_dtype"),
    ({"output_shape": (10,)}, ValueError, "output_shape"),
    ({"output_shape": (81, 80)}, ValueError, "output_shape"),
    ({"tile": 0}, ValueError, "tile"),
    ({"ensemble": "max"}, ValueError, "ensemble"),
    ({"back_projection": -1}, ValueError, "back_projection"),
    ({"back_projection": 1.5}, ValueError, "back_projection"),
    ({"adapt_patch": "big"}, ValueError, "adapt_patch"),
    ({"adapt_patch": 4, "kernel": 2.0}, ValueError, "adapt_patch"),  # under the 21 px kernel
    ({"adapt_patches": 0}, ValueError, "adapt_patches"),
]


@pytest.mark.parametrize(("kwargs", "error", "word"), BAD_ARGUMENTS)
def test_bad_argument_is_named_in_one_line(tiny_gray_model, kwargs, error, word):
    image = _smooth()
    before = image.copy()
    options = {"scale": 2, "steps": 1, "model": tiny_gray_model, "device": "cpu", **kwargs}
    with pytest.raises(error) as caught:
        super_resolve(image, **options)
    _one_line(str(caught.value), word)
    np.testing.assert_array_equal(image, before)


BAD_IMAGES = [
    (np.zeros((40, 40), bool), "boolean"),
    (np.zeros((40, 40), complex), "complex"),
    (np.array([["a"] * 40] * 40), "numeric"),
    (np.zeros((0, 40)), "empty"),
    (np.full((40, 40), np.nan, np.float32), "NaN"),
    (np.full((40, 40), -np.inf), "infinite"),
    (np.zeros((40,)), "2D"),
    (np.zeros((2, 40, 40, 3)), "super_resolve_stack"),
    (np.zeros((10, 12)), "too small"),
]


@pytest.mark.parametrize(("image", "word"), BAD_IMAGES)
def test_bad_image_is_refused_in_one_line(tiny_gray_model, image, word):
    with pytest.raises(ValueError) as caught:
        # "too small" for the 21 px kernel of variance 2.0
        super_resolve(image, scale=2, kernel=2.0, steps=1, model=tiny_gray_model, device="cpu")
    _one_line(str(caught.value), word)


# -- API: data that must simply work ----------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint32, np.int16])
def test_wide_and_signed_integer_images_are_mapped_by_their_data(tiny_gray_model, dtype):
    """numpy's default integer type holding 0..255: mapped by its percentiles, not by
    its type's range (which made every pixel one float32 value)."""
    image = _smooth(dtype=np.uint8).astype(dtype)
    out = super_resolve(image, scale=2, steps=2, model=tiny_gray_model, device="cpu")
    assert out.dtype == dtype and out.shape == (80, 80)
    back = out[::2, ::2].astype(np.float64)
    assert 0 <= back.min() and back.max() <= 255 + 30
    assert abs(back.mean() - image.mean()) < 0.05 * image.mean()


def test_blurred_uint16_image_keeps_its_mean():
    """A smooth uint16 image, x2 with the shipped 1-channel model, 10 steps: its result
    sampled back on the input grid keeps the input's mean within 1%."""
    image = _smooth((60, 80), np.uint16, low=1000, high=3000)
    out = super_resolve(image, scale=2, kernel=2.0, steps=10, device="cpu")
    back = out[::2, ::2].astype(np.float64)
    assert abs(back.mean() - image.mean()) < 0.01 * image.mean()


def test_twelve_bit_data_in_uint16_is_served_by_the_default(tiny_gray_model):
    """12-bit camera data in uint16 fill the network's range under the default."""
    image = _smooth((48, 48), np.uint16, low=0, high=4095)
    run = iter_adapt(image, scale=2, steps=1, model=tiny_gray_model, device="cpu")
    imap = drive(run).intensity
    assert imap.low < 50 and 4000 < imap.high <= 4095


def test_integer_results_are_the_rounded_float_results(tiny_gray_model):
    image = _smooth(dtype=np.uint16, low=100, high=3000)
    kw = {"scale": 2, "steps": 2, "model": tiny_gray_model, "device": "cpu"}
    as_int = super_resolve(image, **kw)
    as_float = super_resolve(image, output_dtype=np.float64, **kw)
    expected = np.clip(np.rint(as_float), 0, 65535).astype(np.uint16)
    np.testing.assert_array_equal(as_int, expected)


def test_float64_data_spanning_the_whole_range_gives_finite_results(tiny_gray_model):
    image = (_smooth().astype(np.float64) / 255 * 2 - 1) * 1.7e308
    out = super_resolve(
        image, scale=2, steps=1, model=tiny_gray_model, device="cpu", normalization="minmax"
    )
    assert np.all(np.isfinite(out))


def test_huge_learning_rate_never_returns_nan(tiny_gray_model):
    try:
        out = super_resolve(
            _smooth(), scale=2, steps=3, model=tiny_gray_model, device="cpu", lr=1e30
        )
    except ValueError as exc:
        _one_line(str(exc), "lr")
    else:
        assert np.all(np.isfinite(out.astype(np.float64)))


def test_read_only_and_memmap_inputs_are_untouched(tiny_gray_model, tmp_path):
    image = _smooth()
    path = tmp_path / "image.npy"
    np.save(path, image)
    mapped = np.load(path, mmap_mode="r")
    out = super_resolve(mapped, scale=2, steps=1, model=tiny_gray_model, device="cpu")
    assert out.shape == (80, 80)
    np.testing.assert_array_equal(np.load(path), image)


def test_a_billion_patch_steps_allocate_one_step_at_a_time(tiny_gray_model):
    run = iter_adapt(
        _smooth((64, 64)), scale=2, kernel=1.0, steps=10**9, model=tiny_gray_model,
        device="cpu", adapt_patch=32, adapt_patches=2,
    )  # fmt: skip
    assert [next(run).step for _ in range(2)] == [0, 1]
    run.close()


# -- theta_M files ----------------------------------------------------------------------


def _payload(info: dict, state: dict, *, stored_sum: str | None = None) -> dict:
    metadata = {**info, "checksum": stored_sum or checksum(state)}
    return {"format": FORMAT, "version": VERSION, "metadata": json.dumps(metadata),
            "state_dict": state}  # fmt: skip


def _tiny_state() -> dict:
    return MZSRNet(1, features=4, generator=torch.Generator().manual_seed(0)).state_dict()


def _tiny_info(**changes) -> dict:
    info = {"name": "t", "scales": [2.0], "degradation": "direct", "channels": 1,
            "lr_schedule": [[0, 1e-2]], "features": 4, "layers": 8, "training": {}}  # fmt: skip
    info.update(changes)
    return info


BAD_METADATA = [
    ({"features": 16384}, "features"),
    ({"features": 0}, "features"),
    ({"features": "64"}, "features"),
    ({"layers": 1}, "layers"),
    ({"channels": 2}, "channels"),
    ({"channels": "1"}, "channels"),
    ({"scales": []}, "scales"),
    ({"scales": ["2"]}, "scales"),
    ({"scales": [0.5]}, "scales"),
    ({"degradation": "blur"}, "degradation"),
    ({"lr_schedule": [[0, float("nan")]]}, "lr_schedule"),
    ({"lr_schedule": [[0, -1]]}, "lr_schedule"),
    ({"lr_schedule": [[1, 1e-2]]}, "lr_schedule"),
    ({"lr_schedule": "fast"}, "lr_schedule"),
    ({"lr_schedule": [[0]]}, "lr_schedule"),
    ({"training": "x"}, "training"),
    ({"name": ""}, "name"),
]


@pytest.mark.parametrize(("changes", "field"), BAD_METADATA)
def test_malformed_metadata_names_the_field(tmp_path, changes, field):
    path = tmp_path / "bad.pt"
    torch.save(_payload(_tiny_info(**changes), _tiny_state()), path)
    with pytest.raises(ModelFileError) as caught:
        load_model(path)
    _one_line(str(caught.value), repr(field))


def test_claimed_size_is_checked_against_the_tensors_before_building(tmp_path, monkeypatch):
    path = tmp_path / "claims.pt"
    torch.save(_payload(_tiny_info(features=512), _tiny_state()), path)
    built = []
    monkeypatch.setattr(MZSRNet, "__init__", lambda *a, **k: built.append(a))
    with pytest.raises(ModelFileError, match="wrong shape"):
        load_model(path)
    assert built == []


def test_changed_weights_fail_the_checksum(tmp_path):
    state = _tiny_state()
    stored = checksum(state)
    state["body.0.weight"][0, 0, 0, 0] += 1e-3
    path = tmp_path / "tampered.pt"
    torch.save(_payload(_tiny_info(), state, stored_sum=stored), path)
    with pytest.raises(ModelFileError, match="checksum"):
        load_model(path)


def test_flipped_bytes_are_refused(tmp_path):
    path = tmp_path / "model.pt"
    save_model(path, _tiny_state(), ModelInfo(**_tiny_info()))
    data = bytearray(path.read_bytes())
    # Flip 64 bytes in the middle of the file, where the tensors are stored.
    start = len(data) // 2
    for i in range(start, start + 64):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError):
        load_model(path)


def test_missing_checksum_is_refused(tmp_path):
    path = tmp_path / "nosum.pt"
    payload = _payload(_tiny_info(), _tiny_state())
    metadata = json.loads(payload["metadata"])
    del metadata["checksum"]
    payload["metadata"] = json.dumps(metadata)
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="metadata"):
        load_model(path)


def test_files_are_loaded_with_weights_only(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    save_model(path, _tiny_state(), ModelInfo(**_tiny_info()))
    seen = []
    real = torch.load

    def recording_load(*args, **kwargs):
        seen.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    load_model(path)
    assert seen == [True]


def test_saved_files_have_an_ordinary_mode(tmp_path):
    previous = os.umask(0o022)
    try:
        path = save_model(tmp_path / "m.pt", _tiny_state(), ModelInfo(**_tiny_info()))
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o644


# -- command line -----------------------------------------------------------------------


def _cli(model, *args) -> int:
    return main(["run", *map(str, args), "--model", str(model), "--steps", "1",
                 "--device", "cpu"])  # fmt: skip


def test_outputs_respect_the_umask(tmp_path, tiny_gray_model):
    tifffile.imwrite(tmp_path / "a.tif", _smooth())
    previous = os.umask(0o027)
    try:
        assert _cli(tiny_gray_model, tmp_path / "a.tif", "-o", tmp_path / "out") == 0
    finally:
        os.umask(previous)
    assert (tmp_path / "out" / "a_x2_mzsr.tif").stat().st_mode & 0o777 == 0o640


def test_output_folder_equal_to_the_input_folder(tmp_path, tiny_gray_model):
    tifffile.imwrite(tmp_path / "a.tif", _smooth())
    assert _cli(tiny_gray_model, tmp_path, "-o", tmp_path) == 0
    assert _cli(tiny_gray_model, tmp_path, "-o", tmp_path) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "a_x2_mzsr.tif"]


def test_named_pipe_is_skipped_not_opened(tmp_path, tiny_gray_model):
    """In a subprocess with a timeout: opening the pipe would block forever."""
    src = tmp_path / "in"
    src.mkdir()
    tifffile.imwrite(src / "a.tif", _smooth())
    os.mkfifo(src / "b.tif")
    command = [sys.executable, "-m", "napari_mzsr.cli.main", "run", str(src), "-o",
               str(tmp_path / "out"), "--model", str(tiny_gray_model), "--steps", "1",
               "--device", "cpu"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert "b.tif: not a regular file" in done.stderr
    assert (tmp_path / "out" / "a_x2_mzsr.tif").exists()


def test_stale_partial_of_a_killed_writer_is_removed(tmp_path, tiny_gray_model):
    tifffile.imwrite(tmp_path / "a.tif", _smooth())
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    stale = out / f".a_x2_mzsr.tif.{dead}.abc123.partial"
    stale.write_bytes(b"half")
    live = out / f".a_x2_mzsr.tif.{os.getpid()}.xyz.partial"
    live.write_bytes(b"in progress")
    assert _cli(tiny_gray_model, tmp_path / "a.tif", "-o", out) == 0
    assert not stale.exists() and live.exists()


@pytest.mark.parametrize("writer", [atomic_path, atomic_folder])
def test_stale_partial_files_and_folders_are_removed_by_either_writer(tmp_path, writer):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    target = tmp_path / "r.zarr"
    stale_file = tmp_path / f".r.zarr.{dead}.abc.partial"
    stale_file.write_bytes(b"half")
    stale_folder = tmp_path / f".r.zarr.{dead}.def.partial"
    (stale_folder / "0").mkdir(parents=True)
    live = tmp_path / f".r.zarr.{os.getpid()}.xyz.partial"
    live.write_bytes(b"in progress")
    with writer(target) as tmp:
        if writer is atomic_path:
            tmp.write_bytes(b"done")
    assert not stale_file.exists() and not stale_folder.exists() and live.exists()
    assert target.exists()


@pytest.mark.parametrize("problem", ["file", "unwritable"])
def test_bad_output_folder_fails_before_any_work(tmp_path, tiny_gray_model, monkeypatch, problem):
    tifffile.imwrite(tmp_path / "a.tif", _smooth())
    out = tmp_path / "out"
    if problem == "file":
        out.write_bytes(b"not a folder")
    else:
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, m: False if Path(p) == out else real(p, m))
    monkeypatch.setattr(batch, "options_from_args", _never)
    assert _cli(tiny_gray_model, tmp_path / "a.tif", "-o", out) == 2


def _never(*args, **kwargs):
    raise AssertionError("options were built before the inputs and outputs were checked")


def test_unreadable_inputs_are_refused_before_any_work(
    tmp_path, tiny_gray_model, monkeypatch, capsys
):
    (tmp_path / "broken.tif").write_bytes(b"II*\x00 not a tiff")
    (tmp_path / "photo.xyz").write_bytes(b"\xff\xd8\xff")
    monkeypatch.setattr(batch, "options_from_args", _never)
    code = _cli(tiny_gray_model, tmp_path / "broken.tif", tmp_path / "photo.xyz", "-o",
                tmp_path / "out")  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "broken.tif" in err and "photo.xyz" in err


def test_rerun_completes_a_batch_and_succeeds(tmp_path, tiny_gray_model, capsys):
    for name in ("a", "b"):
        tifffile.imwrite(tmp_path / f"{name}.tif", _smooth(seed=ord(name)))
    out = tmp_path / "out"
    assert _cli(tiny_gray_model, tmp_path / "a.tif", "-o", out) == 0
    before = (out / "a_x2_mzsr.tif").read_bytes()
    assert _cli(tiny_gray_model, tmp_path / "a.tif", tmp_path / "b.tif", "-o", out) == 0
    assert "skipped" in capsys.readouterr().err
    assert (out / "a_x2_mzsr.tif").read_bytes() == before and (out / "b_x2_mzsr.tif").exists()


def test_rerun_with_a_bad_flag_is_refused_though_every_output_exists(
    tmp_path, tiny_gray_model, capsys
):
    tifffile.imwrite(tmp_path / "a.tif", _smooth())
    out = tmp_path / "out"
    assert _cli(tiny_gray_model, tmp_path / "a.tif", "-o", out) == 0
    capsys.readouterr()
    # A bad value that only the options' check sees (argparse's types take the others).
    assert _cli(tiny_gray_model, tmp_path / "a.tif", "-o", out, "--back-projection", "-2") == 2
    err = capsys.readouterr().err.strip()
    assert "back_projection" in err and len(err.splitlines()) == 1


def test_sigterm_during_a_write_leaves_nothing_partial(tmp_path, tiny_gray_model, monkeypatch):
    tifffile.imwrite(tmp_path / "a.tif", _smooth())
    source = (tmp_path / "a.tif").read_bytes()
    real_write = batch.write_image

    def killed_while_writing(path, data, meta, **kwargs):
        if Path(path).name.startswith("a"):
            return real_write(path, data, meta, **kwargs)  # the first file is written whole
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"half a file")
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(batch, "write_image", killed_while_writing)
    out = tmp_path / "out"
    tifffile.imwrite(tmp_path / "b.tif", _smooth(seed=3))
    assert _cli(tiny_gray_model, tmp_path / "a.tif", tmp_path / "b.tif", "-o", out) == 130
    assert [p.name for p in out.iterdir()] == ["a_x2_mzsr.tif"]
    assert (tmp_path / "a.tif").read_bytes() == source
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
