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
    adaptation_layers: Sequence[int] = (),
    experts_std: float = 0.05,
) -> Path:
    """Save an 8-layer MZSR net of ``features`` filters, seeded with 0, as a theta_M file;
    with ``adaptation_layers`` the scale-aware network (its experts made non-zero, so
    that the factors matter)."""
    import torch

    from napari_mzsr.core.network import MZSRNet
    from napari_mzsr.core.scale_aware import ScaleAwareNet
    from napari_mzsr.io.model_file import ModelInfo, save_model

    generator = torch.Generator().manual_seed(0)
    schedule = [list(point) for point in lr_schedule]
    if adaptation_layers:
        net = ScaleAwareNet(
            channels, features, adaptation_layers=adaptation_layers, generator=generator
        )
        with torch.no_grad():
            for name_, value in net.named_parameters():
                if name_.endswith("experts"):
                    value.normal_(0, experts_std, generator=generator)
        info = ModelInfo(
            name,
            list(scales),
            degradation,
            channels,
            schedule,
            features=features,
            architecture="scale-aware",
            adaptation_layers=list(adaptation_layers),
        )
        return save_model(path, net, info)
    net = MZSRNet(channels, features=features, generator=generator)
    info = ModelInfo(name, list(scales), degradation, channels, schedule, features=features)
    return save_model(path, net, info)
