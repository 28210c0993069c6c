"""The rows of the benchmark tables: a registry of super-resolution methods.

A method maps a uint8 LR image and its :class:`~benchmarks.lr_inputs.Setting` to a uint8
SR image of the HR size, plus a dict of facts to report (steps, iterations, ...). New rows
(few-shot, other estimators) plug in with :func:`register`::

    @register("MZSR(10)+KernelGAN")
    def mzsr_estimated(lr, setting, ctx): ...

Names of the form ``MZSR(n)`` are created on demand for any ``n``. ``MZSR(10)+est`` uses
the kernel estimated from the LR image; ``+SE`` adds the geometric self-ensemble (mean over
the kernel's symmetries) and ``+BP`` 10 iterations of back-projection with the kernel.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from napari_mzsr.core.kernels import ESTIMATE
from napari_mzsr.core.resize import imresize
from napari_mzsr.io.model_file import MZSRModel
from napari_mzsr.pipeline.run import super_resolve

from .lr_inputs import Setting
from .zssr import ZSSRConfig, zssr_super_resolve


class MethodUnavailable(RuntimeError):
    """A method cannot run for a setting (e.g. its theta_M file is missing)."""


@dataclass
class RunContext:
    """What methods share during one benchmark run.

    Attributes
    ----------
    device : torch.device
    models : dict
        theta_M by model name (``"direct-x2"``, ...); a missing name makes the MZSR rows
        of its settings unavailable.
    zssr : ZSSRConfig
        Configuration of the ZSSR baseline (``max_iters`` is ``--zssr-iters``).
    precision : str
        Meta-test precision (``"float32"`` for the paper's numbers).
    seed : int
    """

    device: torch.device
    models: dict[str, MZSRModel] = field(default_factory=dict)
    zssr: ZSSRConfig = field(default_factory=ZSSRConfig)
    precision: str = "float32"
    seed: int = 0


Method = Callable[[np.ndarray, Setting, RunContext], tuple[np.ndarray, dict[str, Any]]]

METHODS: dict[str, Method] = {}


def register(name: str) -> Callable[[Method], Method]:
    """Decorator adding a method to :data:`METHODS` under ``name``."""

    def add(fn: Method) -> Method:
        METHODS[name] = fn
        return fn

    return add


def get_method(name: str) -> Method:
    """The registered method ``name``, or MZSR with ``n`` steps for ``"MZSR(n)"``."""
    if name in METHODS:
        return METHODS[name]
    match = re.fullmatch(r"MZSR\((\d+)\)", name)
    if match:
        return mzsr_method(int(match.group(1)))
    raise ValueError(f"unknown method {name!r}; registered: {', '.join(METHODS)}")


@register("Bicubic")
def bicubic(lr: np.ndarray, setting: Setting, ctx: RunContext) -> tuple[np.ndarray, dict]:
    """MATLAB-bicubic interpolation."""
    up = imresize(lr.astype(np.float64) / 255.0, setting.scale)
    return np.rint(np.clip(up, 0, 1) * 255.0).astype(np.uint8), {}


def mzsr_method(steps: int, estimate: bool = False, **refinements: Any) -> Method:
    """MZSR with ``steps`` adaptation steps and the setting's theta_M, with the true
    kernel or, with ``estimate``, the kernel estimated from the LR image; ``refinements``
    (``ensemble``, ``back_projection``) go to :func:`~napari_mzsr.pipeline.run.super_resolve`."""

    def run(lr: np.ndarray, setting: Setting, ctx: RunContext) -> tuple[np.ndarray, dict]:
        model = ctx.models.get(setting.model)
        if model is None:
            raise MethodUnavailable(f"no theta_M {setting.model!r}")
        sr = super_resolve(
            lr,
            scale=setting.scale,
            kernel=ESTIMATE if estimate else setting.kernel,
            steps=steps,
            model=model,
            device=ctx.device,
            seed=ctx.seed,
            precision=ctx.precision,
            output_dtype=np.uint8,
            **refinements,
        )
        return sr, {"steps": steps, "model": model.info.name, **refinements}

    return run


for _steps in (0, 1, 10):
    register(f"MZSR({_steps})")(mzsr_method(_steps))
register("MZSR(10)+est")(mzsr_method(10, estimate=True))
register("MZSR(10)+SE")(mzsr_method(10, ensemble="mean"))
register("MZSR(10)+BP")(mzsr_method(10, back_projection=10))
register("MZSR(10)+SE+BP")(mzsr_method(10, ensemble="mean", back_projection=10))
register("MZSR(10)+est+SE+BP")(mzsr_method(10, True, ensemble="mean", back_projection=10))


@register("ZSSR")
def zssr(lr: np.ndarray, setting: Setting, ctx: RunContext) -> tuple[np.ndarray, dict]:
    """The from-scratch ZSSR baseline with the true kernel."""
    sr, stats = zssr_super_resolve(
        lr, setting.kernel, setting.scale, setting.method, ctx.zssr, ctx.device
    )
    return sr, asdict(stats)
