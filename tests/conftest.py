from pathlib import Path

import numpy as np
import pytest
from tiny_models import save_tiny_model

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def set5() -> dict[str, np.ndarray]:
    from PIL import Image

    return {p.stem: np.asarray(Image.open(p)) for p in sorted((DATA / "set5").glob("*.png"))}


def _tiny_model(path: Path, channels: int, name: str) -> Path:
    return save_tiny_model(
        path, name, channels=channels, features=16, lr_schedule=[[0, 2e-2], [1, 1e-2]]
    )


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A small freshly initialised 3-channel theta_M file (features=16)."""
    return _tiny_model(tmp_path_factory.mktemp("models") / "tiny.pt", 3, "tiny")


@pytest.fixture(scope="session")
def tiny_gray_model(tmp_path_factory) -> Path:
    """A small freshly initialised 1-channel theta_M file (features=16)."""
    return _tiny_model(tmp_path_factory.mktemp("models") / "tiny-gray.pt", 1, "tiny-gray")


@pytest.fixture
def rgb_image() -> np.ndarray:
    rng = np.random.default_rng(1)
    base = rng.random((8, 8, 3))
    from napari_mzsr import imresize

    return np.clip(imresize(base, 6) * 255, 0, 255).astype(np.uint8)  # 48x48, smooth


@pytest.fixture(scope="module")
def one_thread():
    """Tiny workloads: with the cores shared, extra threads only wait for each other.
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def network_path(request, monkeypatch):
    """Run the network's own result unless a test is marked ``self_check``.

    The suite's tiny models are random: the defaults' self-check rightly finds that they
    never beat bicubic and falls back to it, which would hide the network path that
    every other test is about. The defaults themselves (noise and JPEG matched in the
    son, the self-check and its fallback) are tested where marked (tests/test_self_check.py).
    """
    if request.node.get_closest_marker("self_check"):
        return
    from napari_mzsr.core.self_check import SelfCheck
    from napari_mzsr.pipeline import run

    def network_result(before, after, *, threshold, noise=0.0, jpeg_quality=None):
        return SelfCheck(before, after, "adapted", threshold, noise, jpeg_quality)

    monkeypatch.setattr(run, "choose_output", network_result)
    monkeypatch.setattr(run, "coarser_check", lambda check, gain, *, threshold: check)
    monkeypatch.setattr(run, "matched_noise", lambda *args, **kwargs: None)
    monkeypatch.setattr(run, "matched_jpeg", lambda *args, **kwargs: None)
