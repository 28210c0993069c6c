"""Scale-arbitrary and asymmetric super-resolution (issue 18): bicubic, ZSSR, the plain
``multiscale`` MZSR, the scale-aware ``arbitrary`` MZSR and the single-scale models
where they exist, at x1.5 ... x4 and at four asymmetric pairs, under two degradations.

Degradations (both subsample with the MATLAB bicubic, ArbSR's protocol): ``bicubic``,
no blur; ``blur``, an axis-aligned Gaussian of variance ``1.3 (s / 2)^2`` along each
axis of factor ``s`` (g^b_1.3 at x2), then bicubic. The HR image is cropped so that the
LR size times the factor is a whole number on each axis (ArbSR's protocol); metrics are
the paper's (Y channel, uint8, shave ``int(max(sy, sx))``). MZSR and ZSSR get the true
kernel; ZSSR is this project's baseline (``benchmarks/zssr.py``) with its iterations
capped (``--zssr-iters``, 100 here) and, for unequal factors, only the flips and the
half turn (a quarter turn would swap the factors).

    python -m benchmarks.arbitrary_scale --data ../shared/data/bench/Set5 \\
        ../shared/data/bench/Set14 --zssr-sets Set5 --threads 1 --out benchmarks/results

Sub-pixel phase. ArbSR's scale-aware upsampling exists because, at a non-integer
factor, output pixels sit at different fractional positions of the LR grid. This
network works on the interpolated image and never sees that position; whether a
position-aware component could help is measured by the PSNR of each phase class
(output pixels grouped by the fractional part of their LR position
``(j + 0.5) / s - 0.5`` along each axis): ``phase spread`` is the best class's PSNR
minus the worst's, in the same run.

``--gray`` scores the one-channel models: every HR image becomes its Y channel (uint8,
16..235), the scale-aware row uses ``arbitrary-gray`` and the control row the weights it
started from, ``direct-x2-gray``'s (the other rows keep their RGB models, which serve a
grey image channel by channel).

Every cell is kept in ``<out>/<name>.partial.json`` as it is computed, and a re-run
with the same steps, ZSSR and adaptation options, image limit, device and weights
computes only the cells missing there (e.g. ZSSR at settings added with
``--zssr-settings``, or the rows of a model added since) and reports them all; delete
that file to start afresh. Writes ``<name>.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_mzsr.core.degradation import degrade
from napari_mzsr.core.devices import resolve_device
from napari_mzsr.core.kernels import gaussian_kernel
from napari_mzsr.core.metrics import luminance, psnr, ssim
from napari_mzsr.core.resize import imresize
from napari_mzsr.io.atomic import atomic_path
from napari_mzsr.io.model_file import MZSRModel, checksum
from napari_mzsr.pipeline.run import super_resolve

from .lr_inputs import load_hr_images
from .machine import add_threads_option, apply_threads, machine_description, synchronize
from .model_choice import add_models_option, parse_models, resolve_models
from .report import command_line, fmt, markdown_table, write_results
from .zssr import ZSSRConfig, zssr_super_resolve

Pair = tuple[float, float]
SYMMETRIC = (1.5, 2.0, 2.5, 3.0, 3.5, 4.0)
ASYMMETRIC = ((1.5, 4.0), (2.0, 3.5), (3.5, 2.0), (4.0, 1.5))
DEGRADATIONS = ("bicubic", "blur")
BLUR_VARIANCE_AT_X2 = 1.3
# Single-scale shipped models by factor; direct-x4 subsamples directly ([0::4]), so on
# these bicubic degradations its output grid is shifted (reported, not hidden).
SINGLE_SCALE = {2.0: "bicubic-x2", 4.0: "direct-x4"}
METHODS = ("Bicubic", "ZSSR", "multiscale MZSR", "scale-aware MZSR", "single-scale MZSR")
# A control: the weights the scale-aware model started from (an x2 model's, not trained
# over scales), meta-tested at any factor.
X2_ANYWHERE = "x2 weights at any scale"
ALL_METHODS = (*METHODS, X2_ANYWHERE)
TARGETS = "within 0.2 dB of single-scale at x2 and x4; >= 0.3 dB above multiscale at every non-integer and asymmetric setting; >= 1 dB above bicubic everywhere"  # noqa: E501


@dataclass(frozen=True)
class Setting:
    """A degradation at a factor pair."""

    degradation: str
    scale: Pair

    @property
    def name(self) -> str:
        sy, sx = self.scale
        factor = f"x{sy:g}" if sy == sx else f"{sy:g}x{sx:g}"
        return f"{self.degradation} {factor}"

    @property
    def kernel(self) -> np.ndarray:
        """Identity (no blur) or the axis-aligned Gaussian of the module docstring, on a
        grid of +-3 standard deviations (15 x 15 at x4)."""
        if self.degradation == "bicubic":
            return np.ones((1, 1))
        sy, sx = self.scale
        lx, ly = (BLUR_VARIANCE_AT_X2 * (s / 2) ** 2 for s in (sx, sy))
        size = 2 * math.ceil(3 * math.sqrt(max(lx, ly))) + 1
        return gaussian_kernel(lx, ly, 0.0, size=size)

    @property
    def shave(self) -> int:
        return int(max(self.scale))

    @property
    def integer(self) -> bool:
        return all(float(s).is_integer() for s in self.scale)

    @property
    def symmetric(self) -> bool:
        return self.scale[0] == self.scale[1]


def row_models(gray: bool = False) -> dict[str, str]:
    """The theta_M name of each MZSR row but the single-scale one (RGB, or the
    one-channel models where shipped)."""
    if gray:
        return {"multiscale MZSR": "multiscale", "scale-aware MZSR": "arbitrary-gray",
                X2_ANYWHERE: "direct-x2-gray"}  # fmt: skip
    return {"multiscale MZSR": "multiscale", "scale-aware MZSR": "arbitrary",
            X2_ANYWHERE: "bicubic-x2"}  # fmt: skip


def settings(degradations: Sequence[str] = DEGRADATIONS) -> list[Setting]:
    pairs = [(s, s) for s in SYMMETRIC] + list(ASYMMETRIC)
    return [Setting(d, p) for d in degradations for p in pairs]


def hr_and_lr(hr: np.ndarray, setting: Setting) -> tuple[np.ndarray, np.ndarray]:
    """``hr`` cropped so that ``lr_size * s`` is whole on each axis, and its uint8 LR."""
    sizes = []
    for length, s in zip(hr.shape[:2], setting.scale, strict=True):
        step = Fraction(s).limit_denominator(100).denominator
        low = int(length / s) // step * step
        sizes.append(round(low * s))
    hr = hr[: sizes[0], : sizes[1]]
    lr = degrade(hr.astype(np.float64) / 255.0, setting.kernel, setting.scale, "bicubic")
    return hr, np.rint(np.clip(lr, 0, 1) * 255).astype(np.uint8)


def phase_classes(length: int, scale: float) -> np.ndarray:
    """Class of each output pixel of an axis: the rank of the fractional part of its LR
    position ``(j + 0.5) / s - 0.5`` among the axis's distinct fractional parts."""
    fraction = np.round(((np.arange(length) + 0.5) / scale - 0.5) % 1.0, 6) % 1.0
    return np.unique(fraction, return_inverse=True)[1]


