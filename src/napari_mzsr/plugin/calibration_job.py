"""The widget's "calibrate from pairs" section without the UI: its values to checked
options and pairs, the worker that calibrates and saves the profile, and the profile's
entry in the model list."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.qt.threading import thread_worker

from ..core.calibration import METHODS as CALIBRATION_METHODS
from ..core.calibration import CalibrationStep
from .jobs import plain_message

if TYPE_CHECKING:
    from ..io.model_file import MZSRModel
    from ..pipeline.calibrate import CalibrateOptions

SOURCES = (("LR and HR layers", "layers"), ("a folder of pairs", "folder"))
# A typed pair scale further than this (relative) from the pairs' measured one is refused.
SCALE_TOLERANCE = 0.01
# The scale the options are checked with before a folder's own is measured.
DEFAULT_SCALE = 2.0
METHOD_LABELS = {
    "finetune": "plain fine-tune",
    "drtl": "DRTL (relation-weighted distortions)",
    "drtl-meta": "DRTL, meta-learning variant",
}
# Every method of the core, labelled (a method without a label fails here, at import).
METHODS = tuple((METHOD_LABELS[method], method) for method in CALIBRATION_METHODS)


@dataclass
class CalibrationValues:
    """What the section's controls hold (layers as their data and names)."""

    source: str
    lr: Any
    hr: Any
    lr_name: str
    hr_name: str
    folder: str
    scale: float | None
    method: str
    steps: int
    save_to: str
    overwrite: bool
    model: Any
    device: str


@dataclass
class CalibrationJob:
    """Checked options, the pairs (or the folder the worker reads them from) and where
    the profile goes."""

    options: CalibrateOptions
    pairs: list[tuple[np.ndarray, np.ndarray]]
    names: list[str]
    path: Path
    overwrite: bool
    folder: Path | None = None
    measure: bool = False


@dataclass
class CalibrationOutcome:
    """A finished calibration: the saved profile, or the reason it failed."""

    profile: MZSRModel | None = None
    path: Path | None = None
    error: str | None = None
    sample: np.ndarray | None = None  # the first pair's LR image (for "Export profile...")


def _layer_image(data: Any, name: str, control: str) -> np.ndarray:
    if data is None:
        raise ValueError(f"choose an image layer under '{control}'")
    image = np.asarray(data)
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        image = image[..., :3]
    elif image.ndim != 2:
        raise ValueError(
            f"'{control}': layer {name!r} must be one 2-D grey or RGB image, got shape "
            f"{image.shape}"
        )
    return image


def make_calibration(values: CalibrationValues) -> CalibrationJob:
    """Check the section's values (on the GUI thread: reads no file; a folder's pairs
    are read by :func:`calibration_work`). ``values.model`` None starts from
    :data:`~napari_mzsr.pipeline.calibrate.DEFAULT_MODEL`.

    Raises
    ------
    ValueError
        A bad value, missing layer or folder, or an existing file without 'replace';
        the message names the control.
    """
    from ..io.pair_files import ImagePair, on_own_grid
    from ..pipeline.calibrate import DEFAULT_MODEL, CalibrateOptions

    if not values.save_to or Path(values.save_to).is_dir():
        raise ValueError("choose a file to save the profile to under 'save profile to'")
    path = Path(values.save_to)
    if path.suffix != ".pt":
        path = path.with_name(path.name + ".pt")
    if path.exists() and not values.overwrite:
        raise ValueError(f"{path.name} exists: tick 'replace existing file' or choose another")
    folder, scale = None, values.scale
    if values.source == "folder":
        if not values.folder or not Path(values.folder).is_dir():
            raise ValueError("choose the folder of (LR, HR) pairs under 'pairs folder'")
        folder, pairs, names = Path(values.folder), [], []
    else:
        lr = _layer_image(values.lr, values.lr_name, "LR layer")
        hr = _layer_image(values.hr, values.hr_name, "HR layer")
        names = [f"{values.lr_name} / {values.hr_name}"]
        scale = checked_scale([(lr, hr)], values.scale, names[0])
        pair = on_own_grid(ImagePair(names[0], lr, hr), scale)
        pairs = [(pair.lr, pair.hr)]
    options = CalibrateOptions(
        # A folder's scale is measured when the worker has read it; checked here first.
        scale=DEFAULT_SCALE if scale is None else scale,
        model=DEFAULT_MODEL if values.model is None else values.model,
        method=values.method,
        steps=values.steps,
        name=path.stem,
        device=values.device,
    )
    return CalibrationJob(options, pairs, names, path, values.overwrite, folder, scale is None)


