"""Kernel estimation: how close the estimated kernel comes to the true one, how long it
takes, and what MZSR loses with it.

Every HR image is degraded (x2) with a kernel drawn from the paper's meta-training
distribution (REFERENCE section 3: theta ~ U[0, pi), l1 ~ U[1, 5], l2 ~ U[1, l1]; one per
image, fixed seed) and with the four kernels of Table 2. For each LR image the kernel is
estimated, its covariance compared with the true one (relative Frobenius error), and
MZSR(n) is run with the estimated kernel, the true kernel and the fixed default kernel
(isotropic variance 2.0, the API's default).

Estimators: ``spectral`` (the package's :func:`~napari_mzsr.core.kernel_estimation.estimate_kernel`)
and, for comparison, ``theta-loss``: a search of the Gaussian family for the kernel whose
son theta_M adapts to best (the L1 loss on held-out crops after a few adaptation steps;
isotropic grid, then anisotropy around the best variance).

    python -m benchmarks.kernel_estimation --data ../shared/data/bench/Set14 --device cpu

Writes ``kernel_estimation_<set>_<device>.md`` and ``.json`` (every per-image value).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_mzsr.core.adaptation import adapt, make_son, son_loss
from napari_mzsr.core.devices import resolve_device
from napari_mzsr.core.kernel_estimation import estimate_kernel
from napari_mzsr.core.kernels import PRESETS, gaussian_kernel, kernel_covariance
from napari_mzsr.core.metrics import psnr
from napari_mzsr.core.schedules import rate_at
from napari_mzsr.core.tensors import to_batch
from napari_mzsr.io.model_file import MZSRModel
from napari_mzsr.pipeline.run import super_resolve

from .lr_inputs import Setting, add_image_set_options, crop_to_multiple, load_hr_images, make_lr
from .machine import add_threads_option, apply_threads, machine_description
from .model_choice import add_models_option, parse_models, resolve_models
from .report import command_line, fmt, markdown_table, write_results

SCALE = 2
KERNEL_SIZE = 21
DEFAULT_KERNEL = 2.0
PAPER = "paper"
KERNEL_NAMES = (PAPER, "g^d_0.2", "g^d_2.0", "g^d_ani", "g^b_1.3")
ESTIMATORS = ("spectral", "theta-loss")
SHARED_DATA = Path("../shared/data/bench/Set14")


def paper_kernel(rng: np.random.Generator, scale: float = SCALE) -> tuple[float, float, float]:
    """``(l1, l2, theta)`` drawn from the meta-training distribution (REFERENCE 3)."""
    theta = float(rng.uniform(0, math.pi))
    l1 = float(rng.uniform(1, 2.5 * scale))
    return l1, float(rng.uniform(1, l1)), theta


def covariance_error(estimated: np.ndarray, true: np.ndarray) -> float:
    """Relative Frobenius error of the kernels' covariances (both measured on the grid)."""
    sigma = kernel_covariance(true)
    return float(np.linalg.norm(kernel_covariance(estimated) - sigma) / np.linalg.norm(sigma))


def spectral(lr: np.ndarray, setting: Setting, model: MZSRModel | None) -> np.ndarray:
    return estimate_kernel(lr, setting.scale, setting.method, size=KERNEL_SIZE).kernel


