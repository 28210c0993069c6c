"""Peak memory and time of MZSR on big grey images (crop adaptation, tiled inference).

Each size runs in a fresh subprocess, which reports its own peak resident set size
(``ru_maxrss``, including a few hundred MiB of torch runtime, reported separately as the
baseline after a warm-up run) and, on CUDA, ``torch.cuda.max_memory_allocated``. The
time exponent is the least-squares slope of log(time) against log(pixels): 1 means
linear in the image size. The input is a smooth synthetic grey uint8 image, mirrored
from a 512 x 512 one so that making it costs no memory of note.

    python -m benchmarks.big_images --sizes 1024 2048 4096 --steps 10 --device cpu \\
        --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_mzsr.core.devices import resolve_device, resolve_precision
from napari_mzsr.core.tiling import auto_tile, plan_tiles, tile_margin
from napari_mzsr.io.model_file import load_model
from napari_mzsr.pipeline.options import AUTO_PATCHES, choose_model
from napari_mzsr.pipeline.run import drive, iter_adapt

from .machine import add_threads_option, apply_threads, machine_description, synchronize
from .report import command_line, fmt, markdown_table, write_results
from .scaling import synthetic_image

KERNEL = "g^d_2.0"
SCALE = 2
TARGET_RSS_MIB = 3 * 1024
REPO_ROOT = Path(__file__).resolve().parents[1]


def big_image(size: int) -> np.ndarray:
    """A smooth grey uint8 image of ``size`` x ``size``: a 512 x 512 synthetic image
    mirrored to size (no seams)."""
    base = synthetic_image(min(size, 512))
    reps = math.ceil(size / base.shape[0])
    return np.pad(base, ((0, reps * base.shape[0] - base.shape[0]),) * 2, mode="symmetric")[
        :size, :size
    ]


def _rss_mib() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _adapt(image, steps, model, device, precision, patch, patches):
    run = iter_adapt(
        image,
        scale=SCALE,
        kernel=KERNEL,
        steps=steps,
        model=model,
        device=device,
        precision=precision,
        adapt_patch=patch,
        adapt_patches=patches,
    )
    return drive(run)


def measure(
    size: int,
    device: torch.device,
    model: str,
    steps: int,
    precision: str,
    patch: int | str | None,
    patches: int,
    tile: int | None,
) -> dict[str, Any]:
    """One measurement in this process (meant to run in a fresh subprocess)."""
    warm = big_image(48)
    _adapt(warm, 1, model, device, precision, None, patches).apply(warm)
    image = big_image(size)
    baseline = _rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    start = time.perf_counter()
    adapted = _adapt(image, steps, model, device, precision, patch, patches)
    synchronize(device)
    adapted_at = time.perf_counter()
    # The tile apply() would choose, chosen here to be reported.
    info = adapted.info
    margin = tile_margin(SCALE, info.layers)
    used_tile = tile or auto_tile(device, SCALE, info.features, info.channels, margin)
    out = adapted.apply(image, tile=used_tile)
    synchronize(device)
    end = time.perf_counter()
    row: dict[str, Any] = {
        "size": size,
        "output": list(out.shape),
        "adapt_s": adapted_at - start,
        "apply_s": end - adapted_at,
        "seconds": end - start,
        "tile": used_tile,
        "tiles": len(plan_tiles(image.shape, SCALE, used_tile, margin)),
        "baseline_rss_mib": baseline,
        "peak_rss_mib": _rss_mib(),
    }
    if device.type == "cuda":
        row["peak_cuda_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return row


def run_worker(args: argparse.Namespace, size: int) -> dict[str, Any]:
    """Run :func:`measure` in a subprocess; a crash (e.g. out of memory) is reported."""
    cmd = [sys.executable, "-m", "benchmarks.big_images", "--worker", "--sizes", str(size)]
    cmd += ["--device", args.device, "--model", args.model, "--steps", str(args.steps)]
    cmd += ["--precision", args.precision, "--adapt-patch", args.adapt_patch]
    cmd += ["--adapt-patches", str(args.adapt_patches)]
    if args.tile:
        cmd += ["--tile", str(args.tile)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=args.timeout, cwd=REPO_ROOT
        )
    except subprocess.TimeoutExpired:
        return {"size": size, "error": f"timeout after {args.timeout} s"}
    if done.returncode != 0:
        reason = "killed (out of memory?)" if done.returncode < 0 else done.stderr.strip()[-300:]
        return {"size": size, "error": reason}
    return json.loads(done.stdout.strip().splitlines()[-1])


def time_exponent(rows: Sequence[dict[str, Any]], key: str = "seconds") -> float | None:
    """Least-squares slope of log(``key``) against log(input pixels); None with fewer
    than two measured sizes."""
    good = [r for r in rows if "error" not in r and r.get(key, 0) > 0]
    if len({r["size"] for r in good}) < 2:
        return None
    pixels = np.log([r["size"] ** 2 for r in good])
    return float(np.polyfit(pixels, np.log([r[key] for r in good]), 1)[0])


def report_rows(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Markdown rows, one per size."""
    table = []
    for r in rows:
        if "error" in r:
            table.append([f"{r['size']}x{r['size']}", r["error"], *["—"] * 7])
            continue
        peak = r.get("peak_cuda_mib", r["peak_rss_mib"])
        table.append(
            [
                f"{r['size']}x{r['size']}",
                fmt(r["adapt_s"]),
                fmt(r["apply_s"]),
                fmt(r["seconds"]),
                f"{r['tile']} / {r['tiles']}",
                fmt(r["baseline_rss_mib"], 0),
                fmt(r["peak_rss_mib"], 0),
                fmt(r.get("peak_cuda_mib"), 0),
                "yes" if peak <= TARGET_RSS_MIB else "no",
            ]
        )
    return table