def checked_scale(
    pairs: list[tuple[np.ndarray, np.ndarray]], given: float | None, where: str
) -> float:
    """The pairs' measured scale (:func:`~napari_mzsr.io.pair_files.measured_scale`)
    when ``given`` is None ('auto'), else ``given`` if it is within
    :data:`SCALE_TOLERANCE` of it.

    Raises
    ------
    ValueError
        ``given`` does not fit the pairs; the message gives the measured value.
    """
    from ..io.pair_files import measured_scale

    measured, how = measured_scale(pairs)
    if given is None:
        return measured
    if abs(given - measured) > SCALE_TOLERANCE * measured:
        raise ValueError(
            f"'pair scale' {given:g} does not fit {where}: measured {measured:g} ({how}); "
            f"set 'pair scale' to {measured:g}, or to auto"
        )
    return given


def job_pairs(
    job: CalibrationJob,
) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[str], float]:
    """The job's pairs, their names and their scale: read once from its folder when it
    has one, the scale measured there or checked against the pairs
    (:func:`checked_scale`), LR images on their native grid
    (:func:`~napari_mzsr.io.pair_files.on_own_grid`)."""
    from ..io.pair_files import on_own_grid, read_raw_pairs

    if job.folder is None:
        return job.pairs, job.names, job.options.scale
    raw = read_raw_pairs(job.folder)
    given = None if job.measure else job.options.scale
    scale = checked_scale([(p.lr, p.hr) for p in raw], given, job.folder.name)
    read = [on_own_grid(p, scale) for p in raw]
    return [(p.lr, p.hr) for p in read], [p.key for p in read], scale


@thread_worker
def calibration_work(job: CalibrationJob) -> Generator[CalibrationStep, None, Any]:
    """Read the pairs (:func:`job_pairs`), calibrate, yielding the
    :class:`~napari_mzsr.core.calibration.CalibrationStep` of every update, then save
    the profile atomically; returns a
    :class:`CalibrationOutcome` (errors included, as a plain message). Quitting the
    worker closes the calibration between updates and saves nothing."""
    from ..io.model_file import save_model
    from ..pipeline.calibrate import iter_calibrate_profile

    try:
        pairs, names, scale = job_pairs(job)
        options = replace(job.options, scale=scale)
        profile = yield from iter_calibrate_profile(pairs, options, names=names)
        save_model(job.path, profile.state_dict, profile.info, overwrite=job.overwrite)
    except Exception as exc:
        return CalibrationOutcome(error=plain_message(exc))
    return CalibrationOutcome(profile=profile, path=job.path, sample=pairs[0][0])


def profile_label(profile: MZSRModel, path: Path) -> str:
    """The profile's entry in the model list."""
    info = profile.info
    method = info.training.get("method", "profile")
    return f"{info.name}: camera profile x{info.scales[0]:g} ({method}, {path.name})"


def summary(outcome: CalibrationOutcome, seconds: float) -> str:
    """The status line after a calibration."""
    from ..pipeline.calibrate import held_out_summary, top_relations

    profile = outcome.profile
    scale = profile.info.scales[0]
    parts = [
        f"saved {outcome.path.name} (x{scale:g}) in {seconds:.0f} s",
        held_out_summary(profile),
    ]
    top = top_relations(profile, 2)
    if top:
        parts.append("closest distortions " + ", ".join(f"{k} {w:.2f}" for k, w in top))
    return "; ".join(parts)
