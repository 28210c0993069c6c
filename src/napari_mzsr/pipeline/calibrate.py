"""Few-shot calibration to a camera or microscope: from a handful of registered real
(LR, HR) pairs to a *camera profile*, a theta_M that :func:`napari_mzsr.super_resolve`,
the widget and the command line take as ``model``.

The entry points check their options once (:class:`CalibrateOptions`), load the starting
theta_M and run :func:`napari_mzsr.core.calibration.iter_calibrate` on its network; the
profile's ``info.training`` holds its provenance (pairs and their measured registration, steps,
relation weights, PSNR on the held-back rows of the pairs) and
:func:`napari_mzsr.save_model` writes it like any theta_M file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from ..core import checks
from ..core.calibration import METHODS, CalibrationOptions, CalibrationStep, iter_calibrate
from ..core.devices import resolve_device
from ..core.distortions import Distortion
from ..io.model_file import MZSRModel, load_model
from .options import scale_pair
from .run import drive, step_progress

DEFAULT_MODEL = "direct-x2"


def calibration_scale(value: object) -> float:
    """A checked calibration factor: one number > 1 (see
    :func:`~napari_mzsr.pipeline.options.scale_pair`), or an ``(sy, sx)`` pair of equal
    numbers (the network's input is the LR image magnified the same along both axes)."""
    sy, sx = scale_pair(value)
    if sy != sx:
        raise ValueError(f"scale must be the same for Y and X in a calibration, got {value!r}")
    return sy


@dataclass
class Profile:
    """A calibration's result: the camera profile and what was measured (as in its
    ``info.training``)."""

    model: MZSRModel
    relations: list[dict[str, Any]]
    held_out: dict[str, float]
    seconds: float


@dataclass(frozen=True)
class CalibrateOptions:
    """Checked options of a calibration (see :func:`calibrate`); made with the user's
    values, each checked and normalised on construction: ``scale`` a float, ``model``
    a loaded model, ``device`` a ``torch.device``, ``hyper`` the
    :class:`~napari_mzsr.core.calibration.CalibrationOptions`.

    Raises
    ------
    ValueError
        Any bad value; the message names the option.
    """

    scale: Any
    model: Any = DEFAULT_MODEL
    method: Any = "drtl"
    steps: Any = CalibrationOptions.steps
    learning_rate: Any = CalibrationOptions.lr
    holdout: Any = CalibrationOptions.holdout
    max_misplacement: Any = CalibrationOptions.max_error
    name: Any = "camera-profile"
    device: Any = "auto"
    seed: Any = 0
    hyper: CalibrationOptions = field(init=False, compare=False)

    def __post_init__(self) -> None:
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        put("scale", calibration_scale(self.scale))
        put("model", load_model(self.model))
        checks.one_of(self.method, "method", METHODS)
        put("steps", checks.integer(self.steps, "steps", minimum=1))
        put("learning_rate", checks.positive_number(self.learning_rate, "learning_rate"))
        holdout = self.holdout
        if (
            isinstance(holdout, bool)
            or not isinstance(holdout, int | float)
            or not (0 <= holdout < 0.5)
        ):
            raise ValueError(f"holdout must be a fraction in [0, 0.5), got {holdout!r}")
        put("max_misplacement", checks.positive_number(self.max_misplacement, "max_misplacement"))
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        put("device", resolve_device(self.device))
        put("seed", checks.seed(self.seed))
        put(
            "hyper",
            CalibrationOptions(
                steps=self.steps,
                lr=self.learning_rate,
                holdout=float(holdout),
                max_error=self.max_misplacement,
            ),
        )


def _pairs(pairs: object) -> list[tuple[np.ndarray, np.ndarray]]:
    """The user's pairs as a list of (lr, hr); the arrays themselves are checked with
    their registration by the core."""
    if isinstance(pairs, np.ndarray) or not isinstance(pairs, Sequence):
        raise ValueError("pairs must be a list of (lr, hr) array pairs")
    if not pairs:
        raise ValueError("pairs must hold at least one (lr, hr) pair")
    out = []
    for i, pair in enumerate(pairs, start=1):
        if not isinstance(pair, Sequence) or len(pair) != 2:
            raise ValueError(f"pairs[{i - 1}] must be an (lr, hr) pair of arrays")
        out.append((np.asarray(pair[0]), np.asarray(pair[1])))
    return out


def _iter_profile(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    scale: float,
    base: MZSRModel,
    *,
    name: str,
    device: torch.device | str,
    **kwargs: Any,
) -> Generator[CalibrationStep, None, Profile]:
    """Calibrate ``base``'s network (``kwargs`` go to the core's ``iter_calibrate``) and
    make the profile: the base's metadata with the calibration's name, scale and
    provenance (degradation ``"bicubic"`` for a non-integer scale: the son of a further
    zero-shot adaptation then follows the non-integer convention, blur then MATLAB
    bicubic)."""
    info = base.info
    # A scale-aware theta_M is bound to the pairs' factor; a plain one ignores it.
    network = base.network(device, scale)
    result = yield from iter_calibrate(pairs, scale, network=network, device=device, **kwargs)
    provenance = {
        "stage": "calibration",
        "method": result.record["method"],
        "base_model": {"name": info.name, "source": base.source, "scales": info.scales},
        **result.record,
    }
    integer = abs(scale - round(scale)) < 1e-9
    # replace keeps every other field of the base's file (shape, schedule, architecture).
    profile_info = replace(
        info,
        name=name,
        scales=[float(scale)],
        degradation=info.degradation if integer else "bicubic",
        training=provenance,
    )
    state = result.network.state_dict()
    state = {k: v.detach().to("cpu", torch.float32).clone() for k, v in state.items()}
    profile = MZSRModel(profile_info, state, "")
    return Profile(profile, result.relations, result.held_out, result.seconds)


def iter_calibrate_profile(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    options: CalibrateOptions,
    *,
    names: Sequence[str] | None = None,
    auxiliary_images: Sequence[np.ndarray] = (),
) -> Generator[CalibrationStep, None, MZSRModel]:
    """The calibration with checked ``options``: yields a
    :class:`~napari_mzsr.core.calibration.CalibrationStep` after every update and
    returns the profile. Closing it between updates cancels the run."""
    result = yield from _iter_profile(
        _pairs(pairs),
        options.scale,
        options.model,
        method=options.method,
        options=options.hyper,
        auxiliary_images=auxiliary_images,
        names=names,
        name=options.name,
        seed=options.seed,
        device=options.device,
    )
    return result.model


def calibrate_profile(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    scale: float,
    *,
    model: str | os.PathLike | MZSRModel = DEFAULT_MODEL,
    options: CalibrationOptions | None = None,
    distortions: Sequence[Distortion] | None = None,
    name: str = "profile",
    device: torch.device | str = "cpu",
    progress: Callable[[CalibrationStep], None] | None = None,
    **kwargs: Any,
) -> Profile:
    """A calibration with every hyper-parameter of the core (``options``, the auxiliary
    ``distortions``; ``kwargs``: ``method``, ``auxiliary_images``, ``names``, ``seed``)
    for experiments and benchmarks, returning the profile with its measurements;
    ``progress`` is called after each update. :func:`calibrate` is the checked entry
    point."""
    run = _iter_profile(
        pairs,
        scale,
        load_model(model),
        options=options,
        distortions=distortions,
        name=name,
        device=device,
        **kwargs,
    )
    return drive(run, progress)


def calibrate(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    scale: float | Sequence[float],
    *,
    model: str | os.PathLike | MZSRModel = DEFAULT_MODEL,
    method: str = "drtl",
    steps: int = CalibrationOptions.steps,
    learning_rate: float = CalibrationOptions.lr,
    holdout: float = CalibrationOptions.holdout,
    max_misplacement: float = CalibrationOptions.max_error,
    names: Sequence[str] | None = None,
    name: str = "camera-profile",
    auxiliary_images: Sequence[np.ndarray] = (),
    device: str | torch.device = "auto",
    seed: int = 0,
    progress: Callable[[int, float], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> MZSRModel:
    """Calibrate theta_M to a camera from a few registered real (LR, HR) pairs.

    Parameters
    ----------
    pairs : sequence of (lr, hr)
        Real pairs of one camera or microscope: ``lr`` (h, w[, 3]) and ``hr``
        (H, W[, 3]) of the same field with ``(H, W) = ceil((h, w) * scale)`` (one pixel
        of slack), uint8, uint16 or float in [0, 1]; never modified. Each pair's
        registration is measured first; a pair whose content is shifted or magnified
        differently by more than ``max_misplacement`` HR pixels is refused with its
        measured shift and ratio.
    scale : float or (float, float)
        Magnification from LR to HR (> 1; non-integer allowed; the same for both axes).
        The profile serves exactly this factor.
    model : str, path or MZSRModel
        Starting theta_M (default the shipped ``"direct-x2"``); a scale-aware one is
        bound to ``scale`` and the profile stays scale-aware.
    method : {"drtl", "drtl-meta", "finetune"}
        DRTL's pre-training variant (auxiliary synthetic distortions weighted by their
        gradient relation to the real pairs), its meta-learning variant, or plain
        fine-tuning on the pairs (see :mod:`napari_mzsr.core.calibration`).
    steps : int
        Adam updates (about 0.9 s each for ``finetune`` and 2 s for DRTL on one CPU
        core).
    learning_rate : float
        Adam learning rate, decayed to 0 by a half cosine.
    holdout : float
        Fraction of each pair's rows (at the bottom) kept out of training and used to
        measure the profile's PSNR.
    max_misplacement : float
        Registration tolerance in HR pixels.
    names : sequence of str, optional
        Names of the pairs in messages and provenance.
    name : str
        The profile's name (shown in model lists).
    auxiliary_images : sequence of ndarray
        External HR images for the auxiliary tasks besides the pairs' own HR images.
    device : str or torch.device
        ``"auto"``, ``"cpu"``, ``"cuda:N"`` or ``"mps"``.
    seed : int
        Seed of the patch positions, task draws and noise.
    progress : callable(step, loss), optional
        Called after each update with the updates done and the target L1 loss.
    cancel : callable() -> bool, optional
        Checked between updates; when it returns True, :class:`Cancelled` is raised.

    Returns
    -------
    MZSRModel
        The camera profile. ``info.training`` holds ``method``, ``pairs`` (names,
        shapes, measured shift, ratio and misplacement), ``steps``,
        ``relation_weights``, ``held_out_psnr`` (bicubic / start / profile, dB) and
        more; write it with ``save_model(path, profile.state_dict, profile.info)``.
        Use it as ``super_resolve(image, scale=scale, model=profile, steps=0)`` to
        apply it directly, or with ``steps > 0`` to adapt it further zero-shot.

    Raises
    ------
    ValueError
        A bad option or image, or a pair refused by the registration check.
    Cancelled
        ``cancel`` returned True.
    """
    options = CalibrateOptions(
        scale=scale,
        model=model,
        method=method,
        steps=steps,
        learning_rate=learning_rate,
        holdout=holdout,
        max_misplacement=max_misplacement,
        name=name,
        device=device,
        seed=seed,
    )
    run = iter_calibrate_profile(pairs, options, names=names, auxiliary_images=auxiliary_images)
    return drive(run, step_progress(progress), cancel)


def held_out_summary(profile: MZSRModel) -> str:
    """One line: the PSNR of the held-back rows (bicubic, start, profile) of a profile."""
    held = profile.info.training.get("held_out_psnr", {})
    parts = [f"{k} {held[k]:.2f} dB" for k in ("bicubic", "base", "profile") if k in held]
    if not parts:
        return "no rows held back"
    return "held-back PSNR: " + ", ".join(parts).replace("base", "start")


def top_relations(profile: MZSRModel, count: int = 3) -> list[tuple[str, float]]:
    """The auxiliary tasks with the largest final relation weights."""
    weights = profile.info.training.get("relation_weights", {})
    ranked = sorted(weights.items(), key=lambda item: -item[1])
    return [(k, float(w)) for k, w in ranked[:count] if math.isfinite(w) and w > 0]