def phase_errors(sr: np.ndarray, hr: np.ndarray, setting: Setting) -> dict[str, list[float]]:
    """Sum of squared Y errors and pixel count per phase class (rows x columns), after
    the shave; classes as ``"row_class,col_class"``."""
    error = (luminance(sr) - luminance(hr)) ** 2
    rows = phase_classes(error.shape[0], setting.scale[0])
    cols = phase_classes(error.shape[1], setting.scale[1])
    k = setting.shave
    inner = (slice(k, error.shape[0] - k), slice(k, error.shape[1] - k))
    keys = np.char.add(np.char.add(rows[:, None].astype(str), ","), cols[None, :].astype(str))
    keys, error = keys[inner], error[inner]
    out = {}
    for key in np.unique(keys):
        chosen = error[keys == key]
        out[str(key)] = [float(chosen.sum()), int(chosen.size)]
    return out


def phase_spread(cell: Mapping[str, Any] | None) -> float | None:
    """Best minus worst phase class PSNR (dB) over a method's images; None for one class."""
    if not cell:
        return None
    totals: dict[str, list[float]] = {}
    for values in cell.values():
        for key, (sse, count) in values.get("phases", {}).items():
            total = totals.setdefault(key, [0.0, 0])
            total[0] += sse
            total[1] += count
    if len(totals) < 2:
        return None
    psnrs = [10 * np.log10(255.0**2 * n / max(sse, 1e-12)) for sse, n in totals.values()]
    return float(max(psnrs) - min(psnrs))


def _mzsr(model: MZSRModel, steps: int, device: torch.device, adapt: Mapping[str, Any]):
    def run(lr: np.ndarray, setting: Setting) -> np.ndarray:
        return super_resolve(
            lr,
            scale=setting.scale,
            kernel=setting.kernel,
            steps=steps,
            model=model,
            device=device,
            precision="float32",
            output_dtype=np.uint8,
            **adapt,
        )

    return run


