"""From the widget's values to a run: checked options, the model choice, and the worker.

The widget (:mod:`napari_mzsr.plugin.widget`) only gathers values; :func:`make_job`
turns them into :class:`~napari_mzsr.AdaptOptions` / :class:`~napari_mzsr.ApplyOptions`
once (one task per layer), :func:`choose` picks the model and says what does not fit,
and :func:`work` runs the tasks in a ``napari.qt.threading`` worker.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.qt.threading import thread_worker

from ..core.kernels import ESTIMATE, model_subsampling
from ..pipeline.images import split_axes

if TYPE_CHECKING:
    from napari.layers import Image

    from ..io.model_file import ModelInfo, MZSRModel
    from ..pipeline.options import AdaptOptions, ApplyOptions
    from ..pipeline.stacks import StackProgress, StackResult

AUTO = "\0auto"  # the model control's "auto" value; cannot clash with a model name
NORMALIZATIONS = (
    ("auto (uint8, [0, 1] floats as they are; else percentiles)", "auto"),
    ("data type range", "dtype"),
    ("percentiles 0.1-99.9", "percentile"),
    ("min-max", "minmax"),
)
STACK_MODES = (
    ("adapt once, apply to every slice", "once"),
    ("adapt per slice", "per_slice"),
)
ENSEMBLES = (("off", "off"), ("mean", "mean"), ("median", "median"))
SCOPES = (
    ("this layer", "layer"),
    ("all its channels", "channels"),
    ("all selected layers", "selected"),
)
CHANNEL_MODES = (
    ("one adaptation per layer", "per_layer"),
    ("one adaptation, shared", "shared"),
)

# The options the widget's controls stand for, with the controls' labels and the
# labels of their choices: errors name what a user can change, not the API keyword.
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
    "tile": "tile size",
    "stack mode": "stack",
}
CHOICE_LABELS = {
    "normalization": {value: label.split(" (")[0] for label, value in NORMALIZATIONS},
    "ensemble": {"None": "off"},
}
PHRASES = {
    "give a theta_M file as model": "choose 'from file...' under 'model' and a theta_M file",
    "(or none: one is chosen by the scale)": "(or 'auto': one is chosen by the scale)",
    "pass --overwrite": "tick 'replace previous result'",
}
_KEYWORD_VALUES = re.compile(
    r"\b(?P<use>use |set )?(?P<key>"
    + "|".join(re.escape(k) for k in CONTROL_LABELS)
    + r")(?:=| )(?P<values>'[^']*'(?:, '[^']*')*(?: or '[^']*')?)"
)


def plain_message(exc: BaseException) -> str:
    """A message a user of the widget can act on, without a traceback, naming the
    widget's controls and their choices instead of API keywords and values.

    Examples
    --------
    >>> plain_message(ValueError("use normalization 'auto' or 'minmax'"))
    "set 'intensities' to 'auto' or 'min-max'"
    >>> plain_message(ValueError("steps must be an integer >= 0, got -1"))
    "'steps' must be an integer >= 0, got -1"
    """
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return (
            "not enough memory for this image: set a smaller 'tile size' (advanced), "
            "tick 'current slice only', or choose another 'device'"
        )
    if not isinstance(exc, ValueError | FileNotFoundError):
        return f"{type(exc).__name__}: {exc}"
    text = str(exc)
    for phrase, replacement in PHRASES.items():
        text = text.replace(phrase, replacement)

    def relabel(match: re.Match) -> str:
        key = match["key"]
        names = CHOICE_LABELS.get(key, {})
        values = re.sub(r"'([^']*)'", lambda v: repr(names.get(v[1], v[1])), match["values"])
        if match["use"]:
            return f"set {CONTROL_LABELS[key]!r} to {values}"
        return f"{CONTROL_LABELS[key]!r} {values}"

    text = _KEYWORD_VALUES.sub(relabel, text)
    for keyword, label in CONTROL_LABELS.items():
        if text.startswith(f"{keyword} "):
            return f"{label!r} {text[len(keyword) + 1 :]}"
    return text


# -- the model -----------------------------------------------------------------------


@dataclass(frozen=True)
class ModelChoice:
    """The model a run will use and what does not fit about it.

    Attributes
    ----------
    name : str or None
        Shipped name (chosen automatically) or the file's model name; None when no
        model serves the run (then ``warnings`` says why and Run refuses).
    info : ModelInfo or None
    auto : bool
        Whether it was chosen from the image and the kernel.
    warnings : tuple of str
        Mismatches between the model and the image, the scale or the kernel.
    """

    name: str | None
    info: ModelInfo | None
    auto: bool
    warnings: tuple[str, ...] = ()


def _shipped_info(name: str) -> ModelInfo:
    from ..io.model_file import shipped_infos

    return shipped_infos()[name]


def choose(
    model: MZSRModel | None,
    scale: tuple[float, float],
    rgb: bool,
    degradation: str = "direct",
    preset: str | None = None,
) -> ModelChoice:
    """The model for an image (``rgb`` or grey), the factors and the kind of
    subsampling the kernel choice implies (a bicubic preset: ``"bicubic"``): ``model``
    when given, else the shipped one :func:`~napari_mzsr.pipeline.options.model_for`
    picks (for factors no model serves in one step, the one of every gradual step,
    :mod:`~napari_mzsr.pipeline.gradual`); with a warning for each mismatch."""
    from ..io.model_file import shipped_models
    from ..pipeline.options import model_for

    sy, sx = scale
    factor = f"x{sy:g}" if sy == sx else f"x{sy:g}x{sx:g}"
    warnings = []
    if model is None:
        try:
            name = model_for(scale, rgb, degradation)
        except ValueError as exc:
            return ModelChoice(None, None, True, (plain_message(exc),))
        info = _shipped_info(name)
    else:
        info, name = model.info, model.info.name
        if not info.supports_scale(scale):
            warnings.append(
                f"{name} serves {info.describe_scales()}, not {factor}: set 'scale' to "
                f"{info.describe_scales()} or choose model 'auto'"
            )
    gray = f"direct-x{sy:g}-gray"
    if not rgb and info.channels == 3:
        better = (
            f"; {gray} (or 'auto') is made for it"
            if model is not None and gray in shipped_models()
            else ""
        )
        warnings.append(
            f"{name} is an RGB model: the single-channel image runs as three equal colours{better}"
        )
    if info.degradation != model_subsampling(degradation) and preset is not None:
        warnings.append(
            f"the preset {preset} is for {degradation}-subsampled data but {name} was "
            f"trained with {info.degradation} subsampling: expect a lower PSNR and a "
            "result placed for the model's subsampling"
        )
    return ModelChoice(name, info, model is None, tuple(warnings))


# -- the job -------------------------------------------------------------------------


@dataclass
class Values:
    """What the widget's controls hold when Run (or Preview) is clicked (no checks yet).

    ``layers`` are the layers to run, the chosen one first; ``indices`` the slice
    shown in the viewer for each; ``model`` None means "auto"; ``region`` (preview)
    the rows and columns of the shown slice of the first layer to run alone.
    """

    layers: list[Image]
    indices: list[tuple[int, ...]]
    model: MZSRModel | None
    scale: tuple[float, float]
    kernel: object
    kernel_text: str
    preset: str | None
    steps: int
    device: str
    seed: int
    lr_text: str
    normalization: str
    mode: str
    current_only: bool
    replace: bool
    float_output: bool
    ensemble: str | None
    back_projection: int | None  # None: the adapted model's choice
    tile: int | None = None
    shared: bool = False
    region: tuple[slice, slice] | None = None
    threads: int | str = "auto"


@dataclass
class Task:
    """One layer of a job: its data, its checked options and where its result goes."""

    layer: Image
    data: Any
    rgb: bool
    options: AdaptOptions
    index: tuple[int, ...]
    current_only: bool
    has_slices: bool
    origin: tuple[float, ...] | None = None  # preview: data position of the crop
    # Preview: the whole shown slice, not read until a kernel is estimated on it (as Run
    # does), so that the preview's kernel is Run's and not the visible region's.
    estimate_on: Any = None


@dataclass
class Job:
    """A checked run, captured on the main thread."""

    tasks: list[Task]
    apply: ApplyOptions
    mode: str
    shared: bool
    replace: bool
    preview: bool
    settings: dict[str, Any] = field(default_factory=dict)
    details: list[str] = field(default_factory=list)

    @property
    def layers(self) -> list[Image]:
        return [task.layer for task in self.tasks]


@dataclass(frozen=True)
class JobProgress:
    """Progress of a job over all its layers (yielded by :func:`work`)."""

    layer: str
    layer_number: int
    n_layers: int
    phase: str
    step: int
    steps: int
    slice_done: int
    n_slices: int
    steps_done: int
    steps_total: int
    slices_done: int
    slices_total: int
    loss: float | None
    unit: str = "slice"  # what the slice counts count: "slice", or "block" (isotropic Z)

    @property
    def done(self) -> int:
        return self.steps_done + self.slices_done

    @property
    def total(self) -> int:
        return self.steps_total + self.slices_total


@dataclass
class Outcome:
    """What the worker returns: a stack result per task, or a plain error message."""

    results: list[tuple[Task, StackResult]] = field(default_factory=list)
    error: str | None = None


def _kernel_degradation(preset: str | None) -> str:
    from ..core.kernels import PRESETS

    return PRESETS[preset].degradation if preset in PRESETS else "direct"


def make_job(values: Values) -> Job:
    """Check the widget's values once and return the job.

    Raises
    ------
    ValueError
        A bad value; the message names the widget's control.
    """
    from ..pipeline.options import AdaptOptions, ApplyOptions

    lr_text = values.lr_text.strip()
    try:
        lr = float(lr_text) if lr_text else None
    except ValueError:
        raise ValueError(f"'learning rate' must be a number, got {lr_text!r}") from None
    preview = values.region is not None
    degradation = _kernel_degradation(values.preset)
    apply = ApplyOptions(
        output_dtype=np.float32 if values.float_output else None,
        ensemble=None if preview else values.ensemble,
        back_projection=0 if preview else values.back_projection,
        tile=values.tile,
    )
    layers = values.layers[:1] if preview else values.layers
    shared = values.shared and len(layers) > 1
    tasks = []
    base: AdaptOptions | None = None
    for layer, index in zip(layers, values.indices, strict=False):
        if layer.multiscale:
            raise ValueError(
                f"layer {layer.name!r} is multiscale (a pyramid); super-resolve a single "
                "resolution level added as its own layer"
            )
        slice_shape, _ = split_axes(layer.data.shape, layer.rgb)
        if shared and base is not None:
            options = base  # every layer is run by the first one's adapted model
        else:
            choice = choose(values.model, values.scale, layer.rgb, degradation, values.preset)
            if choice.name is None:
                raise ValueError(choice.warnings[0])
            if values.model is not None and not choice.info.supports_scale(values.scale):
                raise ValueError(choice.warnings[0])
            options = AdaptOptions(
                scale=values.scale,
                kernel=values.kernel,
                steps=1 if preview else values.steps,
                model=values.model if values.model is not None else choice.name,
                device=values.device,
                seed=values.seed,
                lr=lr,
                normalization=values.normalization,
                kernel_spec=values.kernel_text,
                subsampling=degradation,
                adapt_patch=None if preview else "auto",
                threads=values.threads,
            )
            base = base or options
        if preview:
            data, origin = _crop(layer, index, values.region)
            whole = layer.data[tuple(index)]
            task = Task(layer, data, layer.rgb, options, (), False, False, origin, whole)
        else:
            current_only = bool(slice_shape) and values.current_only
            task = Task(
                layer, layer.data, layer.rgb, options, index, current_only, bool(slice_shape)
            )
        tasks.append(task)
    job = Job(tasks, apply, values.mode, shared, values.replace, preview)
    first = tasks[0]
    job.details = run_details(values, first, shared)
    job.settings = {
        "factor": values.scale[0] if values.scale[0] == values.scale[1] else list(values.scale),
        "kernel": values.kernel_text,
        "steps": first.options.steps,
        "learning_rate": "model schedule" if lr is None else lr,
        "intensities": values.normalization,
        "seed": first.options.seed,
        "device": values.device,
        "self_ensemble": apply.ensemble or "off",
        "back_projection": "auto" if apply.back_projection is None else apply.back_projection,
        "tile": "auto" if values.tile is None else values.tile,
    }
    if len(tasks) > 1:
        job.settings["layers"] = [task.layer.name for task in tasks]
        job.settings["channels"] = "shared adaptation" if shared else "one adaptation per layer"
    if preview:
        job.settings["preview"] = {"region": [[r.start, r.stop] for r in values.region]}
    return job


def _crop(
    layer: Image, index: tuple[int, ...], region: tuple[slice, slice]
) -> tuple[np.ndarray, tuple[float, ...]]:
    """The shown slice's ``region`` of ``layer`` (read now, so a lazy layer computes
    only that), and its first pixel's data position on every axis."""
    rows, cols = region
    data = layer.data[tuple(index)][rows, cols]
    data = np.asarray(data.compute() if hasattr(data, "compute") else data)
    return data, (*index, float(rows.start), float(cols.start))