@dataclass(frozen=True)
class ThetaLossSearch:
    """Kernel search by the self-supervised loss of theta_M (the rejected candidate).

    A candidate kernel makes the son of ``crops`` random crops of the LR image; a copy of
    theta_M takes ``steps`` plain-SGD steps (the model's learning rates) on half of them
    and the score is its L1 loss (son -> LR) on the other half. Isotropic variances
    ``grid`` first, then ``l1 = v * r, l2 = v / r`` for each ratio and angle around
    the best variance ``v``.
    """

    steps: int = 1
    crops: int = 8
    crop: int = 64
    grid: tuple[float, ...] = (0.2, 0.35, 0.6, 0.9, 1.3, 1.8, 2.5, 3.5, 5.0)
    ratios: tuple[float, ...] = (1.6, 2.5)
    angles: int = 4

    def __call__(self, lr: np.ndarray, setting: Setting, model: MZSRModel | None) -> np.ndarray:
        if model is None:
            raise ValueError(f"theta-loss needs theta_M {setting.model!r}")
        x = to_batch(lr / 255.0, model.info.channels)
        rng = np.random.default_rng(0)
        size = min(self.crop, *x.shape[-2:]) // 2 * 2
        corners = [
            (
                2 * rng.integers(0, (x.shape[-2] - size) // 2 + 1),
                2 * rng.integers(0, (x.shape[-1] - size) // 2 + 1),
            )
            for _ in range(self.crops)
        ]
        batch = torch.cat([x[..., i : i + size, j : j + size] for i, j in corners])
        half = self.crops // 2

        def score(params: tuple[float, float, float]) -> float:
            kernel = torch.from_numpy(gaussian_kernel(*params, size=KERNEL_SIZE)).float()
            net = model.network("cpu")
            schedule = model.info.lr_schedule
            for _ in adapt(
                net,
                lambda step: batch[:half],
                kernel,
                setting.scale,
                steps=self.steps,
                learning_rate=lambda step: rate_at(schedule, step),
                degradation=setting.method,
            ):
                pass
            son = make_son(batch[half:], kernel, setting.scale, setting.method)
            return float(son_loss(net, son, batch[half:], None))

        scores = {(v, v, 0.0): score((v, v, 0.0)) for v in self.grid}
        v = min(scores, key=scores.get)[0]
        for ratio in self.ratios:
            for a in range(self.angles):
                params = (v * ratio, v / ratio, a * math.pi / self.angles)
                scores[params] = score(params)
        return gaussian_kernel(*min(scores, key=scores.get), size=KERNEL_SIZE)


Estimator = Callable[[np.ndarray, Setting, MZSRModel | None], np.ndarray]


def make_cases(
    hr_images: Mapping[str, np.ndarray], kernel_names: Sequence[str], seed: int
) -> list[tuple[str, Setting, np.ndarray, np.ndarray]]:
    """``(image, setting, hr, lr)`` for every image and kernel; the paper-distribution
    kernel of each image comes from one generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    cases = []
    for stem, hr in hr_images.items():
        hr = crop_to_multiple(hr, SCALE)
        drawn = paper_kernel(rng)
        for name in kernel_names:
            if name == PAPER:
                l1, l2, theta = drawn
                label = f"paper ({l1:.2f}, {l2:.2f}, {theta:.2f})"
                kernel = gaussian_kernel(l1, l2, theta, size=KERNEL_SIZE)
                setting = Setting(label, PAPER, kernel, "direct", SCALE, "direct-x2")
            else:
                preset = PRESETS[name]
                model = f"{preset.degradation}-x{SCALE}"
                setting = Setting(name, name, preset.kernel(), preset.degradation, SCALE, model)
            cases.append((stem, setting, hr, make_lr(hr, setting)))
    return cases


def _sr_psnr(
    lr: np.ndarray,
    hr: np.ndarray,
    kernel: object,
    setting: Setting,
    models: Mapping[str, MZSRModel],
    steps: int | None,
    device: torch.device,
    seed: int,
) -> float | None:
    model = models.get(setting.model)
    if model is None or steps is None:
        return None
    sr = super_resolve(
        lr, scale=SCALE, kernel=kernel, steps=steps, model=model, device=device, seed=seed,
        precision="float32", output_dtype=np.uint8,
    )  # fmt: skip
    return psnr(sr, hr, setting.shave)


def run_case(
    case: tuple[str, Setting, np.ndarray, np.ndarray],
    estimators: Mapping[str, Estimator],
    models: Mapping[str, MZSRModel],
    steps: int | None,
    device: torch.device,
    seed: int,
) -> dict[str, Any]:
    """Estimate one case's kernel with every estimator and run MZSR(``steps``) with each
    estimate, the true kernel and the default kernel (no MZSR runs for ``steps`` None)."""
    stem, setting, hr, lr = case
    run = (models, steps, device, seed)
    record: dict[str, Any] = {
        "image": stem,
        "kernel": setting.table,
        "label": setting.name,
        "true_covariance": kernel_covariance(setting.kernel).tolist(),
        "psnr_true": _sr_psnr(lr, hr, setting.kernel, setting, *run),
        "psnr_default": _sr_psnr(lr, hr, DEFAULT_KERNEL, setting, *run),
        "estimates": {},
    }
    for name, estimator in estimators.items():
        start = time.perf_counter()
        kernel = estimator(lr, setting, models.get(setting.model))
        seconds = time.perf_counter() - start
        record["estimates"][name] = {
            "covariance": kernel_covariance(kernel).tolist(),
            "error": covariance_error(kernel, setting.kernel),
            "seconds": seconds,
            "psnr": _sr_psnr(lr, hr, kernel, setting, *run),
        }
    return record


def run_cases(
    cases: Sequence[tuple[str, Setting, np.ndarray, np.ndarray]],
    estimators: Mapping[str, Estimator],
    models: Mapping[str, MZSRModel],
    steps: int | None,
    device: torch.device,
    seed: int,
    jobs: int = 1,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """:func:`run_case` for every case, in order; ``jobs`` > 1 runs them in that many
    worker processes with one torch thread each. One record per case."""
    if jobs > 1:
        # spawn, not fork: a forked child inherits the parent's OpenMP pool and can hang.
        pool = ProcessPoolExecutor(
            jobs, multiprocessing.get_context("spawn"), torch.set_num_threads, (1,)
        )
        with pool:
            futures = [
                pool.submit(run_case, case, estimators, models, steps, device, seed)
                for case in cases
            ]
            results = (future.result() for future in futures)
            return [_logged(record, log) for record in results]
    return [_logged(run_case(case, estimators, models, steps, device, seed), log) for case in cases]


def _logged(record: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    cells = " ".join(
        f"{name} err {e['error']:.2f} {fmt(e['psnr'])} dB {e['seconds']:.2f} s"
        for name, e in record["estimates"].items()
    )
    log(
        f"{record['image']:<11} {record['label']:<28} true {fmt(record['psnr_true'])} "
        f"default {fmt(record['psnr_default'])} | {cells}"
    )
    return record


def time_256(hr_images: Mapping[str, np.ndarray], repeats: int = 5) -> float | None:
    """Median seconds of ``estimate_kernel`` on a 256 x 256 RGB LR image (the centre
    512 x 512 of the first HR image that large, degraded with g^d_2.0)."""
    for hr in hr_images.values():
        if min(hr.shape[:2]) >= 512 and hr.ndim == 3:
            top, left = (hr.shape[0] - 512) // 2, (hr.shape[1] - 512) // 2
            setting = Setting("g^d_2.0", "", PRESETS["g^d_2.0"].kernel(), "direct", 2, "")
            lr = make_lr(hr[top : top + 512, left : left + 512], setting)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                estimate_kernel(lr, SCALE)
                times.append(time.perf_counter() - start)
            return statistics.median(times)
    return None


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def summarise(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per kernel family (and ``all``) and estimator: mean PSNRs (estimated, true,
    default, over the images where MZSR ran), mean and median covariance error, median
    seconds."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault(r["kernel"], []).append(r)
    groups["all"] = list(records)
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for group, rows in groups.items():
        summary[group] = {}
        for name in rows[0]["estimates"]:
            est = [r["estimates"][name] for r in rows]
            ran = [i for i, e in enumerate(est) if e["psnr"] is not None]
            summary[group][name] = {
                "cases": len(rows),
                "psnr_estimated": _mean([est[i]["psnr"] for i in ran]),
                "psnr_true": _mean([rows[i]["psnr_true"] for i in ran]),
                "psnr_default": _mean([rows[i]["psnr_default"] for i in ran]),
                "error_mean": float(np.mean([e["error"] for e in est])),
                "error_median": float(np.median([e["error"] for e in est])),
                "seconds_median": statistics.median(e["seconds"] for e in est),
            }
    return summary


def markdown_report(
    summary: Mapping[str, Mapping[str, Mapping[str, Any]]], records: Sequence[Mapping[str, Any]]
) -> list[str]:
    rows = []
    for group, by_estimator in summary.items():
        for name, s in by_estimator.items():
            gap = (
                s["psnr_estimated"] - s["psnr_true"]
                if s["psnr_estimated"] is not None and s["psnr_true"] is not None
                else None
            )
            rows.append(
                [
                    group,
                    name,
                    str(s["cases"]),
                    fmt(s["psnr_estimated"], missing="n/a"),
                    fmt(s["psnr_true"], missing="n/a"),
                    fmt(s["psnr_default"], missing="n/a"),
                    fmt(gap, missing="n/a"),
                    f"{fmt(s['error_mean'])} / {fmt(s['error_median'])}",
                    fmt(s["seconds_median"], 3),
                ]
            )
    header = ["kernel", "estimator", "images", "PSNR estimated", "PSNR true kernel"]
    header += [f"PSNR default ({DEFAULT_KERNEL:g})", "estimated - true (dB)"]
    header += ["covariance error mean / median", "estimation s (median)"]
    lines = ["## Summary", "", *markdown_table(header, rows), ""]
    detail = []
    for r in records:
        for name, e in r["estimates"].items():
            true, est = np.array(r["true_covariance"]), np.array(e["covariance"])
            detail.append(
                [
                    r["image"],
                    r["label"],
                    name,
                    _cov_text(true),
                    _cov_text(est),
                    fmt(e["error"]),
                    f"{fmt(e['psnr'], missing='n/a')} / {fmt(r['psnr_true'], missing='n/a')}"
                    f" / {fmt(r['psnr_default'], missing='n/a')}",
                ]
            )
    header = ["image", "kernel", "estimator", "true Sigma (xx, xy, yy)"]
    header += ["estimated Sigma", "error", "PSNR estimated / true / default"]
    return [*lines, "## Per image", "", *markdown_table(header, detail), ""]


def _cov_text(sigma: np.ndarray) -> str:
    return f"{sigma[0, 0]:.2f}, {sigma[0, 1]:.2f}, {sigma[1, 1]:.2f}"


def main(argv: list[str] | None = None) -> Path:
    """Command-line entry point; returns the path of the Markdown report."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_image_set_options(parser, SHARED_DATA)
    parser.add_argument("--kernels", nargs="+", default=list(KERNEL_NAMES), choices=KERNEL_NAMES)
    parser.add_argument("--estimators", nargs="+", default=["spectral"], choices=ESTIMATORS)
    parser.add_argument("--theta-loss-steps", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10, help="MZSR adaptation steps")
    parser.add_argument(
        "--kernel-only", action="store_true", help="no MZSR runs: kernel error and time only"
    )
    add_models_option(parser)
    parser.add_argument("--device", default="auto", help="device of the MZSR runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", help="output file stem")
    add_threads_option(parser)
    parser.add_argument(
        "--jobs", type=int, default=1, help="worker processes (one torch thread each; CPU)"
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    apply_threads(args)

    device = resolve_device(args.device)
    set_name = args.set_name or args.data.resolve().name
    hr_images = load_hr_images(args.data, args.limit)
    models, missing = resolve_models(("direct-x2", "bicubic-x2"), None, parse_models(args.models))
    for name, why in missing.items():
        print(f"warning: no MZSR runs for {name} kernels: {why}", file=sys.stderr)
    estimators: dict[str, Estimator] = {"spectral": spectral}
    search = ThetaLossSearch(steps=args.theta_loss_steps)
    if "theta-loss" in args.estimators:
        estimators["theta-loss"] = search
    estimators = {k: v for k, v in estimators.items() if k in args.estimators}

    cases = make_cases(hr_images, args.kernels, args.seed)
    steps = None if args.kernel_only else args.steps
    records = run_cases(cases, estimators, models, steps, device, args.seed, args.jobs)
    summary = summarise(records)
    seconds_256 = time_256(hr_images)

    machine = machine_description(device)
    command = command_line("benchmarks.kernel_estimation", argv)
    name = args.name or f"kernel_estimation_{set_name}_{device.type}"
    intro = [
        "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()),
        "",
        f"Images: {len(hr_images)} ({', '.join(hr_images)}), x{SCALE}. "
        + ("No MZSR runs (--kernel-only), " if steps is None else f"MZSR({steps}), ")
        + f"float32, models: {', '.join(f'{n} = {m.source}' for n, m in models.items())}"
        f"{'; missing: ' + ', '.join(missing) if missing else ''}. PSNR on Y, shave 2; "
        "each PSNR mean is over the images where MZSR ran. Covariance error: "
        "||Sigma_est - Sigma_true||_F / ||Sigma_true||_F, both measured on the 21x21 grid. "
        "Estimation time: CPU, the whole LR image"
        + (
            f"; a 256x256 RGB LR image takes {seconds_256:.3f} s (median of 5)."
            if seconds_256 is not None
            else "."
        ),
        "",
    ]
    if "theta-loss" in estimators:
        intro += [
            f"theta-loss: {search.crops} crops of {search.crop} px (half to adapt, half to "
            f"score), {search.steps} step(s), isotropic grid {list(search.grid)}, then "
            f"ratios {list(search.ratios)} x {search.angles} angles around the best.",
            "",
        ]
    write_results(
        args.out,
        name,
        f"Kernel estimation on {set_name} ({machine.get('gpu', machine['cpu'])})",
        command,
        intro + markdown_report(summary, records),
        {
            "set": set_name,
            "machine": machine,
            "images": list(hr_images),
            "steps": args.steps,
            "default_kernel_variance": DEFAULT_KERNEL,
            "seconds_256x256": seconds_256,
            "missing_models": missing,
            "summary": summary,
            "records": records,
        },
    )
    md_path = args.out / f"{name}.md"
    print(f"wrote {md_path} and {md_path.with_suffix('.json')}")
    return md_path


if __name__ == "__main__":
    main()
