"""Time MZSR(10) with the default thread policy against fixed thread counts, on an idle
machine and with cores kept busy by other processes (issue 35).

Each load state runs every configuration in turn, ``--repeats`` times, interleaved so
that a drift of the machine hits them alike; adaptation and inference are timed apart
(they may want different counts). Ratios: the default against one thread when busy,
and against the best fixed count when idle.

    python -m benchmarks.threads --image ../shared/data/bench/Set14/baboon.png \
        --sizes 256 512 --busy 0 1 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_mzsr import iter_adapt
from napari_mzsr.core.devices import physical_cores
from napari_mzsr.io.image_files import read_image
from napari_mzsr.pipeline.run import drive

from .machine import machine_description
from .report import command_line, fmt, markdown_table, write_results

SPIN = "while True: pass"


def spinners(count: int) -> list[subprocess.Popen]:
    """``count`` processes that each keep one core busy (a second's head start)."""
    procs = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(count)]
    if procs:
        time.sleep(1.0)
    return procs


def time_run(image: np.ndarray, threads: int | str, steps: int) -> dict[str, float | int]:
    """Seconds of the adaptation and the inference of one default run."""
    start = time.perf_counter()
    adapted = drive(iter_adapt(image, scale=2, steps=steps, device="cpu", threads=threads))
    middle = time.perf_counter()
    adapted.apply(image)
    end = time.perf_counter()
    return {
        "adapt_s": middle - start,
        "infer_s": end - middle,
        "total_s": end - start,
        "adapt_threads": adapted.threads_used["adaptation"],
        "infer_threads": adapted.threads_used["inference"],
    }


def main(argv: list[str] | None = None) -> Path:
    """Command-line entry point; returns the Markdown path."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, required=True, help="an RGB image (cropped)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 1], help="busy cores")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default="threads_cpu")
    args = parser.parse_args(argv)

    rgb, _ = read_image(args.image)
    cores = physical_cores()
    configs: list[int | str] = ["auto", *range(1, cores + 1)]
    drive(iter_adapt(rgb[:48, :48], scale=2, steps=1, device="cpu", threads=1))  # warm-up
    rows = []
    for busy in args.busy:
        procs = spinners(busy)
        try:
            for size in args.sizes:
                image = np.ascontiguousarray(rgb[:size, :size])
                runs: dict[str, list[dict]] = {str(c): [] for c in configs}
                for _ in range(args.repeats):
                    for config in configs:
                        runs[str(config)].append(time_run(image, config, args.steps))
                        print(busy, size, config, runs[str(config)][-1], flush=True)
                for config, timed in runs.items():
                    row = {"busy_cores": busy, "size": size, "threads": config}
                    for key in ("adapt_s", "infer_s", "total_s"):
                        row[key] = statistics.median(r[key] for r in timed)
                    row["used"] = sorted({(r["adapt_threads"], r["infer_threads"]) for r in timed})
                    rows.append(row)
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()

    summary = []
    for busy in args.busy:
        for size in args.sizes:
            group = {r["threads"]: r for r in rows if r["busy_cores"] == busy and r["size"] == size}
            auto = group["auto"]["total_s"]
            fixed = {k: v["total_s"] for k, v in group.items() if k != "auto"}
            reference = fixed["1"] if busy else min(fixed.values())
            summary.append(
                {"busy_cores": busy, "size": size, "ratio": auto / reference,
                 "against": "1 thread" if busy else "best fixed count"}
            )  # fmt: skip

    machine = machine_description(torch.device("cpu"))
    header = ["busy cores", "size", "threads", "used (adapt, infer)", "adapt (s)", "infer (s)",
              "total (s)"]  # fmt: skip
    table = [
        [str(r["busy_cores"]), str(r["size"]), r["threads"],
         " ".join(f"{a},{i}" for a, i in r["used"]), fmt(r["adapt_s"]), fmt(r["infer_s"]),
         fmt(r["total_s"])]
        for r in rows
    ]  # fmt: skip
    ratios = [
        [str(s["busy_cores"]), str(s["size"]), s["against"], f"{s['ratio']:.2f}"] for s in summary
    ]
    md_path, _ = write_results(
        args.out,
        args.name,
        f"MZSR({args.steps}) x2 on RGB crops of {args.image.name}: thread policy "
        f"(median of {args.repeats}, interleaved)",
        command_line("benchmarks.threads", argv),
        [
            "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()),
            f"Physical cores this process may use: {cores}. Busy cores: processes spinning"
            " `while True: pass` for the whole state.",
            "",
            *markdown_table(header, table),
            "",
            "The default ('auto') against the reference (target: at most 1.10):",
            "",
            *markdown_table(["busy cores", "size", "against", "auto / reference"], ratios),
        ],
        {"machine": machine, "rows": rows, "summary": summary},
    )
    return md_path


if __name__ == "__main__":
    main()
