"""From the widget's values to a run: checked options, and the worker that runs them.

The widget (:mod:`napari_mzsr.plugin.widget`) only gathers values; :func:`make_job`
turns them into :class:`~napari_mzsr.AdaptOptions` / :class:`~napari_mzsr.ApplyOptions`
once, and :func:`work` runs the stack pipeline in a ``napari.qt.threading`` worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.qt.threading import thread_worker

from ..pipeline.images import split_axes

if TYPE_CHECKING:
    from napari.layers import Image

    from ..pipeline.options import AdaptOptions, ApplyOptions
    from ..pipeline.stacks import StackResult

# The options the widget's controls stand for, and the controls' labels: errors name
# the control a user can change, not the API keyword.
CONTROL_LABELS = {
    "scale": "scale",
    "kernel": "kernel",
    "steps": "steps",
    "model": "model",
    "device": "device",
    "seed": "seed",
    "lr": "learning rate",
    "normalization": "intensities",
    "back_projection": "back-projection",
    "ensemble": "self-ensemble",
    "stack mode": "stack",
}


@dataclass
class Values:
    """What the widget's controls hold when Run is clicked (no checks yet)."""

    layer: Image
    model: object
    scale: float
    kernel: object
    kernel_text: str
    steps: int
    device: str
    seed: int
    lr_text: str
    normalization: str
    mode: str
    index: tuple[int, ...]
    current_only: bool
    replace: bool
    float_output: bool
    ensemble: str | None
    back_projection: int


@dataclass
class Job:
    """A checked run: the layer, its data and the options, captured on the main thread."""

    layer: Image
    data: Any
    options: AdaptOptions
    apply: ApplyOptions
    mode: str
    index: tuple[int, ...]
    current_only: bool
    has_slices: bool
    replace: bool
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    """What the worker returns: the stack result, or a plain error message."""

    result: StackResult | None = None
    error: str | None = None


def plain_message(exc: BaseException) -> str:
    """A message a user of the widget can act on, without a traceback, naming the
    widget's controls instead of API keywords."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return (
            "not enough memory for this image: try 'current slice only', a smaller image, "
            "or another device"
        )
    if not isinstance(exc, ValueError | FileNotFoundError):
        return f"{type(exc).__name__}: {exc}"
    text = str(exc)
    for keyword, label in CONTROL_LABELS.items():
        if text.startswith(f"{keyword} "):
            return f"{label!r} {text[len(keyword) + 1 :]}"
    return text


def make_job(values: Values) -> Job:
    """Check the widget's values once and return the job.

    Raises
    ------
    ValueError
        A bad value; the message names the widget's control.
    """
    from ..pipeline.options import AdaptOptions, ApplyOptions

    layer = values.layer
    if layer.multiscale:
        raise ValueError(
            f"layer {layer.name!r} is multiscale (a pyramid); super-resolve a single "
            "resolution level added as its own layer"
        )
    slice_shape, _ = split_axes(layer.data.shape, layer.rgb)
    lr_text = values.lr_text.strip()
    try:
        lr = float(lr_text) if lr_text else None
    except ValueError:
        raise ValueError(f"'learning rate' must be a number, got {lr_text!r}") from None
    options = AdaptOptions(
        scale=values.scale,
        kernel=values.kernel,
        steps=values.steps,
        model=values.model,
        device=values.device,
        seed=values.seed,
        lr=lr,
        normalization=values.normalization,
        kernel_spec=values.kernel_text,
    )
    apply = ApplyOptions(
        output_dtype=np.float32 if values.float_output else None,
        ensemble=values.ensemble,
        back_projection=values.back_projection,
    )
    current_only = bool(slice_shape) and values.current_only
    job = Job(
        layer=layer,
        data=layer.data,
        options=options,
        apply=apply,
        mode=values.mode,
        index=values.index,
        current_only=current_only,
        has_slices=bool(slice_shape),
        replace=values.replace,
    )
    job.settings = {
        "factor": options.scale[0] if options.scale[0] == options.scale[1] else options.scale,
        "kernel": values.kernel_text,
        "steps": options.steps,
        "learning_rate": "model schedule" if lr is None else lr,
        "intensities": values.normalization,
        "seed": options.seed,
        "device": values.device,
        "self_ensemble": values.ensemble or "off",
        "back_projection": values.back_projection,
    }
    if job.has_slices:
        job.settings["stack_mode"] = "current slice only" if current_only else job.mode
        job.settings["slice"] = list(job.index)
    return job


@thread_worker(start_thread=False)
def work(job: Job):
    """The generator run by the worker thread: yields a status line (str) around a
    kernel estimate, then :class:`~napari_mzsr.StackProgress`; returns an
    :class:`Outcome`. Errors come back as an Outcome because napari's worker would
    otherwise report them with a traceback, and treats a RuntimeError (such as a CUDA
    out-of-memory error) as a deleted worker."""
    from ..pipeline.stacks import run_stack, stack_data

    try:
        data, options = stack_data(
            job.data, job.options, rgb=job.layer.rgb, index=job.index, current_only=job.current_only
        )
        if options.estimate:
            yield "estimating the kernel..."
        run = run_stack(
            data, options, job.apply, mode=job.mode, index=job.index, current_only=job.current_only
        )
        try:
            while True:
                try:
                    progress = next(run)
                except StopIteration as done:
                    result = done.value
                    break
                if progress.kernel_estimate is not None:
                    yield f"estimated kernel: {progress.kernel_estimate.describe()}"
                else:
                    yield progress
        finally:
            # A cancel (GeneratorExit at a yield) must stop the run at once, not at GC time.
            run.close()
    except Exception as exc:
        return Outcome(error=plain_message(exc))
    return Outcome(result=result)