def _bicubic(lr: np.ndarray, setting: Setting) -> np.ndarray:
    up = imresize(lr.astype(np.float64) / 255.0, setting.scale)
    return np.rint(np.clip(up, 0, 1) * 255).astype(np.uint8)


def _zssr(config: ZSSRConfig, device: torch.device):
    def run(lr: np.ndarray, setting: Setting) -> np.ndarray:
        sr, _ = zssr_super_resolve(lr, setting.kernel, setting.scale, "bicubic", config, device)
        return sr

    return run


def method_runner(
    method: str,
    setting: Setting,
    models: Mapping[str, MZSRModel],
    steps: int,
    zssr: ZSSRConfig,
    device: torch.device,
    adapt: Mapping[str, Any] | None = None,
    gray: bool = False,
):
    """The function for ``method`` at ``setting``, or None where the method has no row
    (no single-scale model of that factor, or a missing model). ``adapt`` holds the
    crop-adaptation options of the MZSR rows (``adapt_patch``, ``adapt_patches``);
    ``gray`` picks the one-channel models (:func:`row_models`)."""
    if method == "Bicubic":
        return _bicubic
    if method == "ZSSR":
        return _zssr(zssr, device)
    name = row_models(gray).get(method)
    if method == "single-scale MZSR":
        name = SINGLE_SCALE.get(setting.scale[0]) if setting.symmetric else None
    if name is None or name not in models:
        return None
    model = models[name]
    if method == X2_ANYWHERE:
        anywhere = replace(model.info, scales=[1.0, 4.0], name=X2_ANYWHERE)
        model = MZSRModel(anywhere, model.state_dict, model.source)
    return _mzsr(model, steps, device, adapt or {})


def _load_partial(path: Path, key: str) -> dict[str, Any]:
    if path.is_file():
        data = json.loads(path.read_text())
        if data.get("key") == key:
            return data["cells"]
    return {}


def _save_partial(path: Path, key: str, cells: dict[str, Any]) -> None:
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps({"key": key, "cells": cells}))


def cells_key(
    models: Mapping[str, MZSRModel],
    steps: int,
    zssr: ZSSRConfig,
    device: torch.device,
    adapt: Mapping[str, Any],
    limit: int | None,
    gray: bool = False,
) -> str:
    """What a cell's result depends on beyond its set, setting, method and image: kept
    cells are reused by any command with the same key (other methods, settings or
    sets may be added)."""
    weights = {name: checksum(model.state_dict) for name, model in sorted(models.items())}
    config = {"steps": steps, "zssr": asdict(zssr), "device": str(device), "adapt": adapt}
    config |= {"limit": limit, "weights": weights} | ({"gray": True} if gray else {})
    return json.dumps(config, sort_keys=True)


def evaluate(
    image_sets: Mapping[str, Mapping[str, np.ndarray]],
    all_settings: Sequence[Setting],
    methods: Sequence[str],
    models: Mapping[str, MZSRModel],
    *,
    steps: int,
    zssr: ZSSRConfig,
    zssr_sets: Sequence[str] | None,
    zssr_settings: Sequence[str] | None = None,
    device: torch.device,
    partial: Path | None = None,
    key: str = "",
    log=print,
    adapt: Mapping[str, Any] | None = None,
    gray: bool = False,
) -> dict[str, Any]:
    """Every method on every image of every set at every setting (ZSSR only on
    ``zssr_sets`` and at ``zssr_settings``, by setting name, where given).

    Returns ``cells[set][setting][method][image] = {"psnr", "ssim", "seconds"}``.
    """
    cells = _load_partial(partial, key) if partial else {}
    for set_name, images in image_sets.items():
        for setting in all_settings:
            for method in methods:
                if method == "ZSSR" and (
                    (zssr_sets is not None and set_name not in zssr_sets)
                    or (zssr_settings is not None and setting.name not in zssr_settings)
                ):
                    continue
                run = method_runner(method, setting, models, steps, zssr, device, adapt, gray)
                if run is None:
                    continue
                done = cells.setdefault(set_name, {}).setdefault(setting.name, {})
                done = done.setdefault(method, {})
                for stem, hr_full in images.items():
                    if stem in done:
                        continue
                    hr, lr = hr_and_lr(hr_full, setting)
                    synchronize(device)
                    start = time.perf_counter()
                    sr = run(lr, setting)
                    synchronize(device)
                    seconds = time.perf_counter() - start
                    if sr.shape != hr.shape:
                        raise AssertionError(f"{method}: {sr.shape} != {hr.shape}")
                    done[stem] = {
                        "psnr": psnr(sr, hr, shave=setting.shave),
                        "ssim": ssim(sr, hr, shave=setting.shave),
                        "seconds": seconds,
                        "phases": phase_errors(sr, hr, setting),
                    }
                    log(
                        f"{set_name:<6} {setting.name:<16} {method:<18} {stem:<11} "
                        f"{done[stem]['psnr']:6.2f} dB {seconds:7.2f} s"
                    )
                    if partial:
                        _save_partial(partial, key, cells)
    return cells