def run_details(values: Values, first: Task, shared: bool) -> list[str]:
    """What was done, in short, for the result's name: ``["10 steps", "per slice"]``."""
    if values.region is not None:
        return ["preview"]
    steps = first.options.steps
    details = [f"{steps} step{'s' if steps != 1 else ''}"]
    if first.has_slices:
        if first.current_only:
            details.append("slice " + ",".join(str(i) for i in first.index))
        elif shared:
            details.append("adapted once")
        else:
            details.append("adapted once" if values.mode == "once" else "per slice")
    if shared:
        details.append("shared")
    if isinstance(values.kernel, str) and values.kernel == ESTIMATE:
        details.append("est. kernel")
    if values.ensemble:
        details.append(f"ensemble {values.ensemble}")
    if values.back_projection:
        details.append(f"BP {values.back_projection}")
    return details


# -- running -------------------------------------------------------------------------


class TimeLeft:
    """Estimate of the time left from the reports so far: the mean time of an
    adaptation step and of a slice's inference, times what is left of each.

    Parameters
    ----------
    clock : callable() -> float
        Seconds (monotonic); replaceable for tests.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: tuple[float, int, int] | None = None
        self._step: list[float] = [0.0, 0]  # seconds, count
        self._slice: list[float] = [0.0, 0]

    def update(self, p: JobProgress) -> float | None:
        """Seconds left after report ``p``, or None while nothing was timed."""
        now = self._clock()
        if self._last is not None:
            then, steps, slices = self._last
            d_steps, d_slices = p.steps_done - steps, p.slices_done - slices
            # A slice report closes the interval that produced the slice.
            target = self._slice if d_slices > 0 else self._step
            count = d_slices if d_slices > 0 else d_steps
            if count > 0:
                target[0] += now - then
                target[1] += count
        self._last = (now, p.steps_done, p.slices_done)
        per_step = self._step[0] / self._step[1] if self._step[1] else None
        per_slice = self._slice[0] / self._slice[1] if self._slice[1] else per_step
        if per_slice is None:
            return None
        per_step = per_step if per_step is not None else per_slice
        return (p.steps_total - p.steps_done) * per_step + (
            p.slices_total - p.slices_done
        ) * per_slice


def format_seconds(seconds: float) -> str:
    """``"about 12 s"``, ``"about 3 min"``.

    Examples
    --------
    >>> format_seconds(12.3), format_seconds(185)
    ('about 12 s', 'about 3 min')
    """
    if seconds < 90:
        return f"about {max(round(seconds), 1)} s"
    return f"about {round(seconds / 60)} min"


@thread_worker(start_thread=False)
def work(job: Job):
    """The generator run by the worker thread: yields a status line (str) around a
    kernel estimate, then :class:`JobProgress`; returns an :class:`Outcome`. Errors
    come back as an Outcome because napari's worker would otherwise report them with
    a traceback, and treats a RuntimeError (such as a CUDA out-of-memory error) as a
    deleted worker."""
    try:
        if job.shared:
            results = yield from _run_shared(job)
        else:
            results = yield from _run_each(job)
    except Exception as exc:
        return Outcome(error=plain_message(exc))
    return Outcome(results=results)


def _estimate_on(task: Task, options: AdaptOptions) -> tuple[AdaptOptions, Any]:
    """The options with the kernel estimated on the task's ``estimate_on`` slice, and
    the estimate."""
    from ..pipeline.images import image_data
    from ..pipeline.kernel_choice import resolve_kernel

    whole = task.estimate_on
    whole = np.asarray(whole.compute() if hasattr(whole, "compute") else whole)
    image = image_data(whole, rgb=task.rgb, normalization=options.normalization)
    return resolve_kernel(options, image)


def _plan(job: Job) -> tuple[list[tuple[int, int]], int, int]:
    """(adaptation steps, slices) of each task, and the job's totals."""
    plan = []
    for task in job.tasks:
        slice_shape, _ = split_axes(np.shape(task.data), task.rgb)
        n_slices = 1 if task.current_only else int(np.prod(slice_shape, dtype=int))
        adaptations = n_slices if job.mode == "per_slice" and not job.shared else 1
        if job.shared and task is not job.tasks[0]:
            adaptations = 0
        plan.append((adaptations * task.options.steps, n_slices))
    return plan, sum(p[0] for p in plan), sum(p[1] for p in plan)


