"""Time and peak memory of MZSR(1), MZSR(10) and ZSSR against the input size (x2, grey).

Every measurement runs in its own subprocess so that its peak memory is its own: on CUDA
``torch.cuda.max_memory_allocated``, on CPU the peak resident set size (``ru_maxrss``,
which includes about a few hundred MiB of torch runtime, reported separately as the
baseline). ZSSR runs ``--zssr-iters`` iterations only; its time at the full iteration
count is extrapolated from the measured time per training iteration and per quick test,
plus the measured inference, and labelled "extrapolated". Timing does not depend on the
weights, so a freshly initialised theta_M is used unless ``--model`` is given.

    python -m benchmarks.scaling --sizes 128 256 512 1024 2048 --zssr-iters 50 \\
        --device cpu --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_mzsr.core.devices import resolve_device
from napari_mzsr.core.kernels import preset_kernel
from napari_mzsr.core.network import MZSRNet
from napari_mzsr.core.resize import imresize
from napari_mzsr.io.model_file import ModelInfo, save_model
from napari_mzsr.pipeline.options import AUTO_PATCH, AUTO_PATCHES, AUTO_WHOLE_IMAGE_PIXELS
from napari_mzsr.pipeline.run import super_resolve

from .machine import add_threads_option, apply_threads, machine_description, synchronize
from .report import command_line, fmt, markdown_table, write_results
from .zssr import ZSSRConfig, zssr_super_resolve

METHODS = ("MZSR(1)", "MZSR(10)", "ZSSR")
KERNEL = "g^d_2.0"
REPO_ROOT = Path(__file__).resolve().parents[1]


def synthetic_image(size: int) -> np.ndarray:
    """A deterministic smooth grey uint8 test image of ``size`` x ``size`` pixels."""
    coarse = np.random.default_rng(0).random((max(2, size // 8), max(2, size // 8)))
    fine = imresize(coarse, output_shape=(size, size))
    return np.rint(np.clip(fine, 0, 1) * 255).astype(np.uint8)


def _rss_mib() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _mzsr(image, steps, model, device, precision) -> float:
    synchronize(device)
    start = time.perf_counter()
    super_resolve(
        image, scale=2, kernel=KERNEL, steps=steps, model=model, device=device, precision=precision
    )
    synchronize(device)
    return time.perf_counter() - start


def measure(
    method: str,
    size: int,
    device: torch.device,
    model: str,
    precision: str,
    repeats: int,
    zssr_iters: int,
    zssr_full_iters: int,
) -> dict[str, Any]:
    """One measurement in this process (meant to run in a fresh subprocess)."""
    image = synthetic_image(size)
    warm = synthetic_image(48)
    kernel = preset_kernel(KERNEL)
    steps = 0 if method == "ZSSR" else int(method[len("MZSR(") : -1])
    if method == "ZSSR":
        config = ZSSRConfig(max_iters=zssr_iters)
        zssr_super_resolve(warm, kernel, 2, "direct", replace(config, max_iters=2), device)
    else:
        _mzsr(warm, 1, model, device, precision)
    baseline = _rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result: dict[str, Any] = {"method": method, "size": size, "baseline_rss_mib": baseline}
    if method == "ZSSR":
        start = time.perf_counter()
        _, stats = zssr_super_resolve(image, kernel, 2, "direct", config, device)
        result["seconds"] = time.perf_counter() - start
        tests = math.ceil(zssr_full_iters / config.test_every)
        result["extrapolated_seconds"] = (
            stats.train_s / stats.iterations * zssr_full_iters
            + stats.test_s / stats.tests * tests
            + stats.infer_s
        )
        result.update(iterations=stats.iterations, infer_s=stats.infer_s)
    else:
        times = [_mzsr(image, steps, model, device, precision) for _ in range(repeats)]
        result["seconds"] = statistics.median(times)
    result["peak_rss_mib"] = _rss_mib()
    if device.type == "cuda":
        result["peak_cuda_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def run_worker(args: argparse.Namespace, method: str, size: int, model: str) -> dict[str, Any]:
    """Run :func:`measure` in a subprocess; a crash (e.g. out of memory) is reported."""
    cmd = [sys.executable, "-m", "benchmarks.scaling", "--worker", method, "--sizes", str(size)]
    cmd += ["--device", args.device, "--model", model, "--precision", args.precision]
    cmd += ["--repeats", str(args.repeats), "--zssr-iters", str(args.zssr_iters)]
    cmd += ["--zssr-full-iters", str(args.zssr_full_iters)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=args.timeout, cwd=REPO_ROOT
        )
    except subprocess.TimeoutExpired:
        return {"method": method, "size": size, "error": f"timeout after {args.timeout} s"}
    if done.returncode != 0:
        reason = "killed (out of memory?)" if done.returncode < 0 else done.stderr.strip()[-300:]
        return {"method": method, "size": size, "error": reason}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _memory(row: dict[str, Any] | None) -> float | None:
    if row is None or "error" in row:
        return None
    return row.get("peak_cuda_mib", row.get("peak_rss_mib"))


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def report_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    """Markdown rows: one per size, ZSSR (measured and extrapolated) against MZSR."""
    by = {(r["method"], r["size"]): r for r in results}
    rows = []
    for size in sorted({r["size"] for r in results}):
        m1, m10, z = by.get(("MZSR(1)", size)), by.get(("MZSR(10)", size)), by.get(("ZSSR", size))

        def sec(row, key="seconds"):
            return None if row is None or "error" in row else row.get(key)

        z_ext = sec(z, "extrapolated_seconds")
        rows.append(
            [
                f"{size}x{size}",
                fmt(sec(m1)) if sec(m1) is not None else (m1 or {}).get("error", "—"),
                fmt(sec(m10)) if sec(m10) is not None else (m10 or {}).get("error", "—"),
                f"{fmt(sec(z))} ({z['iterations']} it.)" if sec(z) else (z or {}).get("error", "—"),
                fmt(z_ext),
                fmt(_ratio(z_ext, sec(m1)), 0),
                fmt(_ratio(z_ext, sec(m10)), 0),
                " / ".join(fmt(_memory(r), 0) for r in (m1, m10, z)),
                fmt(_ratio(_memory(z), _memory(m1)), 2),
            ]
        )
    return rows


def main(argv: Sequence[str] | None = None) -> Path | None:
    """Command-line entry point; returns the Markdown path (None in worker mode)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512, 1024, 2048])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--zssr-iters", type=int, default=50, help="ZSSR iterations run")
    parser.add_argument("--zssr-full-iters", type=int, default=3000, help="extrapolated to")
    parser.add_argument("--repeats", type=int, default=1, help="MZSR runs per size (median)")
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", help="theta_M file (default: freshly initialised)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per measurement")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", help="output file stem (default: scaling_<device>)")
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    add_threads_option(parser)
    args = parser.parse_args(argv)
    apply_threads(args)

    device = resolve_device(args.device)
    if args.worker:
        row = measure(
            args.worker,
            args.sizes[0],
            device,
            args.model,
            args.precision,
            args.repeats,
            args.zssr_iters,
            args.zssr_full_iters,
        )
        print(json.dumps(row))
        return None

    model = args.model
    if model is None:
        model = str(Path(tempfile.mkdtemp()) / "fresh.pt")
        # One channel, as the shipped direct-x2-gray that grey inputs use.
        save_model(model, MZSRNet(1), ModelInfo("fresh", [2.0], "direct", 1))
    results = []
    for size in args.sizes:
        for method in args.methods:
            results.append(run_worker(args, method, size, model))
            print(results[-1], flush=True)

    machine = machine_description(device)
    memory = "CUDA max_memory_allocated" if device.type == "cuda" else "peak RSS of the process"
    header = ["input", "MZSR(1) s", "MZSR(10) s", "ZSSR s measured"]
    header += [f"ZSSR s extrapolated ({args.zssr_full_iters} it.)"]
    header += ["ZSSR / MZSR(1)", "ZSSR / MZSR(10)", "peak MiB MZSR(1) / (10) / ZSSR"]
    header += ["memory ZSSR / MZSR(1)"]
    name = args.name or f"scaling_{device.type}"
    write_results(
        args.out,
        name,
        f"Time and memory against input size, x2, grey ({machine.get('gpu', machine['cpu'])})",
        command_line("benchmarks.scaling", argv),
        [
            "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()),
            "",
            f"Square grey uint8 inputs, x2, kernel {KERNEL}, MZSR {args.precision} "
            f"(median of {args.repeats}). ZSSR ran {args.zssr_iters} iterations; its time at "
            f"{args.zssr_full_iters} iterations is **extrapolated** (time per training "
            "iteration and per quick test from this run, plus the measured 8-way inference). "
            f"Ratios use the extrapolated ZSSR time; all numbers come from this run. "
            f"Memory: {memory}. MZSR adapts as `super_resolve(adapt_patch='auto')` does: on "
            f"the whole image up to {AUTO_WHOLE_IMAGE_PIXELS:,} pixels, above that on "
            f"{AUTO_PATCHES} random {AUTO_PATCH}-pixel patches per step, so its adaptation "
            "time stops growing with the input and inference takes over.",
            "",
            *markdown_table(header, report_rows(results)),
        ],
        {"machine": machine, "memory": memory, "rows": results},
    )
    print(f"wrote {args.out / name}.md")
    return args.out / f"{name}.md"


if __name__ == "__main__":
    main()
