"""Tiny freshly initialised theta_M files for the tests: fast, and the same weights each time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def save_tiny_model(
    path: Path,
    name: str,
    *,
    channels: int = 3,
    features: int = 8,
    scales: Sequence[float] = (2.0,),
    degradation: str = "direct",
    lr_schedule: Sequence[Sequence[float]] = ((0, 1e-2),),
) -> Path:
    """Save an 8-layer MZSR net of ``features`` filters, seeded with 0, as a theta_M file."""
    import torch

    from napari_mzsr.core.network import MZSRNet
    from napari_mzsr.io.model_file import ModelInfo, save_model

    net = MZSRNet(channels, features=features, generator=torch.Generator().manual_seed(0))
    schedule = [list(point) for point in lr_schedule]
    info = ModelInfo(name, list(scales), degradation, channels, schedule, features=features)
    return save_model(path, net, info)
