"""Training recipes: small TOML files, merged over defaults and checked for typos.

Every key a recipe may set appears in :data:`DEFAULTS`; an unknown key is an error
rather than silently ignored. The merged recipe is copied into every checkpoint and
into the metadata of the exported theta_M file.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Folder that relative data paths in a recipe are resolved against (the repository root).
ROOT = Path(__file__).resolve().parents[1]

DEFAULTS: dict[str, Any] = {
    "name": "",
    "channels": 3,
    "scales": [2.0],
    # "mzsr" (the plain network) or "scale-aware" (training.scale_tasks only).
    "architecture": "mzsr",
    # Scale-pair tasks (training.scale_tasks): asymmetric [sy, sx] pairs drawn beside the
    # symmetric `scales`; the layers followed by a scale-aware adaptation; the meta
    # learning rate of those (fresh) modules; whether only they are meta-learned; the
    # share of tasks without blur.
    "scale_tasks": {
        "pairs": [],
        "adaptation_layers": [2, 5],
        "module_lr": 1e-3,
        "freeze_body": False,
        "plain_share": 0.0,
    },
    "degradation": "direct",
    "seed": 0,
    "device": "auto",
    # "auto" uses bfloat16 autocast only where the hardware computes it natively.
    "precision": "auto",
    # Channels-last layout on CPU: ~25% faster first-order convolutions in float32.
    "channels_last": True,
    "network": {"features": 64, "layers": 8},
    "data": {
        "train": "../shared/data/train",
        "val": "",
        "val_images": 4,
        "val_crop": 96,
        "texture_threshold": 0.015,
        # Images (paths relative to the training folder) never trained on: another
        # validation split, e.g. benchmarks/real_images.py's photos (recipes real*.toml).
        "exclude": [],
    },
    "pretrain": {
        "steps": 1000,
        "batch": 16,
        "patch": 64,
        "lr": 4e-4,
        "lr_halve_every": 100_000,
        "lr_min": 1e-4,
        # "none": MATLAB bicubic LR (the paper's). "meta": every patch blurred with its own
        # kernel from the meta stage's distribution (meta.kernel_variance_min), then
        # subsampled by the recipe's degradation: supervised, first-order training on
        # the tasks' degradations.
        "kernels": "none",
        # Wall-time budget of the stage in minutes (0: none); the run then stops early,
        # validates, checkpoints and exports as after its last step.
        "max_minutes": 0,
        # CPU-time budget (process CPU time of the training steps, all threads; 0: none).
        "max_cpu_minutes": 0,
        "log_every": 10,
        "val_every": 500,
        "checkpoint_every": 500,
    },
    "meta": {
        "iterations": 1000,
        "tasks": 5,
        "support": 8,
        "query": 8,
        "patch": 64,
        "inner_steps": 5,
        "inner_lr": 1e-2,
        "first_order": False,
        # Second order only through the last inner step's gradient (earlier ones first order).
        "second_order_last_only": False,
        "meta_lr": 1e-4,
        # Linear warm-up over this many iterations, then "none" (constant) or "cosine"
        # decay to meta_lr_min at `iterations`.
        "meta_lr_warmup": 0,
        "meta_lr_decay": "none",
        "meta_lr_min": 1e-6,
        # Smallest task-kernel variance; the paper's 1.0 leaves out sharp kernels (g^d_0.2).
        "kernel_variance_min": 1.0,
        # Share of tasks without blur (1x1 identity kernel; with bicubic subsampling the
        # plain bicubic LR of the paper's Table 1, which the Gaussian tasks leave out).
        "identity_kernel_share": 0.0,
        "anneal_iterations": 3000,
        "max_minutes": 0,
        "max_cpu_minutes": 0,
        "log_every": 5,
        "val_every": 100,
        "checkpoint_every": 50,
    },
    # Real-degradation tasks (training.real_tasks, training.real_degradations): relative
    # weights of the kernel families, the share of noisy tasks and the range of their
    # noise floor (standard deviation, [0, 1] units), the share of JPEG tasks and their
    # qualities, the share of sharpened tasks (unsharp masking: Gaussian variance in LR
    # px^2, amount), the side of a task's LR image and the limit of its HR side.
    "real_tasks": {
        "families": {
            "none": 1.0,
            "gaussian": 1.0,
            "generalised": 1.0,
            "disk": 1.0,
            "motion": 0.5,
            "airy": 1.0,
        },
        "noise_share": 0.5,
        "noise_std": [0.002, 0.03],
        "jpeg_share": 0.3,
        "jpeg_quality": [50, 95],
        "sharpen_share": 0.0,
        "sharpen_variance": [0.3, 2.0],
        "sharpen_amount": [0.2, 1.5],
        "lr_side": 96,
        "max_hr_side": 320,
    },
    "validation": {
        # "kernels": every crop x kernel x scale below, adapted with the true kernel
        # (training.validate); "real": one real-degradation chain per crop and scale,
        # super-resolved by the package's defaults (training.validate_real).
        "set": "kernels",
        # [l1, l2, theta] variances; defaults are the paper's g_2.0 and g_ani. [0, 0, 0]:
        # no blur (1x1 identity kernel; with bicubic subsampling the paper's Table 1).
        "kernels": [[2.0, 2.0, 0.0], [4.0, 1.0, -0.5]],
        "kernel_size": 21,
        "scales": [],
        "steps": [0, 1, 10],
    },
    "meta_test": {"lr_schedule": [[0, 1e-2]]},
}


class RecipeError(ValueError):
    """A recipe file is malformed or holds unknown keys or invalid values."""


def _merge(base: dict[str, Any], override: dict[str, Any], where: str) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if key not in base:
            raise RecipeError(f"unknown recipe key {where}{key!r}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise RecipeError(f"recipe key {where}{key!r} must be a table")
            out[key] = _merge(base[key], value, f"{where}{key}.")
        else:
            out[key] = value
    return out


def _check(recipe: dict[str, Any]) -> None:
    if not recipe["name"]:
        raise RecipeError("recipe has no name")
    if recipe["channels"] not in (1, 3):
        raise RecipeError(f"channels must be 1 or 3, got {recipe['channels']}")
    if recipe["degradation"] not in ("direct", "bicubic"):
        raise RecipeError(f"degradation must be direct or bicubic, got {recipe['degradation']}")
    scales = recipe["scales"]
    if not scales or any(float(s) < 1.0 for s in scales):
        raise RecipeError(f"scales must be a non-empty list of factors >= 1, got {scales}")
    meta = recipe["meta"]
    if meta["inner_steps"] < 1 or meta["tasks"] < 1 or meta["support"] < 1 or meta["query"] < 1:
        raise RecipeError("meta tasks, support, query and inner_steps must be >= 1")
    if meta["first_order"] and meta["second_order_last_only"]:
        raise RecipeError("meta first_order and second_order_last_only exclude each other")
    if meta["meta_lr_decay"] not in ("none", "cosine"):
        raise RecipeError(f"meta meta_lr_decay must be none or cosine, got {meta['meta_lr_decay']}")
    if meta["meta_lr_warmup"] < 0:
        raise RecipeError(f"meta meta_lr_warmup must be >= 0, got {meta['meta_lr_warmup']}")
    if recipe["pretrain"]["kernels"] not in ("none", "meta"):
        raise RecipeError(
            f"pretrain kernels must be none or meta, got {recipe['pretrain']['kernels']}"
        )
    if not 0 <= meta["identity_kernel_share"] <= 1:
        raise RecipeError(
            f"meta identity_kernel_share must be in [0, 1], got {meta['identity_kernel_share']}"
        )
    if recipe["validation"]["set"] not in ("kernels", "real"):
        raise RecipeError(
            f"validation set must be kernels or real, got {recipe['validation']['set']!r}"
        )
    real = recipe["real_tasks"]
    shares = ("noise_share", "jpeg_share", "sharpen_share")
    if not all(0 <= real[share] <= 1 for share in shares):
        raise RecipeError("real_tasks noise_share, jpeg_share and sharpen_share must be in [0, 1]")
    for key in ("sharpen_variance", "sharpen_amount"):
        if not 0 < real[key][0] <= real[key][1]:
            raise RecipeError(f"real_tasks {key} must be [low, high], 0 < low <= high")
    if not 0 < real["noise_std"][0] <= real["noise_std"][1]:
        raise RecipeError(
            f"real_tasks noise_std must be [low, high], 0 < low <= high, got {real['noise_std']}"
        )
    if not 1 <= real["jpeg_quality"][0] <= real["jpeg_quality"][1] <= 95:
        raise RecipeError(
            f"real_tasks jpeg_quality must be [low, high] within 1-95, got {real['jpeg_quality']}"
        )
    if min(real["families"].values()) < 0 or not sum(real["families"].values()) > 0:
        raise RecipeError("real_tasks families need weights >= 0, not all 0")
    low = meta["kernel_variance_min"]
    if not 0 < low < 2.5 * min(float(s) for s in scales):
        raise RecipeError(
            f"meta kernel_variance_min must be > 0 and below 2.5 x the smallest scale, got {low}"
        )


def _override(raw: dict[str, Any], assignment: str) -> None:
    key, sep, text = assignment.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"override {assignment!r} is not KEY=VALUE (e.g. meta.patch=48)")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text  # a bare word, e.g. meta.meta_lr_decay=cosine
    *tables, name = key.strip().split(".")
    target = raw
    for table in tables:
        target = target.setdefault(table, {})
        if not isinstance(target, dict):
            raise RecipeError(f"override {assignment!r}: {table!r} is not a table")
    target[name] = value


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Read a TOML recipe and merge it over :data:`DEFAULTS`.

    Parameters
    ----------
    path : str or Path
        The recipe file.
    overrides : sequence of str
        ``"table.key=value"`` assignments (``value`` in TOML syntax, or a bare word
        taken as a string) applied over the file, checked like it.

    Returns
    -------
    dict
        The complete recipe, with ``"source"`` (the file's text), ``"file"`` and
        ``"overrides"`` added.

    Raises
    ------
    RecipeError
        Unknown keys, wrong types, or invalid values.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: {exc}") from exc
    for assignment in overrides:
        _override(raw, assignment)
    recipe = _merge(DEFAULTS, raw, "")
    _check(recipe)
    recipe["scales"] = [float(s) for s in recipe["scales"]]
    if not recipe["validation"]["scales"]:
        scales = recipe["scales"]
        recipe["validation"]["scales"] = sorted({min(scales), max(scales)})
    recipe["file"] = path.name
    recipe["source"] = text
    recipe["overrides"] = list(overrides)
    return recipe


def resolve_data(folder: str | Path) -> Path:
    """A recipe's data folder; relative paths are taken from the repository root."""
    path = Path(folder).expanduser()
    return path if path.is_absolute() else (ROOT / path).resolve()
