"""PSNR against wall seconds of MZSR and ZSSR configurations, and the two Pareto fronts
(issue 35): is MZSR's best configuration at or above ZSSR's best at every time budget?

Per setting (x2 ``g^d_2.0`` and ``g^b_1.3`` by default, or settings of the
arbitrary-scale grid with ``--grid``, run with the scale-aware ``arbitrary`` model) and
image: MZSR read after 0-20 steps of one run (patches as ``adapt_patch="auto"`` chooses,
inferred once and with the geometric self-ensemble, each with and without
``--back-projection`` iterations with the true kernel; and the whole image, inferred
once); ZSSR read after 10-300 iterations of one run, each inferred with its refinements
(8-way ensemble, 10 back-projections) and without
(:func:`benchmarks.time_to_quality.mzsr_curve` / ``zssr_curve``, which time each read as
the run that stops there). Means over the images; a configuration's front point is its
mean PSNR at its mean seconds.

    python -m benchmarks.pareto --set5 ../shared/data/bench/Set5 --threads 1 \
        --out benchmarks/results
    python -m benchmarks.pareto --set5 ../shared/data/bench/Set5 --settings \
        --grid "blur x1.5" "bicubic x2.5" --name pareto_Set5_grid_cpu
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_mzsr.io.model_file import load_model

from . import arbitrary_scale
from .lr_inputs import SETTINGS, hr_and_lr, load_hr_images
from .machine import machine_description
from .report import command_line, markdown_table, write_results
from .time_to_quality import MZSR_STEPS, ZSSR_ITERATIONS, mzsr_curve, zssr_curve


def configurations(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean PSNR and seconds of every configuration over the images of ``records``."""
    by_config: dict[tuple, list[dict]] = {}
    for record in records:
        for family, curve in record["curves"].items():
            for point in curve["points"]:
                if family == "zssr":
                    extra = "refined" if point.get("refinements", True) else "plain"
                else:
                    extra = f"ensemble {point['ensemble']}" if "ensemble" in point else "once"
                    if "back_projection" in point:
                        extra += f" BP{point['back_projection']}"
                count = point.get("steps", point.get("iterations"))
                by_config.setdefault((family, extra, count), []).append(point)
    return [
        {
            "method": "ZSSR" if family == "zssr" else "MZSR",
            "config": f"{family} {extra} {count}",
            "psnr": statistics.mean(p["psnr"] for p in points),
            "seconds": statistics.mean(p["seconds"] for p in points),
        }
        for (family, extra, count), points in by_config.items()
    ]


