"""Meta-transfer learning on real degradations, with the son the package makes at run time.

A task is one image: an HR crop degraded by a chain drawn from
:mod:`training.real_degradations` (blur of a real optic, direct/area/bicubic
subsampling at a factor pair, Poisson-Gaussian noise, 8-bit levels, JPEG). The inner
loop then does what :func:`napari_mzsr.super_resolve` does with its defaults on that LR
image: it adapts on the LR image's own son, made with the default kernel (``"auto"``:
the ``"photo"`` preset, area averaging), the noise :func:`napari_mzsr.pipeline.auto.
son_noise` estimates and the JPEG quality :func:`napari_mzsr.core.jpeg.jpeg_quality_of`
reads from the 8-bit image. The query loss compares the adapted network's output for the
LR image with the HR crop. So the outer loop learns an initial point for the adaptation
users run, on the images they have; MZSR's own tasks instead adapt on external HR
patches degraded with the true kernel, which no run ever sees.

Network, start, optimizer, checkpoints and distributed tasks as
:mod:`training.scale_tasks` (scale-aware network from a scale-aware theta_M such as
the shipped ``arbitrary``). Run from the repository root::

    OMP_NUM_THREADS=1 python -m training.real_tasks --recipe training/recipes/real.toml \
        --init arbitrary --out runs/real
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np
import torch

from napari_mzsr.core.adaptation import make_son
from napari_mzsr.core.jpeg import jpeg_quality_of
from napari_mzsr.core.kernels import AUTO, PRESETS, as_kernel
from napari_mzsr.core.resize import imresize_tensor
from napari_mzsr.core.scale_aware import ScaleAwareNet
from napari_mzsr.pipeline.auto import son_noise

from . import meta, scale_tasks
from .real_degradations import degrade_hr, sample_degradation
from .recipe import RecipeError
from .session import Session

# How the package makes a son by default (kernel "auto" = the "photo" preset).
SON_KERNEL = as_kernel(AUTO)
SON_SUBSAMPLING = PRESETS["photo"].degradation


def runtime_son(
    lr: torch.Tensor, scale: scale_tasks.Pair, generator: torch.Generator
) -> torch.Tensor:
    """The son of a (1, C, h, w) LR image in [0, 1], upsampled to its size, as a default
    run makes it: default kernel and subsampling, the image's noise and JPEG matched."""
    hwc = lr[0].permute(1, 2, 0).cpu().numpy().astype(np.float64)
    rgb = hwc.shape[-1] == 3
    pixels = hwc if rgb else hwc[..., 0]
    noise = son_noise(pixels, SON_KERNEL, scale, SON_SUBSAMPLING, rgb=rgb)
    quality = jpeg_quality_of(np.round(pixels * 255).astype(np.uint8))
    kernel = torch.from_numpy(SON_KERNEL).to(lr)
    return make_son(
        lr, kernel, scale, SON_SUBSAMPLING, noise=noise, generator=generator, jpeg_quality=quality
    )


def _crops(
    rng: np.random.Generator, count: int, size: int, *pairs: torch.Tensor
) -> list[torch.Tensor]:
    """``count`` random ``size`` x ``size`` windows at the same place of every tensor in
    ``pairs`` (same shape), stacked per tensor."""
    h, w = pairs[0].shape[-2:]
    corners = [
        (int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))) for _ in range(count)
    ]
    return [torch.cat([t[..., y : y + size, x : x + size] for y, x in corners]) for t in pairs]


def task_loss(
    session: Session, net: torch.nn.Module, weights: torch.Tensor
) -> tuple[torch.Tensor, float, scale_tasks.Pair]:
    """Draw one task (pair, degradation chain, image) and return its weighted
    multi-step query loss, the query loss after the last inner step and its pair."""
    cfg, recipe, rng = session.settings, session.recipe, session.rng
    real = recipe["real_tasks"]
    pairs = scale_tasks.task_pairs(recipe)
    pair = pairs[int(rng.integers(len(pairs)))]
    chain = sample_degradation(rng, pair, real)
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    # LR side: the image a run sees, as large as the HR side limit allows at this factor.
    side = min(real["lr_side"], math.floor(real["max_hr_side"] / max(pair)))
    hr = torch.from_numpy(session.bank.sample(rng, 1, math.ceil(side * max(pair))))
    hr = hr[..., : math.ceil(side * pair[0]), : math.ceil(side * pair[1])]
    lr = degrade_hr(hr.double(), chain, pair, generator)
    son_up = runtime_son(lr, pair, generator)
    lr_up = imresize_tensor(lr, pair, output_shape=hr.shape[-2:]).clamp(0, 1)
    p = cfg["patch"]
    support_x, support_y = _crops(rng, cfg["support"], min(p, *lr.shape[-2:]), son_up, lr)
    query_x, query_y = _crops(rng, cfg["query"], p, lr_up, hr)
    task = meta.Task(
        session.prepare(support_x),
        support_y.to(session.device),
        session.prepare(query_x),
        query_y.to(session.device),
    )
    extra = {"scale": pair} if isinstance(net, ScaleAwareNet) else None
    total, last = meta.task_loss(net, task, weights, cfg, session.autocast, extra)
    return total, last.item(), pair


def check_recipe(recipe: dict[str, Any]) -> None:
    """The real-task keys (on top of :func:`training.scale_tasks.check_recipe`)."""
    scale_tasks.check_recipe(recipe)
    real = recipe["real_tasks"]
    if min(real["lr_side"], real["max_hr_side"] // 4) < recipe["meta"]["patch"] // 2:
        raise RecipeError("real_tasks.lr_side and max_hr_side leave too small an image")


def main(argv: list[str] | None = None) -> int:
    return scale_tasks.main(
        argv, task=task_loss, check=check_recipe, prog="python -m training.real_tasks"
    )


if __name__ == "__main__":
    sys.exit(main())
