"""Checkpoints that resume a run exactly: weights, optimizer, step, every RNG state.

Training draws all its randomness from one numpy ``Generator`` per rank (patches,
augmentations, kernels, scales) plus torch's global generator (weight init); both are
saved, with Python's, so a resumed run continues bit for bit. Files are plain
containers of tensors and numbers, written atomically and read with
``weights_only=True``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_mzsr.io.atomic import atomic_path


def rng_state(data_rng: np.random.Generator) -> dict[str, Any]:
    """This process's RNG states."""
    return {
        "data": data_rng.bit_generator.state,
        "python": random.getstate(),
        "torch": torch.get_rng_state(),
    }


def restore_rng(state: dict[str, Any], data_rng: np.random.Generator) -> None:
    """Inverse of :func:`rng_state`."""
    data_rng.bit_generator.state = state["data"]
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])


def save(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` atomically (temporary file, then rename)."""
    path = Path(path)
    with atomic_path(path, overwrite=True) as tmp:
        torch.save(payload, tmp)
    return path


def load(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save`."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or "stage" not in payload:
        raise ValueError(f"{path} is not a training checkpoint")
    return payload