def _mean(cell: Mapping[str, Any] | None, key: str = "psnr") -> float | None:
    if not cell:
        return None
    return float(np.mean([v[key] for v in cell.values()]))


def summary(cells: Mapping[str, Any], methods: Sequence[str]) -> dict[str, Any]:
    """Mean PSNR per set, setting and method, and the targets' margins."""
    out: dict[str, Any] = {}
    for set_name, by_setting in cells.items():
        for setting_name, by_method in by_setting.items():
            means = {m: _mean(by_method.get(m)) for m in methods}
            aware = means.get("scale-aware MZSR")
            margins = {}
            for other, key in (
                ("Bicubic", "vs_bicubic"),
                ("multiscale MZSR", "vs_multiscale"),
                ("single-scale MZSR", "vs_single_scale"),
            ):
                if aware is not None and means.get(other) is not None:
                    margins[key] = aware - means[other]
            spreads = {m: phase_spread(by_method.get(m)) for m in methods}
            out.setdefault(set_name, {})[setting_name] = {
                "psnr": means,
                "margins": margins,
                "phase_spread": spreads,
            }
    return out


def _target_cell(setting: Setting, margins: Mapping[str, float]) -> str:
    """Which targets this setting has and whether they are met."""
    notes = []
    if "vs_bicubic" in margins:
        notes.append(("bic", margins["vs_bicubic"] >= 1.0))
    if not (setting.integer and setting.symmetric) and "vs_multiscale" in margins:
        notes.append(("ms", margins["vs_multiscale"] >= 0.3))
    if setting.integer and setting.symmetric and "vs_single_scale" in margins:
        notes.append(("ss", margins["vs_single_scale"] >= -0.2))
    return " ".join(f"{name} {'ok' if ok else 'MISSED'}" for name, ok in notes) or "—"


def markdown_report(
    cells: Mapping[str, Any], all_settings: Sequence[Setting], methods: Sequence[str]
) -> list[str]:
    by_name = {s.name: s for s in all_settings}
    table = summary(cells, methods)
    lines = [f"Targets: {TARGETS}.", ""]
    for set_name, by_setting in table.items():
        rows = []
        for setting_name, row in by_setting.items():
            means, margins = row["psnr"], row["margins"]
            rows.append(
                [setting_name]
                + [fmt(means.get(m)) for m in methods]
                + [
                    fmt(margins.get("vs_bicubic"), 2, "—"),
                    fmt(margins.get("vs_multiscale"), 2, "—"),
                    fmt(margins.get("vs_single_scale"), 2, "—"),
                    _target_cell(by_name[setting_name], margins),
                ]
            )
        header = ["setting", *methods, "SA - bic", "SA - ms", "SA - single", "targets"]
        lines += [f"## {set_name}: mean PSNR (dB, Y)", "", *markdown_table(header, rows), ""]
    lines += [
        "## Sub-pixel phase spread (dB: best minus worst phase class of output pixels)",
        "",
    ]
    rows = []
    for set_name, by_setting in table.items():
        for setting_name, row in by_setting.items():
            spreads = row["phase_spread"]
            if any(v is not None for v in spreads.values()):
                rows.append([set_name, setting_name] + [fmt(spreads.get(m)) for m in methods])
    lines += [*markdown_table(["set", "setting", *methods], rows), ""]
    lines += ["## Seconds per image (median)", ""]
    rows = []
    for set_name, by_setting in cells.items():
        for method in methods:
            times = [
                v["seconds"]
                for by_method in by_setting.values()
                for v in by_method.get(method, {}).values()
            ]
            if times:
                rows.append([set_name, method, fmt(float(np.median(times)))])
    lines += [*markdown_table(["set", "method", "s/image"], rows), ""]
    return lines