def front(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The points no other point beats in both PSNR and seconds, fastest first.

    Examples
    --------
    >>> front([{"psnr": 30, "seconds": 1}, {"psnr": 29, "seconds": 2},
    ...        {"psnr": 31, "seconds": 3}])  # doctest: +NORMALIZE_WHITESPACE
    [{'psnr': 30, 'seconds': 1}, {'psnr': 31, 'seconds': 3}]
    """
    best, kept = float("-inf"), []
    for point in sorted(points, key=lambda p: (p["seconds"], -p["psnr"])):
        if point["psnr"] > best:
            kept.append(point)
            best = point["psnr"]
    return kept


def best_within(points: list[dict[str, Any]], seconds: float) -> float | None:
    """The highest PSNR among ``points`` that take at most ``seconds``."""
    within = [p["psnr"] for p in points if p["seconds"] <= seconds]
    return max(within) if within else None


@dataclass(frozen=True)
class GridSetting:
    """A setting of the arbitrary-scale grid (:class:`benchmarks.arbitrary_scale.Setting`)
    with what :mod:`benchmarks.time_to_quality` reads of a setting."""

    grid: arbitrary_scale.Setting
    model: str = "arbitrary"
    method: str = "bicubic"

    @property
    def name(self) -> str:
        return self.grid.name

    @property
    def kernel(self) -> np.ndarray:
        return self.grid.kernel

    @property
    def scale(self) -> tuple[float, float]:
        return self.grid.scale

    @property
    def shave(self) -> int:
        return self.grid.shave


GRID = {s.name: s for s in arbitrary_scale.settings()}


def grid_setting(name: str) -> GridSetting:
    """The arbitrary-scale grid's setting called ``name`` (e.g. ``"blur x1.5"``)."""
    if name not in GRID:
        raise ValueError(f"--grid: unknown setting {name!r}; choose from {', '.join(GRID)}")
    return GridSetting(GRID[name])


def compare(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At each ZSSR front point's time (the budgets up to ZSSR(300)'s): MZSR's best and
    ZSSR's best within it, and the margin."""
    mzsr = [c for c in configs if c["method"] == "MZSR"]
    zssr = [c for c in configs if c["method"] == "ZSSR"]
    rows = []
    for point in front(zssr):
        ours = best_within(mzsr, point["seconds"])
        rows.append(
            {
                "budget_s": point["seconds"],
                "zssr_best": point["psnr"],
                "zssr_config": point["config"],
                "mzsr_best": ours,
                "margin": None if ours is None else ours - point["psnr"],
            }
        )
    return rows


def plot(results: dict[str, list[dict[str, Any]]], path: Path, set_name: str) -> None:
    """One panel per setting of the images of ``set_name``: every configuration and the
    two fronts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
    for ax, (name, configs) in zip(axes[0], results.items(), strict=True):
        for method, colour in (("MZSR", "tab:blue"), ("ZSSR", "tab:red")):
            points = [c for c in configs if c["method"] == method]
            ax.scatter([p["seconds"] for p in points], [p["psnr"] for p in points],
                       s=12, color=colour, alpha=0.4)  # fmt: skip
            line = front(points)
            ax.plot([p["seconds"] for p in line], [p["psnr"] for p in line], "-o",
                    color=colour, label=f"{method} front")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("seconds per image (mean)")
        ax.set_ylabel("PSNR (dB, mean)")
        ax.set_title(f"{set_name} {name}" if name in GRID else f"{set_name} x2 {name}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> Path:
    """Command-line entry point; returns the Markdown path."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--set5", "--hr", dest="hr", type=Path, required=True,
        help="folder of HR images (Set5, or another set: the folder names it in the report)",
    )  # fmt: skip
    parser.add_argument("--settings", nargs="*", default=["g^d_2.0", "g^b_1.3"])
    parser.add_argument("--grid", nargs="*", default=[], help="arbitrary-scale settings")
    parser.add_argument(
        "--back-projection", type=int, nargs="+", default=[0, 10],
        help="MZSR's back-projection iterations to read each configuration with (0: none)",
    )  # fmt: skip
    parser.add_argument("--limit", type=int, help="first N images only")
    parser.add_argument("--images", nargs="+", help="these images only (file stems)")
    parser.add_argument("--steps", type=int, nargs="+", default=list(MZSR_STEPS))
    parser.add_argument("--zssr-iterations", type=int, nargs="+", default=list(ZSSR_ITERATIONS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default="pareto_Set5_cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    images = load_hr_images(args.hr, args.limit)
    if args.images:
        images = {stem: images[stem] for stem in args.images}
    load_before = os.getloadavg()
    results: dict[str, list[dict[str, Any]]] = {}
    records_by_setting = {}
    try:
        grid = [grid_setting(name) for name in args.grid]
    except ValueError as exc:
        parser.error(str(exc))
    for setting in [SETTINGS[name] for name in args.settings] + grid:
        name = setting.name
        model = load_model(setting.model)
        records = []
        for stem, image in images.items():
            if isinstance(setting, GridSetting):
                hr, lr = arbitrary_scale.hr_and_lr(image, setting.grid)
            else:
                hr, lr = hr_and_lr(image, setting)
            curves = {
                "mzsr auto": mzsr_curve(
                    lr, hr, model, True, "float32", args.steps, setting=setting,
                    ensembles=(None, "mean"), back_projections=args.back_projection,
                ),
                "mzsr whole": mzsr_curve(lr, hr, model, False, "float32", args.steps,
                                         setting=setting),
            }  # fmt: skip
            curves["zssr"] = zssr_curve(
                lr, hr, args.zssr_iterations, setting=setting, refinements=(True, False)
            )
            records.append({"image": stem, "curves": curves})
            print(name, stem, flush=True)
        results[name] = configurations(records)
        records_by_setting[name] = records
    load_after = os.getloadavg()

    lines = [
        "Machine: "
        + ", ".join(f"{k} {v}" for k, v in machine_description(torch.device("cpu")).items()),
        "Load average (1, 5, 15 min) at the start "
        + ", ".join(f"{x:.2f}" for x in load_before)
        + ", at the end "
        + ", ".join(f"{x:.2f}" for x in load_after)
        + f"; {args.threads} torch thread(s). MZSR configurations: 'auto'/'whole' patch "
        "policy, inferred once or with the 'mean' self-ensemble, 'BPn': then n "
        "back-projections with the true kernel, steps; ZSSR: 'refined' "
        "(8-way ensemble and 10 back-projections, its default) or 'plain', iterations.",
    ]
    summary = {}
    for name, configs in results.items():
        rows = compare(configs)
        summary[name] = rows
        lines += ["", f"## {name}", "", "Fronts (mean over the images):", ""]
        table = [
            [c["method"], c["config"], f"{c['seconds']:.2f}", f"{c['psnr']:.2f}"]
            for c in sorted(front([c for c in configs if c["method"] == "MZSR"])
                            + front([c for c in configs if c["method"] == "ZSSR"]),
                            key=lambda c: c["seconds"])
        ]  # fmt: skip
        lines += markdown_table(["method", "configuration", "s", "PSNR"], table)
        lines += ["", "At each ZSSR front point's time: the best of each within it.", ""]
        table = [
            [f"{r['budget_s']:.2f}", r["zssr_config"], f"{r['zssr_best']:.2f}",
             "none as fast" if r["mzsr_best"] is None else f"{r['mzsr_best']:.2f}",
             "" if r["margin"] is None else f"{r['margin']:+.2f}"]
            for r in rows
        ]  # fmt: skip
        lines += markdown_table(
            ["budget (s)", "ZSSR best", "ZSSR PSNR", "MZSR best", "MZSR - ZSSR"], table
        )
    png = args.out / f"{args.name}.png"
    args.out.mkdir(parents=True, exist_ok=True)
    plot(results, png, args.hr.name)
    lines += ["", f"Plot: `{png.name}`."]
    md_path, _ = write_results(
        args.out,
        args.name,
        f"MZSR and ZSSR: PSNR against time, the Pareto fronts ({args.hr.name})",
        command_line("benchmarks.pareto", argv),
        lines,
        {"configurations": results, "comparison": summary, "records": records_by_setting},
    )
    return md_path


if __name__ == "__main__":
    main()
