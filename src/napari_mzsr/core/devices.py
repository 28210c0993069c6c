"""Choosing the torch device and the fastest numerically safe precision on it."""

from __future__ import annotations

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
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


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
