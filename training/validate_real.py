"""Validation on real degradations, run through the package's default path.

Each held-out HR crop is degraded at each validation factor by one chain drawn, with a
fixed seed, from the recipe's real-degradation distribution
(:mod:`training.real_degradations`), saved as 8-bit like a user's file, and
super-resolved by :func:`napari_mzsr.super_resolve` with its defaults (kernel
``"auto"``: area son, the image's noise and JPEG matched) after 0, 1 and 10 steps,
without the self-check, so that what is scored is the network. A recipe selects this
set with ``validation.set = "real"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from napari_mzsr.core.metrics import psnr
from napari_mzsr.core.resize import imresize, parse_scale
from napari_mzsr.io.model_file import ModelInfo, MZSRModel
from napari_mzsr.pipeline.run import super_resolve

from .real_degradations import degrade_hr, sample_degradation

# Seeds of the validation chains: apart from any training run's (recipes use small seeds).
SEED = 90_000


@dataclass
class Item:
    """One validation image: 8-bit LR, float HR (H, W, C) and how it was made."""

    lr: np.ndarray
    hr: np.ndarray
    scale: tuple[float, float]
    label: str
    bicubic: float  # PSNR of bicubic interpolation, the level to beat


def score(out: np.ndarray, hr: np.ndarray, scale: tuple[float, float]) -> float:
    """PSNR (dB) of ``out`` against ``hr``, both in [0, 1], on their common size, ``ceil(s)``
    pixels shaved."""
    out = out.reshape(out.shape[0], out.shape[1], -1)
    h, w = min(out.shape[0], hr.shape[0]), min(out.shape[1], hr.shape[1])
    ref, out = hr[:h, :w], out[:h, :w]
    if ref.shape[-1] == 1:
        ref, out = ref[..., 0], out[..., 0]
    return psnr(out, ref, shave=int(np.ceil(max(scale))))


def build(crops: list[np.ndarray], recipe: dict[str, Any]) -> list[Item]:
    """One item per crop and validation factor pair (crops (H, W, C) float32 in [0, 1])."""
    items = []
    for i, hr in enumerate(crops):
        hr_t = torch.from_numpy(hr.transpose(2, 0, 1).copy())[None]
        for j, raw in enumerate(recipe["validation"]["scales"]):
            scale = parse_scale(raw)
            rng = np.random.default_rng([SEED, i, j])
            chain = sample_degradation(rng, scale, recipe["real_tasks"])
            generator = torch.Generator().manual_seed(SEED + 100 * i + j)
            lr_t = degrade_hr(hr_t.double(), chain, scale, generator)
            lr = np.round(lr_t[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
            lr = lr[..., 0] if lr.shape[-1] == 1 else lr
            up = imresize(lr.astype(np.float64) / 255, scale, output_shape=hr.shape[:2])
            label = f"{chain.describe()} x{scale[0]:g}x{scale[1]:g}"
            items.append(Item(lr, hr, scale, label, score(np.clip(up, 0, 1), hr, scale)))
    return items


def evaluate(
    net: torch.nn.Module,
    items: list[Item],
    recipe: dict[str, Any],
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    info: ModelInfo | None = None,
) -> dict[str, float]:
    """Mean PSNR (dB, RGB or grey, ``ceil(s)`` pixels shaved) after each step count of
    ``recipe["validation"]["steps"]``, keyed by the count as a string, and the mean gain
    over bicubic after the most steps (``"gain"``).

    ``net`` is not modified; ``info`` describes it (default: built from ``recipe``).
    """
    from .scale_tasks import recipe_model_info

    info = info or recipe_model_info(recipe)
    model = MZSRModel(info, {k: v.detach().cpu().float() for k, v in net.state_dict().items()})
    counts = sorted(recipe["validation"]["steps"])
    options = {
        "device": device,
        "threads": torch.get_num_threads(),
        "precision": "float32" if autocast_dtype is None else "auto",
    }
    per_count = {count: scores(model, items, count, **options) for count in counts}
    n = max(len(items), 1)
    result = {str(c): round(sum(per_count[c]) / n, 4) for c in counts}
    last = per_count[counts[-1]]
    result["gain"] = round(
        sum(v - item.bicubic for v, item in zip(last, items, strict=True)) / n, 4
    )
    return result


def scores(model: MZSRModel, items: list[Item], steps: int, **options: Any) -> list[float]:
    """The PSNR of each item after ``steps`` steps of :func:`napari_mzsr.super_resolve`
    with ``model``, the self-check off, other ``options`` passed on (defaults otherwise)."""
    values = []
    for item in items:
        out = super_resolve(
            item.lr, scale=item.scale, steps=steps, model=model, self_check=False, **options
        )
        values.append(score(out.astype(np.float64) / 255, item.hr, item.scale))
    return values
