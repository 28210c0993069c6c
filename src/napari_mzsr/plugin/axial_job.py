"""The widget's "isotropic Z" mode: from its values to an axial run, and where the
result layer goes.

For an image layer with three spatial axes (Z, Y, X) whose ``scale`` is coarser along
Z than along Y and X, :func:`layer_z_factor` reads the factor from the scale;
:func:`make_axial_job` checks the values once into
:class:`~napari_mzsr.AxialOptions` (one task per layer, each channel layer on its
own); :func:`work_axial` runs :func:`~napari_mzsr.iter_super_resolve_axial` in a
``napari.qt.threading`` worker, reporting :class:`~napari_mzsr.plugin.jobs.JobProgress`
in adaptation steps and blocks; :func:`axial_layer` gives the result's data and layer
arguments, with an isotropic scale, placed to overlay the input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.qt.threading import thread_worker

from .geometry import SEPARATOR, layer_look
from .jobs import JobProgress, plain_message

if TYPE_CHECKING:
    from napari.layers import Image

    from ..io.model_file import MZSRModel
    from ..pipeline.axial_options import AxialOptions


def layer_z_factor(layer: Image | None) -> tuple[float | None, str]:
    """The factor of ``layer`` for isotropic Z (its Z scale over its pixel size) and a
    line for the widget: the factor and where it came from, or why there is none."""
    from ..core.axial import z_factor_from_scale
    from ..pipeline.axial_options import check_axial_factor

    if layer is None:
        return None, ""
    if layer.rgb or layer.multiscale or layer.data.ndim != 3:
        return None, "isotropic Z needs a single-resolution grey layer with 3 axes (Z, Y, X)"
    scale = tuple(float(s) for s in layer.scale)
    shown = ", ".join(f"{s:g}" for s in scale)
    try:
        factor = z_factor_from_scale(scale)
    except ValueError as exc:
        return None, f"isotropic Z: {exc}"
    if factor <= 1 + 1e-6:
        return None, (
            f"isotropic Z: the layer's scale ({shown}) is not coarser along Z; set the "
            "layer's scale to the voxel size (Z step, pixel size, pixel size)"
        )
    try:
        factor = check_axial_factor(factor)
    except ValueError:
        return None, f"isotropic Z: the layer's scale ({shown}) gives x{factor:.3g}, not 1-10"
    return factor, f"Z x{factor:g} from the layer scale ({shown})"


@dataclass
class AxialValues:
    """What the widget's controls hold for an isotropic Z run (no checks yet).

    ``sigma`` None means "estimate the axial kernel from the stack"; ``z_factor`` None
    "from each layer's scale" (:func:`layer_z_factor`).
    """

    layers: list[Image]
    model: MZSRModel | None
    sigma: float | None
    steps: int
    device: str
    seed: int
    normalization: str
    float_output: bool
    replace: bool
    z_factor: float | None = None


@dataclass
class AxialTask:
    """One layer of an axial job: its data, its factor and its checked options."""

    layer: Image
    data: Any
    z_factor: float
    options: AxialOptions


@dataclass
class AxialJob:
    """A checked isotropic Z run, captured on the main thread."""

    tasks: list[AxialTask]
    replace: bool
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def layers(self) -> list[Image]:
        return [task.layer for task in self.tasks]


@dataclass
class AxialOutcome:
    """What the worker returns: ``(task, data, sigma used)`` per task, or an error."""

    results: list[tuple[AxialTask, np.ndarray, float | None]] = field(default_factory=list)
    error: str | None = None


def make_axial_job(values: AxialValues) -> AxialJob:
    """Check the values once and return the job.

    Raises
    ------
    ValueError
        A layer without an axial factor, or a bad value (the message names it).
    """
    from ..core.kernels import ESTIMATE
    from ..pipeline.axial_options import DEFAULT_MODEL, AxialOptions, check_axial_factor

    options = AxialOptions(
        kernel=ESTIMATE if values.sigma is None else values.sigma,
        steps=values.steps,
        model=values.model if values.model is not None else DEFAULT_MODEL,
        device=values.device,
        seed=values.seed,
        normalization=values.normalization,
        output_dtype=np.float32 if values.float_output else None,
    )
    typed = None if values.z_factor is None else check_axial_factor(values.z_factor)
    tasks = []
    for layer in values.layers:
        factor, why = layer_z_factor(layer) if typed is None else (typed, "")
        if factor is None:
            raise ValueError(f"layer {layer.name!r}: {why}; or type it under 'Z factor'")
        tasks.append(AxialTask(layer, layer.data, factor, options))
    settings = {
        "mode": "isotropic Z",
        "model": options.model.info.name,
        "axial_kernel": options.kernel_text(),
        "steps": options.steps,
        "intensities": values.normalization,
        "seed": options.seed,
        "device": values.device,
    }
    return AxialJob(tasks, values.replace, settings)


@thread_worker(start_thread=False)
def work_axial(job: AxialJob):
    """The worker's generator: yields status lines (str) and :class:`JobProgress`
    (adaptation steps, then blocks), returns an :class:`AxialOutcome`. Errors come
    back in the outcome, as in :func:`~napari_mzsr.plugin.jobs.work`."""
    try:
        results = yield from _run(job)
    except Exception as exc:
        return AxialOutcome(error=plain_message(exc))
    return AxialOutcome(results=results)


def _run(job: AxialJob):
    from ..pipeline.axial import iter_super_resolve_axial, work_units

    units = [work_units(np.shape(t.data), t.z_factor, t.options) for t in job.tasks]
    steps_total = sum(u[0] for u in units)
    blocks_total = sum(u[1] for u in units)
    steps_before = blocks_before = 0
    results = []
    for number, (task, (steps, blocks)) in enumerate(zip(job.tasks, units, strict=True)):
        if task.options.estimate:
            yield f"{task.layer.name}: estimating the axial kernel..."
        run = iter_super_resolve_axial(task.data, task.options, z_factor=task.z_factor)
        sigma = task.options.sigma
        try:
            while True:
                try:
                    p = next(run)
                except StopIteration as done:
                    results.append((task, done.value, sigma))
                    break
                sigma = p.sigma if p.sigma is not None else sigma
                adapted = p.stage * p.steps + p.step
                yield JobProgress(
                    layer=task.layer.name, layer_number=number + 1, n_layers=len(job.tasks),
                    phase=p.phase, step=adapted, steps=p.stages * p.steps,
                    slice_done=p.block, n_slices=p.blocks,
                    steps_done=steps_before + adapted, steps_total=steps_total,
                    slices_done=blocks_before + p.block, slices_total=blocks_total,
                    loss=p.loss, unit="block",
                )  # fmt: skip
        finally:
            run.close()  # a cancel must stop the run at once
        steps_before += steps
        blocks_before += blocks
    return results


def axial_geometry(
    scale: Any, translate: Any, z_factor: float, linear: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Scale and translate of the result of a (Z, Y, X) layer, so that it overlays the
    input: Z step divided by the factor, the first slice where
    :func:`~napari_mzsr.core.axial.axial_positions` puts it, the offset turned by the
    layer's rotation and shear (``linear``)."""
    from ..core.axial import output_voxel_geometry

    scale = np.asarray(scale, dtype=np.float64)
    translate = np.asarray(translate, dtype=np.float64)
    new_scale, moved = output_voxel_geometry(scale, translate, z_factor)
    offset = np.asarray(moved) - translate
    if linear is not None:
        offset = np.asarray(linear, dtype=np.float64) @ offset
    return np.asarray(new_scale), translate + offset


def axial_layer(
    job: AxialJob, task: AxialTask, data: np.ndarray, sigma: float | None, linear: np.ndarray
) -> dict[str, Any]:
    """Arguments of the result layer (``napari.layers.Image(data, **kwargs)``): the
    input's look, an isotropic scale placed over it, the run in ``metadata["mzsr"]``."""
    src = task.layer
    scale, translate = axial_geometry(src.scale, src.translate, task.z_factor, linear)
    settings = {**job.settings, "z_factor": task.z_factor}
    if sigma is not None:
        settings["axial_sigma"] = sigma
    return {
        "name": f"Z x{task.z_factor:g} isotropic{SEPARATOR}{src.name}",
        **layer_look(src, scale=scale, translate=translate, settings=settings),
    }
