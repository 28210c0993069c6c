"""The machine a benchmark runs on: its description for the results, waiting for its
device, timing on it, and the CPU thread option shared by the benchmark command lines."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


def machine_description(device: torch.device) -> dict[str, str | int]:
    """CPU/GPU name, core count, torch version and threads."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if "model name" in line)
    except (OSError, StopIteration):
        pass
    info: dict[str, str | int] = {
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        info["load_average_1min"] = f"{os.getloadavg()[0]:.2f}"
    except OSError:
        pass
    return info


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a timer reads the time it really took."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], Any], repeats: int = 3) -> float:
    """Median wall seconds of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads N``; apply it with :func:`apply_threads` after parsing."""
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (1 is faster on a shared, busy CPU)"
    )


def apply_threads(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
