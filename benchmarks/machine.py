"""Describe the machine a benchmark ran on, for the header of its results."""

from __future__ import annotations

import os
import platform

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