def _run_each(job: Job) -> Generator[JobProgress | str, None, list]:
    """One stack run per task, one after the other."""
    from ..pipeline.stacks import run_stack, stack_data

    plan, steps_total, slices_total = _plan(job)
    results = []
    steps_before = slices_before = 0
    for number, task in enumerate(job.tasks):
        data, options = stack_data(
            task.data, task.options, rgb=task.rgb, index=task.index, current_only=task.current_only
        )
        estimate = None
        if options.estimate:
            yield "estimating the kernel..."
            if task.estimate_on is not None:
                options, estimate = _estimate_on(task, options)
                yield f"estimated kernel: {estimate.describe()}"
        run = run_stack(
            data,
            options,
            job.apply,
            mode=job.mode,
            index=task.index,
            current_only=task.current_only,
        )
        try:
            while True:
                try:
                    p = next(run)
                except StopIteration as done:
                    result = done.value
                    if estimate is not None:
                        result = replace(result, kernel_estimate=estimate)
                    results.append((task, result))
                    break
                if p.kernel_estimate is not None:
                    yield f"estimated kernel: {p.kernel_estimate.describe()}"
                    continue
                yield _job_progress(
                    p, task, number, len(job.tasks), steps_before, slices_before,
                    steps_total, slices_total,
                )  # fmt: skip
        finally:
            # A cancel (GeneratorExit at a yield) must stop the run at once, not at GC time.
            run.close()
        steps_before += plan[number][0]
        slices_before += plan[number][1]
    return results


