"""Validation of an initial point: PSNR after 0, 1 and 10 meta-test adaptation steps.

What matters for theta_M is the quality after a few adaptation steps, not the loss
at step 0, so every validation item (image x fixed kernel x scale) is adapted with
the meta-test algorithm of the engine, exactly as a user's image would be.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from napari_mzsr.core.adaptation import adapt, infer
from napari_mzsr.core.degradation import degrade_tensor
from napari_mzsr.core.kernels import gaussian_kernel
from napari_mzsr.core.metrics import psnr
from napari_mzsr.core.resize import parse_scale
from napari_mzsr.core.scale_aware import bind_scale
from napari_mzsr.core.schedules import rate_at


@dataclass
class Item:
    """One validation case: an LR input, its HR ground truth and how it was made."""

    lr: torch.Tensor  # (1, C, h, w), quantised to 8 bit like the official test inputs
    hr: np.ndarray  # (H, W, C) float32
    kernel: torch.Tensor
    scale: tuple[float, float]  # (sy, sx); recipes may give one factor or a pair


def build(crops: list[np.ndarray], recipe: dict) -> list[Item]:
    """Degrade every HR crop with every validation kernel at every validation scale
    (``[0, 0, 0]``: no blur)."""
    val = recipe["validation"]
    items = []
    for hr in crops:
        hr_t = torch.from_numpy(hr.transpose(2, 0, 1).copy())[None]
        for l1, l2, theta in val["kernels"]:
            if l1 == 0:
                kernel = torch.ones(1, 1, dtype=torch.float64)
            else:
                kernel = torch.from_numpy(gaussian_kernel(l1, l2, theta, size=val["kernel_size"]))
            for scale in val["scales"]:
                lr = degrade_tensor(hr_t.double(), kernel, scale, recipe["degradation"])
                lr = torch.round(lr.clamp(0, 1) * 255) / 255
                items.append(Item(lr.float(), hr, kernel.float(), parse_scale(scale)))
    return items


def _psnr(sr: torch.Tensor, hr: np.ndarray, scale: tuple[float, float]) -> float:
    out = sr[0].permute(1, 2, 0).cpu().numpy()
    h, w = min(out.shape[0], hr.shape[0]), min(out.shape[1], hr.shape[1])
    out, ref = out[:h, :w], hr[:h, :w]
    if out.shape[-1] == 1:
        out, ref = out[..., 0], ref[..., 0]
    return psnr(out, ref, shave=int(max(scale)))


def evaluate(
    net: torch.nn.Module,
    items: list[Item],
    recipe: dict,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
) -> dict[str, float]:
    """Mean PSNR (dB, paper protocol) over ``items`` after each number of adaptation
    steps in ``recipe["validation"]["steps"]``, keyed by that number as a string.

    ``net`` is not modified: each item adapts a fresh copy.
    """
    counts = sorted(recipe["validation"]["steps"])
    schedule = recipe["meta_test"]["lr_schedule"]
    totals = dict.fromkeys(counts, 0.0)
    for item in items:
        adapted = bind_scale(copy.deepcopy(net).to(device), item.scale)
        lr_image = item.lr.to(device)
        done = 0
        for count in counts:
            for _ in adapt(
                adapted,
                lambda step, image=lr_image: image,
                item.kernel.to(device),
                item.scale,
                steps=count - done,
                learning_rate=lambda step, done=done: rate_at(schedule, done + step),
                degradation=recipe["degradation"],
                autocast_dtype=autocast_dtype,
            ):
                pass
            done = count
            totals[count] += _psnr(
                infer(adapted, lr_image, item.scale, autocast_dtype), item.hr, item.scale
            )
    return {str(c): round(totals[c] / max(len(items), 1), 4) for c in counts}
