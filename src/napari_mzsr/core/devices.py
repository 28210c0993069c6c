"""Choosing the torch device, and the fastest numerically safe precision and memory
layout on it; the cores this process may use (the thread count is :mod:`.threads`)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

# What the network runs on; torch knows more device types (meta, xla, ...) that it does not.
DEVICE_TYPES = ("cpu", "cuda", "mps")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then CPU; anything else is passed to
    ``torch.device`` after checking that it is available."""
    accepted = "device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
    if isinstance(device, torch.device):
        dev = device
    elif not isinstance(device, str):
        raise ValueError(f"{accepted}, got {device!r}")
    elif device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    else:
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise ValueError(f"{accepted}, got {device!r}") from None
    if dev.type not in DEVICE_TYPES:
        raise ValueError(f"{accepted}, got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' was requested but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {dev} does not exist ({torch.cuda.device_count()} CUDA devices)"
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' was requested but MPS is not available")
    return dev


def available_devices() -> list[str]:
    """Device names a user can pick: ``auto``, each CUDA device, ``mps``, ``cpu``."""
    names = ["auto"]
    names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return [*names, "cpu"]


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``precision`` on ``device``; ``None`` means plain float32.

    ``"auto"`` uses bfloat16 autocast (weights, loss and the residual addition stay
    float32) on CUDA devices that support it and on CPUs with bfloat16 hardware
    (AVX512-BF16 or AMX), where it is about twice as fast; elsewhere float32, because
    emulated bfloat16 is about three times slower than float32.
    """
    if precision == "float32":
        return None
    if precision == "bfloat16":
        return torch.bfloat16
    if precision == "auto":
        if device.type == "cpu":
            return torch.bfloat16 if cpu_has_bf16() else None
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None
    raise ValueError(f"precision must be 'auto', 'float32' or 'bfloat16', got {precision!r}")


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX tiles)."""
    return _cpu_probe("_is_avx512_bf16_supported") or _cpu_probe("_is_amx_tile_supported")


def cpu_has_avx512() -> bool:
    """Whether this CPU has AVX-512 (oneDNN then has faster kernels, see
    :func:`memory_format`)."""
    return _cpu_probe("_is_avx512_supported")


def _cpu_probe(name: str) -> bool:
    # Probes torch does not have (older versions) answer False.
    return bool(getattr(torch.cpu, name, lambda: False)())


def memory_format(device: torch.device, *, training: bool = False) -> torch.memory_format:
    """Layout of the network's 4-D tensors that runs fastest on ``device``.

    On CPU oneDNN's convolutions are faster channels-last (NHWC) in inference. Its
    NHWC backward-by-weights kernel without AVX-512, however, is its old AVX2 one:
    on an AVX2 EPYC it took 0.19 s for a 64 -> 64 channel 3x3 layer at 128 x 128
    pixels against 0.05 s in NCHW (one core), which made an adaptation step twice as
    slow as in NCHW. So training runs NCHW on CPUs without AVX-512; CUDA and MPS keep
    torch's default (NCHW).
    """
    if device.type != "cpu" or (training and not cpu_has_avx512()):
        return torch.contiguous_format
    return torch.channels_last


def available_memory(device: torch.device) -> int:
    """Bytes free for new tensors on ``device``: free GPU memory on CUDA, otherwise the
    available RAM (psutil if installed, else ``/proc/meminfo``, else 4 GiB)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def physical_cores() -> int:
    """Physical cores this process may run on: the CPUs of its affinity mask counted
    once per core (hyperthread siblings share one), at most the CPU quota of its
    cgroup (a container's limit), rounded up; at least 1."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = list(range(os.cpu_count() or 1))
    cores = {_core_of(cpu) for cpu in cpus}
    quota = cgroup_cpu_quota()
    count = len(cores) if quota is None else min(len(cores), -int(-quota // 1))
    return max(1, count)


def _core_of(cpu: int) -> str:
    """The core ``cpu`` belongs to: its list of hyperthread siblings (Linux sysfs), or
    itself where sysfs does not say."""
    topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
    for name in ("core_cpus_list", "thread_siblings_list"):
        try:
            return (topology / name).read_text().strip()
        except OSError:
            continue
    return str(cpu)


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs this process's cgroup may use (``cpu.max`` of cgroup v2, or
    ``cpu.cfs_quota_us / cpu.cfs_period_us`` of v1), None when unlimited or unknown."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None