def main(argv: list[str] | None = None) -> Path:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="HR image folders")
    parser.add_argument("--limit", type=int, help="first N images of each folder")
    parser.add_argument("--degradations", nargs="+", default=list(DEGRADATIONS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=ALL_METHODS)
    parser.add_argument("--steps", type=int, default=10, help="MZSR adaptation steps")
    parser.add_argument(
        "--adapt-patch",
        default="auto",
        help="MZSR crop adaptation: patch side, 'auto' (package default) or 'none' (whole image)",
    )
    parser.add_argument("--adapt-patches", type=int, default=4, help="patches per step")
    parser.add_argument("--zssr-iters", type=int, default=100)
    parser.add_argument("--zssr-features", type=int, default=64)
    parser.add_argument("--zssr-sets", nargs="*", help="run ZSSR on these sets only")
    parser.add_argument(
        "--settings", nargs="*", help="these settings only ('bicubic x2', 'blur 1.5x4', ...)"
    )
    parser.add_argument(
        "--zssr-settings", nargs="*", help="run ZSSR at these settings only ('blur 1.5x4', ...)"
    )
    parser.add_argument("--gray", action="store_true", help="Y channel, one-channel models")
    parser.add_argument("--model-dir", type=Path, help="folder with <name>.pt theta_M files")
    add_models_option(parser)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", help="output stem (default arbitrary_scale_<sets>_<device>)")
    add_threads_option(parser)
    args = parser.parse_args(argv)
    apply_threads(args)
    for d in args.degradations:
        if d not in DEGRADATIONS:
            parser.error(f"--degradations: choose from {DEGRADATIONS}, got {d!r}")
    setting_names = [s.name for s in settings(args.degradations)]
    for option in ("settings", "zssr_settings"):
        for name in getattr(args, option) or []:
            if name not in setting_names:
                flag = "--" + option.replace("_", "-")
                parser.error(f"{flag}: choose from {setting_names}, got {name!r}")

    patch = {"auto": "auto", "none": None}.get(args.adapt_patch.lower(), None)
    if args.adapt_patch.lower() not in ("auto", "none"):
        patch = int(args.adapt_patch)
    adapt = {"adapt_patch": patch, "adapt_patches": args.adapt_patches}
    device = resolve_device(args.device)
    image_sets = {folder.resolve().name: load_hr_images(folder, args.limit) for folder in args.data}
    if args.gray:
        image_sets = {
            set_name: {stem: luminance(hr).astype(np.uint8) for stem, hr in images.items()}
            for set_name, images in image_sets.items()
        }
    names = [*row_models(args.gray).values(), *sorted(set(SINGLE_SCALE.values()))]
    models, missing = resolve_models(names, args.model_dir, parse_models(args.models))
    for name, why in missing.items():
        print(f"warning: rows of {name} skipped: {why}", file=sys.stderr)
    zssr = replace(ZSSRConfig(), max_iters=args.zssr_iters, features=args.zssr_features)
    chosen = args.settings or setting_names
    all_settings = [s for s in settings(args.degradations) if s.name in chosen]
    command = command_line("benchmarks.arbitrary_scale", argv)
    gray = "_gray" if args.gray else ""
    name = args.name or f"arbitrary_scale_{'-'.join(image_sets)}{gray}_{device.type}"
    args.out.mkdir(parents=True, exist_ok=True)
    partial = args.out / f"{name}.partial.json"
    start = time.perf_counter()
    cells = evaluate(
        image_sets,
        all_settings,
        args.methods,
        models,
        steps=args.steps,
        zssr=zssr,
        zssr_sets=args.zssr_sets,
        zssr_settings=args.zssr_settings,
        device=device,
        partial=partial,
        key=cells_key(models, args.steps, zssr, device, adapt, args.limit, args.gray),
        adapt=adapt,
        gray=args.gray,
    )
    # The kept cells may hold settings this command did not ask for: report its own only.
    cells = {
        set_name: {name: cell for name, cell in by_setting.items() if name in chosen}
        for set_name, by_setting in cells.items()
    }
    machine = machine_description(device)
    lines = [
        f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}, "
        f"{machine['torch_threads']} thread(s), load average {machine.get('load_average_1min')} "
        f"at the end (timings loaded when above the cores). Wall time of this invocation: "
        f"{(time.perf_counter() - start) / 60:.1f} min.",
        "",
        *markdown_report(cells, all_settings, args.methods),
    ]
    facts = {n: {"source": m.source, "training": m.info.training} for n, m in models.items()}
    payload = {
        "machine": machine,
        "settings": [asdict(s) | {"name": s.name} for s in all_settings],
        "summary": summary(cells, args.methods),
        "cells": cells,
        "models": facts,
        "missing_models": missing,
        "zssr": asdict(zssr),
        "adapt": adapt,
    }
    md, _ = write_results(
        args.out, name, "Arbitrary-scale super-resolution (issue 18)", command, lines, payload
    )
    print(md)
    return md


if __name__ == "__main__":
    main()
