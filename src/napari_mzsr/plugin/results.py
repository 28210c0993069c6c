"""A 2-D run's result as a napari layer: placed to overlay its input exactly, named by
what was done, with every setting, the kernel estimate, the self-check and the CPU
threads in its metadata (``layer.metadata["mzsr"]``)."""

from __future__ import annotations

from typing import Any

from napari.layers import Image
from napari.utils.transforms import Affine

from ..pipeline.images import split_axes
from .geometry import layer_look, output_name, output_scale_translate
from .jobs import Job, Task


def result_layer(job: Job, task: Task, result: Any) -> Image:
    """The layer of ``task``'s result (a :class:`~napari_mzsr.pipeline.stacks.StackResult`)
    in ``job``, not yet added to the viewer."""
    src = task.layer
    data = result.data
    scale = task.options.scale
    linear = Affine(rotate=src.rotate, shear=src.shear, ndim=src.ndim).linear_matrix
    slice_shape, _ = split_axes(src.data.shape, src.rgb)
    if task.origin is not None:  # a preview of one crop: at its place in the stack
        data = data.reshape((1,) * len(slice_shape) + data.shape)
    new_scale, translate = output_scale_translate(
        src.scale,
        src.translate,
        scale,
        2,
        linear=linear,
        slice_index=task.index if task.current_only else None,
        degradation=task.options.model.info.degradation,
        origin=task.origin,
    )
    settings = {**job.settings, "model": task.options.model.info.name}
    if task.has_slices:
        settings["stack_mode"] = (
            "current slice only" if task.current_only else ("once" if job.shared else job.mode)
        )
        settings["slice"] = list(task.index)
    estimate = result.kernel_estimate
    if estimate is not None:
        settings["kernel"] = f"estimated: {estimate.describe()}"
        settings["kernel_estimate"] = {
            "l1": estimate.l1,
            "l2": estimate.l2,
            "theta": estimate.theta,
            "covariance": estimate.covariance.tolist(),
            "fit_residual": estimate.residual,
        }
        if task.has_slices:
            settings["kernel_estimate"]["slice"] = list(task.index)
    settings["intensity_map"] = result.intensity.describe()
    checks = [c.as_dict() for c in result.self_checks if c is not None]
    if checks:
        settings["self_check"] = checks
    if result.threads:
        settings["cpu_threads"] = dict(result.threads)
    if settings.get("back_projection") == "auto":
        settings["back_projection"] = result.back_projection
    look = layer_look(src, scale=new_scale, translate=translate, settings=settings)
    return Image(data, name=output_name(src.name, scale, details=job.details), **look)
