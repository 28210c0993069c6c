"""What the GUI test modules share: when they can run, a tiny theta_M file, clicking Run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TIMEOUT_MS = 60_000


def require_gui() -> None:
    """Skip the calling test module unless napari, pytest-qt and an X display are there."""
    pytest.importorskip("napari")
    pytest.importorskip("pytestqt")
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        pytest.skip("needs an X display (run under xvfb-run -a)", allow_module_level=True)


def save_tiny_model(path: Path, name: str, degradation: str) -> Path:
    """A freshly initialised 3-channel x2 theta_M file with 8 features: fast in a GUI test."""
    import torch

    from napari_mzsr.model_file import ModelInfo, save_model
    from napari_mzsr.network import MZSRNet

    net = MZSRNet(3, features=8)
    net.reset_parameters(torch.Generator().manual_seed(0))
    return save_model(path, net, ModelInfo(name, [2.0], degradation, 3, features=8))


def click_run(qtbot, widget) -> None:
    """Click the widget's Run button and wait until its worker has finished."""
    widget._run_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
