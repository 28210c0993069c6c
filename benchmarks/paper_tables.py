"""Reproduce the MZSR paper's tables on a folder of HR images, ours beside the paper's.

For every setting (Table 2's four kernels, Table 1's bicubic degradation, x4 with
g^d_2.0) the LR inputs are made from the HR images, every method super-resolves them,
and PSNR/SSIM (paper protocol, shave = scale) and the time per image (adaptation +
inference, warm device, CUDA synchronised; median over the images) are recorded.

    python -m benchmarks.paper_tables --data ../shared/data/bench/Set5 --set-name Set5 \\
        --device cpu --out benchmarks/results

Writes ``paper_tables_<set>_<device>.md`` and ``.json`` (every per-image value).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_mzsr.core.devices import resolve_device
from napari_mzsr.core.metrics import psnr, ssim

from .lr_inputs import (
    SETTINGS,
    Setting,
    add_image_set_options,
    hr_and_lr,
    load_hr_images,
)
from .machine import add_threads_option, apply_threads, machine_description, synchronize
from .methods import MethodUnavailable, RunContext, get_method
from .model_choice import add_models_option, parse_models, resolve_models
from .paper_numbers import PAPER_SECONDS, PAPER_TIME_DEVICE, paper_cell
from .report import command_line, fmt, markdown_table, write_results
from .zssr import ZSSRConfig

DEFAULT_METHODS = ("Bicubic", "ZSSR", "MZSR(0)", "MZSR(1)", "MZSR(10)")
TABLE_TITLES = {
    "Table 2": "Table 2: x2, four blur kernels",
    "Table 1": "Table 1: x2, plain bicubic degradation",
    "x4": "x4, g^d_2.0 (direct)",
}


def _warm_up(setting: Setting, lr: np.ndarray, methods: Sequence[str], ctx: RunContext) -> None:
    # The first call on a device pays for kernel selection and allocations.
    if any(m.startswith("MZSR") for m in methods) and setting.model in ctx.models:
        get_method("MZSR(1)")(lr, setting, ctx)
    if "ZSSR" in methods:
        config = replace(ctx.zssr, max_iters=2, back_projection_iters=0, ensemble=False)
        quick = replace(ctx, zssr=config)
        get_method("ZSSR")(lr, setting, quick)


def _mean(values: list[float]) -> float:
    return math.inf if any(math.isinf(v) for v in values) else float(np.mean(values))


def evaluate(
    hr_images: Mapping[str, np.ndarray],
    settings: Sequence[Setting],
    methods: Sequence[str],
    ctx: RunContext,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Run every method on every setting.

    Returns
    -------
    dict
        ``results[setting][method]`` with ``per_image`` (name -> psnr, ssim, seconds and
        the method's own facts), ``psnr``/``ssim`` (means), ``seconds`` (median), or
        ``unavailable`` (the reason) when the method could not run.
    """
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for setting in settings:
        cases = {stem: hr_and_lr(hr, setting) for stem, hr in hr_images.items()}
        _warm_up(setting, next(iter(cases.values()))[1], methods, ctx)
        results[setting.name] = {}
        for name in methods:
            method = get_method(name)
            per_image: dict[str, dict[str, Any]] = {}
            try:
                for stem, (hr, lr) in cases.items():
                    synchronize(ctx.device)
                    start = time.perf_counter()
                    sr, facts = method(lr, setting, ctx)
                    synchronize(ctx.device)
                    seconds = time.perf_counter() - start
                    p, s = psnr(sr, hr, setting.shave), ssim(sr, hr, setting.shave)
                    per_image[stem] = {"psnr": p, "ssim": s, "seconds": seconds, **facts}
                    log(f"{setting.name:<11} {name:<9} {stem:<12} {p:6.2f} dB {seconds:8.2f} s")
            except MethodUnavailable as exc:
                results[setting.name][name] = {"unavailable": str(exc)}
                log(f"{setting.name:<11} {name:<9} unavailable: {exc}")
                continue
            values = list(per_image.values())
            results[setting.name][name] = {
                "psnr": _mean([v["psnr"] for v in values]),
                "ssim": float(np.mean([v["ssim"] for v in values])),
                "seconds": statistics.median(v["seconds"] for v in values),
                "per_image": per_image,
            }
    return results


def _steps_cell(row: Mapping[str, Any]) -> str:
    facts = list(row.get("per_image", {}).values())
    if facts and "iterations" in facts[0]:
        its = sorted(v["iterations"] for v in facts)
        return f"{statistics.median(its):g} it. ({its[0]}-{its[-1]})"
    if facts and "steps" in facts[0]:
        return str(facts[0]["steps"])
    return "—"


def markdown_report(
    results: Mapping[str, Mapping[str, Mapping[str, Any]]],
    set_name: str,
    image_names: Sequence[str],
) -> list[str]:
    """Markdown lines: one table per paper table (ours beside the paper's for every
    cell), the speed-up over ZSSR and the per-image values."""
    lines: list[str] = []
    for table, title in TABLE_TITLES.items():
        rows = []
        for setting_name, by_method in results.items():
            if SETTINGS[setting_name].table != table:
                continue
            for method, row in by_method.items():
                paper = paper_cell(setting_name, set_name, method)
                paper_psnr = fmt(paper.psnr if paper else None)
                if paper and paper.note:
                    paper_psnr += f" ({paper.note})"
                if "unavailable" in row:
                    ours = [f"n/a: {row['unavailable']}", "—", "—"]
                else:
                    ours = [fmt(row["psnr"]), fmt(row["ssim"], 4), fmt(row["seconds"])]
                rows.append(
                    [
                        setting_name,
                        method,
                        _steps_cell(row),
                        ours[0],
                        paper_psnr,
                        ours[1],
                        fmt(paper.ssim if paper else None, 4),
                        ours[2],
                    ]
                )
        if rows:
            header = ["kernel", "method", "steps", "PSNR ours", "PSNR paper"]
            header += ["SSIM ours", "SSIM paper", "s/image (median)"]
            lines += [f"## {title}", "", *markdown_table(header, rows), ""]
    lines += _speed_lines(results)
    lines += ["## Per image (PSNR dB / SSIM)", ""]
    rows = []
    for setting_name, by_method in results.items():
        for method, row in by_method.items():
            cells = row.get("per_image", {})
            rows.append(
                [setting_name, method]
                + [
                    f"{fmt(cells[n]['psnr'])} / {fmt(cells[n]['ssim'], 4)}" if n in cells else "—"
                    for n in image_names
                ]
            )
    lines += [*markdown_table(["kernel", "method", *image_names], rows), ""]
    return lines