def _patch_option(value: str) -> int | str | None:
    if value == "auto":
        return value
    return None if value == "none" else int(value)


def main(argv: Sequence[str] | None = None) -> Path | None:
    """Command-line entry point; returns the Markdown path (None in worker mode)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument(
        "--model", help="theta_M name or file (default: the shipped grey x2 model if any)"
    )
    parser.add_argument("--precision", default="auto")
    parser.add_argument(
        "--adapt-patch", default="auto", help="patch side, 'none' (whole image) or 'auto'"
    )
    parser.add_argument("--adapt-patches", type=int, default=AUTO_PATCHES)
    parser.add_argument("--tile", type=int, help="LR tile side (default: from free memory)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per size")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    add_threads_option(parser)
    args = parser.parse_args(argv)
    apply_threads(args)
    if args.model is None:
        args.model = choose_model((SCALE, SCALE), rgb=False)

    device = resolve_device(args.device)
    if args.worker:
        row = measure(
            args.sizes[0],
            device,
            args.model,
            args.steps,
            args.precision,
            _patch_option(args.adapt_patch),
            args.adapt_patches,
            args.tile,
        )
        print(json.dumps(row))
        return None

    rows = []
    for size in args.sizes:
        rows.append(run_worker(args, size))
        print(rows[-1], flush=True)
    exponents = {key: time_exponent(rows, key) for key in ("seconds", "adapt_s", "apply_s")}
    machine = machine_description(device)
    info = load_model(args.model).info
    precision = resolve_precision(args.precision, device)
    name = f"big_images_{device.type}"
    header = ["input", "adapt s", "infer s", "total s", "tile side / tiles", "baseline MiB"]
    header += ["peak RSS MiB", "peak CUDA MiB", f"<= {TARGET_RSS_MIB // 1024} GiB"]
    write_results(
        args.out,
        name,
        f"Big grey images, x{SCALE}: time and peak memory ({machine.get('gpu', machine['cpu'])})",
        command_line("benchmarks.big_images", argv),
        [
            "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()),
            "",
            f"Model {info.name} ({info.channels} channel(s)), kernel {KERNEL}, {args.steps} "
            f"steps, adapt_patch {args.adapt_patch} x {args.adapt_patches}, precision "
            f"{args.precision} ({precision or torch.float32}), tile "
            f"{args.tile or 'auto'}. One fresh process per size; peak RSS includes the "
            "baseline (torch runtime after a warm-up run on a 48x48 image).",
            "",
            *markdown_table(header, report_rows(rows)),
            "",
            "Time exponent (slope of log time against log pixels): "
            + ", ".join(f"{key} {fmt(value)}" for key, value in exponents.items()),
        ],
        {"machine": machine, "model": info.name, "exponents": exponents, "rows": rows},
    )
    print(f"wrote {args.out / name}.md")
    return args.out / f"{name}.md"


if __name__ == "__main__":
    main()