def _job_progress(
    p: StackProgress,
    task: Task,
    number: int,
    n_layers: int,
    steps_before: int,
    slices_before: int,
    steps_total: int,
    slices_total: int,
) -> JobProgress:
    return JobProgress(
        layer=task.layer.name,
        layer_number=number + 1,
        n_layers=n_layers,
        phase=p.phase,
        step=p.step,
        steps=p.steps,
        slice_done=p.slice_done,
        n_slices=p.n_slices,
        steps_done=steps_before + p.done - p.slice_done,
        steps_total=steps_total,
        slices_done=slices_before + p.slice_done,
        slices_total=slices_total,
        loss=p.loss,
    )


def _run_shared(job: Job) -> Generator[JobProgress | str, None, list]:
    """Adapt once on the first task's slice, then apply that network to every slice
    of every task, each with its own intensity map."""
    from ..pipeline.kernel_choice import resolve_kernel
    from ..pipeline.run import adapt_image
    from ..pipeline.stacks import StackProgress, StackResult, default_index, stack_data

    plan, steps_total, slices_total = _plan(job)
    stacks = [
        stack_data(t.data, t.options, rgb=t.rgb, index=t.index, current_only=t.current_only)[0]
        for t in job.tasks
    ]
    first, options = job.tasks[0], job.tasks[0].options
    index = first.index or default_index(stacks[0].slice_shape)
    if options.estimate:
        yield "estimating the kernel..."
    options, estimate = resolve_kernel(options, stacks[0].slice(index))
    if estimate is not None:
        yield f"estimated kernel: {estimate.describe()}"
    steps = options.steps
    run = adapt_image(stacks[0].slice(index), options)
    loss = None
    try:
        while True:
            try:
                report = next(run)
            except StopIteration as done:
                adapted = done.value
                break
            loss = report.loss
            p = StackProgress("adapt", report.step + 1, steps, 0, 1, report.step + 1, 0, loss)
            yield _job_progress(p, first, 0, len(job.tasks), 0, 0, steps_total, slices_total)
    finally:
        run.close()
    results = []
    slices_before = 0
    for number, (task, data) in enumerate(zip(job.tasks, stacks, strict=True)):
        net = adapted.with_intensity(data.intensity)
        positions = [task.index] if task.current_only else list(np.ndindex(*data.slice_shape))
        result = None
        for done, position in enumerate(positions):
            sr = net.render(data.slice(position), job.apply)
            if result is None:
                lead = tuple(1 for _ in data.slice_shape) if task.current_only else None
                result = np.empty((lead or data.slice_shape) + sr.shape, sr.dtype)
            result[(0,) * len(data.slice_shape) if task.current_only else position] = sr
            p = StackProgress("apply", steps, steps, done + 1, len(positions), 0, 0, loss)
            yield replace(
                _job_progress(
                    p, task, number, len(job.tasks), 0, slices_before, steps_total, slices_total
                ),
                steps_done=plan[0][0],
            )
        slices_before += len(positions)
        results.append(
            (
                task,
                StackResult(
                    result,
                    estimate,
                    data.intensity,
                    (adapted.steps_taken,),
                    (adapted.self_check,),
                    dict(net.threads_used),
                    back_projection=net.back_projection_used or 0,
                ),
            )
        )
    return results
