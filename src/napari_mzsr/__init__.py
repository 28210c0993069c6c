"""napari-mzsr: zero-shot super-resolution (MZSR) for napari and scripts.

The public API is imported lazily so that napari can read the plugin manifest without
importing torch.
"""

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_API = {
    "gaussian_kernel": "core.kernels",
    "load_kernel": "core.kernels",
    "preset_kernel": "core.kernels",
    "PRESETS": "core.kernels",
    "estimate_kernel": "core.kernel_estimation",
    "KernelEstimate": "core.kernel_estimation",
    "imresize": "core.resize",
    "degrade": "core.degradation",
    "load_model": "io.model_file",
    "save_model": "io.model_file",
    "ModelInfo": "io.model_file",
    "ModelFileError": "io.model_file",
    "super_resolve": "pipeline.run",
    "iter_super_resolve": "pipeline.run",
    "iter_adapt": "pipeline.run",
    "AdaptedModel": "pipeline.run",
    "super_resolve_dask": "pipeline.lazy",
    "Cancelled": "core.adaptation",
    "psnr": "core.metrics",
    "ssim": "core.metrics",
}

__all__ = [
    "PRESETS",
    "AdaptedModel",
    "Cancelled",
    "KernelEstimate",
    "ModelFileError",
    "ModelInfo",
    "__version__",
    "degrade",
    "estimate_kernel",
    "gaussian_kernel",
    "imresize",
    "iter_adapt",
    "iter_super_resolve",
    "load_kernel",
    "load_model",
    "preset_kernel",
    "psnr",
    "save_model",
    "ssim",
    "super_resolve",
    "super_resolve_dask",
]

if TYPE_CHECKING:
    from .core.adaptation import Cancelled
    from .core.degradation import degrade
    from .core.kernel_estimation import KernelEstimate, estimate_kernel
    from .core.kernels import PRESETS, gaussian_kernel, load_kernel, preset_kernel
    from .core.metrics import psnr, ssim
    from .core.resize import imresize
    from .io.model_file import ModelFileError, ModelInfo, load_model, save_model
    from .pipeline.lazy import super_resolve_dask
    from .pipeline.run import AdaptedModel, iter_adapt, iter_super_resolve, super_resolve


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