def _speed_lines(results: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    rows = []
    for setting_name, by_method in results.items():
        zssr_s = by_method.get("ZSSR", {}).get("seconds")
        for method, row in by_method.items():
            if method.startswith("MZSR") and zssr_s and row.get("seconds"):
                rows.append(
                    [
                        setting_name,
                        method,
                        fmt(row["seconds"]),
                        fmt(zssr_s),
                        fmt(zssr_s / row["seconds"], 1),
                    ]
                )
    if not rows:
        return []
    paper = ", ".join(f"{m} {s:g} s" for m, s in PAPER_SECONDS.items())
    header = ["kernel", "method", "s/image", "ZSSR s/image", "speed-up over ZSSR"]
    return [
        "## Speed-up over ZSSR (same run, median seconds per image)",
        "",
        f"Paper (Table 4, {PAPER_TIME_DEVICE}): {paper}.",
        "",
        *markdown_table(header, rows),
        "",
    ]


def main(argv: list[str] | None = None) -> Path:
    """Command-line entry point; returns the path of the Markdown report."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_image_set_options(parser)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument(
        "--methods", nargs="+", default=list(DEFAULT_METHODS), help="rows; MZSR(n) for any n"
    )
    parser.add_argument("--zssr-iters", type=int, default=3000, help="cap on ZSSR iterations")
    parser.add_argument(
        "--zssr-features", type=int, default=64, help="ZSSR width (smaller for smoke tests)"
    )
    parser.add_argument(
        "--zssr-bp-iters", type=int, default=10, help="ZSSR back-projection iterations"
    )
    parser.add_argument("--model-dir", type=Path, help="folder with <name>.pt theta_M files")
    add_models_option(parser)
    parser.add_argument("--precision", default="float32", help="MZSR meta-test precision")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", help="output file stem (default: paper_tables_<set>_<device>)")
    add_threads_option(parser)
    args = parser.parse_args(argv)
    apply_threads(args)

    device = resolve_device(args.device)
    set_name = args.set_name or args.data.resolve().name
    settings = [SETTINGS[name] for name in args.settings]
    for name in args.methods:
        get_method(name)  # fail on a typo before any work
    needed = sorted({s.model for s in settings}) if any("MZSR" in m for m in args.methods) else []
    models, missing = resolve_models(needed, args.model_dir, parse_models(args.models))
    for name, why in missing.items():
        print(f"warning: MZSR rows for {name} skipped: {why}", file=sys.stderr)
    zssr_config = ZSSRConfig(max_iters=args.zssr_iters, features=args.zssr_features, seed=args.seed)
    ctx = RunContext(device, models, zssr_config, args.precision, args.seed)
    hr_images = load_hr_images(args.data, args.limit)

    results = evaluate(hr_images, settings, args.methods, ctx)
    for setting_name, by_method in results.items():
        for method, row in by_method.items():
            cell = paper_cell(setting_name, set_name, method)
            row["paper"] = asdict(cell) if cell else None

    machine = machine_description(device)
    command = command_line("benchmarks.paper_tables", argv)
    name = args.name or f"paper_tables_{set_name}_{device.type}"
    model_facts = {
        n: {"source": m.source, "training": m.info.training, "lr_schedule": m.info.lr_schedule}
        for n, m in models.items()
    }
    intro = [
        "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()),
        "",
        f"Images: {len(hr_images)} ({', '.join(hr_images)}). PSNR/SSIM on Y, shave = scale. "
        "MZSR: true kernel (`+est`: estimated from the LR image; `+SE`: self-ensemble; "
        f"`+BP`: 10 back-projection iterations), {args.precision}, each theta_M's step "
        "learning rates; "
        f"models: {', '.join(f'{n} = {m.source}' for n, m in models.items()) or 'none'}. "
        f"ZSSR: at most {args.zssr_iters} iterations, 8-way self-ensemble + back-projection. "
        "Time: adaptation + inference per image, warm device. PSNR `inf`: the SR image "
        "equals the HR after rounding (not capped; a mean over images with one `inf` is `inf`).",
        "",
    ]
    write_results(
        args.out,
        name,
        f"MZSR benchmark on {set_name} ({machine.get('gpu', machine['cpu'])})",
        command,
        intro + markdown_report(results, set_name, list(hr_images)),
        {
            "set": set_name,
            "machine": machine,
            "images": list(hr_images),
            "precision": args.precision,
            "zssr": asdict(zssr_config),
            "models": model_facts,
            "missing_models": missing,
            "results": results,
        },
    )
    md_path = args.out / f"{name}.md"
    print(f"wrote {md_path} and {md_path.with_suffix('.json')}")
    return md_path


if __name__ == "__main__":
    main()
