"""Device capabilities: precision, memory layout and CPU threads chosen from mocked probes."""

from __future__ import annotations

import pytest
import torch

from napari_mzsr.core import devices

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def _probes(monkeypatch, **supported: bool) -> None:
    """Make torch's CPU capability probes answer ``supported`` (False for the rest)."""
    for name in (
        "_is_avx512_supported",
        "_is_avx512_bf16_supported",
        "_is_amx_tile_supported",
        "_is_amx_fp16_supported",
    ):
        value = supported.get(name.removeprefix("_is_").removesuffix("_supported"), False)
        monkeypatch.setattr(torch.cpu, name, lambda value=value: value, raising=False)


@pytest.mark.parametrize(
    ("cpu", "expected"),
    [
        ({}, None),  # AVX2 EPYC: emulated bfloat16 is slower than float32
        ({"avx512": True}, None),  # AVX-512 Xeon without bf16
        ({"avx512": True, "avx512_bf16": True}, torch.bfloat16),
        ({"avx512": True, "amx_tile": True}, torch.bfloat16),
    ],
)
def test_auto_precision_is_bfloat16_only_where_the_cpu_computes_it(monkeypatch, cpu, expected):
    _probes(monkeypatch, **cpu)
    assert devices.resolve_precision("auto", CPU) is expected
    assert devices.resolve_precision("float32", CPU) is None
    assert devices.resolve_precision("bfloat16", CPU) is torch.bfloat16


def test_a_torch_without_the_probes_means_no_bfloat16(monkeypatch):
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.delattr(torch.cpu, name, raising=False)
    assert devices.resolve_precision("auto", CPU) is None


@pytest.mark.parametrize(
    ("avx512", "training", "expected"),
    [
        (False, False, torch.channels_last),
        (False, True, torch.contiguous_format),  # oneDNN's slow NHWC backward-weights
        (True, True, torch.channels_last),
        (True, False, torch.channels_last),
    ],
)
def test_cpu_layout_follows_the_kernels_onednn_has(monkeypatch, avx512, training, expected):
    _probes(monkeypatch, avx512=avx512)
    assert devices.memory_format(CPU, training=training) is expected


def test_gpu_layout_is_torch_default():
    assert devices.memory_format(CUDA) is torch.contiguous_format
    assert devices.memory_format(CUDA, training=True) is torch.contiguous_format


def test_physical_cores_count_siblings_once_and_follow_the_quota(monkeypatch):
    # Four logical CPUs on two cores (hyperthreads), as sysfs lists them.
    siblings = {0: "0,2", 1: "1,3", 2: "0,2", 3: "1,3"}
    monkeypatch.setattr(devices.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(devices, "_core_of", lambda cpu: siblings[cpu])
    monkeypatch.setattr(devices, "cgroup_cpu_quota", lambda: None)
    assert devices.physical_cores() == 2
    monkeypatch.setattr(devices.os, "sched_getaffinity", lambda pid: {0, 2})
    assert devices.physical_cores() == 1
    monkeypatch.setattr(devices.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(devices, "cgroup_cpu_quota", lambda: 1.5)
    assert devices.physical_cores() == 2
    monkeypatch.setattr(devices, "cgroup_cpu_quota", lambda: 0.5)
    assert devices.physical_cores() == 1


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
)
def test_cgroup_quota_v1_and_v2(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert devices.cgroup_cpu_quota(tmp_path) == expected
