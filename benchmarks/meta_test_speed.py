"""Time MZSR's meta-test (adaptation + inference) on one image, per precision.

Timing does not depend on the weights, so a freshly initialised theta_M is used unless
``--model`` is given. Reports the median of ``--repeats`` warm runs.

    python -m benchmarks.meta_test_speed --size 256 --steps 1 10 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_mzsr import iter_adapt
from napari_mzsr.core.devices import resolve_device, resolve_precision
from napari_mzsr.core.network import MZSRNet
from napari_mzsr.io.model_file import ModelInfo, save_model

from .machine import add_threads_option, apply_threads, machine_description, synchronize
from .report import command_line, fmt, markdown_table, write_results


def time_run(image, steps, model, device, precision) -> tuple[float, float]:
    """Seconds spent adapting and inferring (one run)."""
    synchronize(device)
    start = time.perf_counter()
    run = iter_adapt(
        image, scale=2, kernel=2.0, steps=steps, model=model, device=device, precision=precision
    )
    try:
        while True:
            next(run)
    except StopIteration as done:
        adapted = done.value
    synchronize(device)
    mid = time.perf_counter()
    adapted.apply(image)
    synchronize(device)
    return mid - start, time.perf_counter() - mid


def main(argv: list[str] | None = None) -> Path:
    """Command-line entry point; returns the Markdown path."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="input side (RGB, x2)")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--precision", nargs="+", default=["auto", "float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", help="theta_M file (default: freshly initialised)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", help="output file stem (default: meta_test_speed_<device>)")
    add_threads_option(parser)
    args = parser.parse_args(argv)
    apply_threads(args)

    device = resolve_device(args.device)
    model = args.model
    if model is None:
        model = str(Path(tempfile.mkdtemp()) / "fresh.pt")
        save_model(model, MZSRNet(3), ModelInfo("fresh", [2.0], "direct", 3))
    rng = np.random.default_rng(0)
    image = (rng.random((args.size, args.size, 3)) * 255).astype(np.uint8)

    rows = []
    for precision in args.precision:
        resolved = resolve_precision(precision, device)
        label = f"{precision} ({'float32' if resolved is None else str(resolved)[6:]})"
        time_run(image, 1, model, device, precision)  # warm-up
        for steps in args.steps:
            runs = [time_run(image, steps, model, device, precision) for _ in range(args.repeats)]
            adapt_s = statistics.median(r[0] for r in runs)
            infer_s = statistics.median(r[1] for r in runs)
            total_s = statistics.median(r[0] + r[1] for r in runs)
            rows.append(
                dict(
                    precision=label, steps=steps, adapt_s=adapt_s, infer_s=infer_s, total_s=total_s
                )
            )
            print(rows[-1], flush=True)

    machine = machine_description(device)
    name = args.name or f"meta_test_speed_{device.type}"
    header = ["precision", "steps", "adaptation (s)", "inference (s)", "total (s)"]
    table = [
        [r["precision"], str(r["steps"]), fmt(r["adapt_s"]), fmt(r["infer_s"]), fmt(r["total_s"])]
        for r in rows
    ]
    md_path, _ = write_results(
        args.out,
        name,
        f"Meta-test time, {args.size}x{args.size} RGB input, x2 (median of {args.repeats})",
        command_line("benchmarks.meta_test_speed", argv),
        [
            "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()),
            "",
            *markdown_table(header, table),
        ],
        {"machine": machine, "rows": rows},
    )
    return md_path


if __name__ == "__main__":
    main()
