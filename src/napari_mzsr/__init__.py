"""napari-mzsr: zero-shot super-resolution (MZSR) for napari and scripts.

The public API is imported lazily so that napari can read the plugin manifest without
importing torch. Layout: ``core`` (the numerics), ``pipeline`` (options, images,
stacks, dask), ``io`` (model and image files), ``plugin`` (napari), ``cli``.
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
    "psnr": "core.metrics",
    "ssim": "core.metrics",
    "Cancelled": "core.adaptation",
    "StepReport": "core.adaptation",
    "IntensityMap": "core.intensity",
    "load_model": "io.model_file",
    "save_model": "io.model_file",
    "ModelInfo": "io.model_file",
    "ModelFileError": "io.model_file",
    "export_bioimageio": "io.bioimageio",
    "AdaptOptions": "pipeline.options",
    "ApplyOptions": "pipeline.options",
    "AdaptedModel": "pipeline.adapted",
    "super_resolve": "pipeline.run",
    "calibrate": "pipeline.calibrate",
    "CalibrateOptions": "pipeline.calibrate",
    "iter_super_resolve": "pipeline.run",
    "iter_adapt": "pipeline.run",
    "super_resolve_stack": "pipeline.stacks",
    "iter_super_resolve_stack": "pipeline.stacks",
    "StackProgress": "pipeline.stacks",
    "super_resolve_dask": "pipeline.lazy",
    "super_resolve_axial": "pipeline.axial",
    "iter_super_resolve_axial": "pipeline.axial",
    "AxialProgress": "pipeline.axial",
    "AxialOptions": "pipeline.axial_options",
    "result_placement": "plugin.geometry",
}

__all__ = [
    "PRESETS",
    "AdaptOptions",
    "AdaptedModel",
    "ApplyOptions",
    "AxialOptions",
    "AxialProgress",
    "CalibrateOptions",
    "Cancelled",
    "IntensityMap",
    "KernelEstimate",
    "ModelFileError",
    "ModelInfo",
    "StackProgress",
    "StepReport",
    "__version__",
    "calibrate",
    "degrade",
    "estimate_kernel",
    "export_bioimageio",
    "gaussian_kernel",
    "imresize",
    "iter_adapt",
    "iter_super_resolve",
    "iter_super_resolve_axial",
    "iter_super_resolve_stack",
    "load_kernel",
    "load_model",
    "preset_kernel",
    "psnr",
    "result_placement",
    "save_model",
    "ssim",
    "super_resolve",
    "super_resolve_axial",
    "super_resolve_dask",
    "super_resolve_stack",
]

if TYPE_CHECKING:
    from .core.adaptation import Cancelled, StepReport
    from .core.degradation import degrade
    from .core.intensity import IntensityMap
    from .core.kernel_estimation import KernelEstimate, estimate_kernel
    from .core.kernels import PRESETS, gaussian_kernel, load_kernel, preset_kernel
    from .core.metrics import psnr, ssim
    from .core.resize import imresize
    from .io.bioimageio import export_bioimageio
    from .io.model_file import ModelFileError, ModelInfo, load_model, save_model
    from .pipeline.adapted import AdaptedModel
    from .pipeline.axial import AxialProgress, iter_super_resolve_axial, super_resolve_axial
    from .pipeline.axial_options import AxialOptions
    from .pipeline.calibrate import CalibrateOptions, calibrate
    from .pipeline.lazy import super_resolve_dask
    from .pipeline.options import AdaptOptions, ApplyOptions
    from .pipeline.run import iter_adapt, iter_super_resolve, super_resolve
    from .pipeline.stacks import StackProgress, iter_super_resolve_stack, super_resolve_stack
    from .plugin.geometry import result_placement


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
