"""napari-mzsr: zero-shot super-resolution (MZSR) for napari and scripts.

The public API is imported lazily so that napari can read the plugin manifest without
importing torch.
"""

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_API = {
    "gaussian_kernel": "kernels",
    "load_kernel": "kernels",
    "preset_kernel": "kernels",
    "PRESETS": "kernels",
    "estimate_kernel": "kernel_estimation",
    "KernelEstimate": "kernel_estimation",
    "imresize": "resize",
    "degrade": "degradation",
    "load_model": "model_file",
    "save_model": "model_file",
    "ModelInfo": "model_file",
    "ModelFileError": "model_file",
    "super_resolve": "api",
    "iter_super_resolve": "api",
    "iter_adapt": "api",
    "AdaptedModel": "api",
    "super_resolve_dask": "dask_arrays",
    "Cancelled": "meta_test",
    "psnr": "metrics",
    "ssim": "metrics",
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
    from .api import AdaptedModel, iter_adapt, iter_super_resolve, super_resolve
    from .dask_arrays import super_resolve_dask
    from .degradation import degrade
    from .kernel_estimation import KernelEstimate, estimate_kernel
    from .kernels import PRESETS, gaussian_kernel, load_kernel, preset_kernel
    from .meta_test import Cancelled
    from .metrics import psnr, ssim
    from .model_file import ModelFileError, ModelInfo, load_model, save_model
    from .resize import imresize


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
