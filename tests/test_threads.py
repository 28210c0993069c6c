"""The CPU thread policy: free cores measured from /proc/stat, the user's count kept."""

import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from napari_mzsr import super_resolve
from napari_mzsr.core import threads
from napari_mzsr.core.threads import LoadMeter, free_threads, use_threads

STAT = (
    "cpu  {a} 0 0 {i} 0 0 0 0 0 0\ncpu0 {a0} 0 0 {i0} 0 0 0 0 0 0\ncpu1 {a1} 0 0 {i1} 0 0 0 0 0 0\n"
)


def write_stat(path, busy0, busy1, idle0, idle1):
    text = STAT.format(a=busy0 + busy1, i=idle0 + idle1, a0=busy0, i0=idle0, a1=busy1, i1=idle1)
    path.write_text(text + "intr 0\n")


@pytest.mark.parametrize(
    ("cores", "busy", "logical", "expected"),
    [
        (2, 0.0, 2, 2),
        (2, 0.25, 2, 2),  # a desktop's background: still both cores
        (2, 1.0, 2, 1),  # one core busy elsewhere: one thread
        (2, 0.8, 2, 1),
        (2, 2.0, 2, 1),  # never fewer than one
        (4, 1.0, 8, 3),  # hyperthreads: one of 8 CPUs is half a core's worth of 4
        (2, None, 2, 2),  # no reading: all cores
    ],
)
def test_free_threads(cores, busy, logical, expected):
    assert free_threads(cores, busy, logical) == expected


def test_meter_subtracts_this_process_and_waits_only_for_a_first_reading(tmp_path):
    stat = tmp_path / "stat"
    write_stat(stat, 0, 0, 100, 100)
    clock = iter([0.0, 0.2, 5.2])
    own = iter([1.0, 1.1, 3.1])
    meter = LoadMeter(stat=stat, clock=lambda: next(clock), own_time=lambda: next(own))
    # No reading before the first: it waits MIN_WINDOW (here: the machine runs).
    meter.sleep = lambda seconds: write_stat(stat, 20, 10, 100, 110)
    # 0.3 s busy in 0.2 s, 0.1 s of it this process's: 1 CPU elsewhere.
    assert meter.busy_elsewhere({0, 1}) == pytest.approx(1.0)
    # The next reading is over the time since the last one, with no wait: 5 s later,
    # 4 s more busy, 2 s of them this process's.
    write_stat(stat, 20, 410, 200, 210)
    meter.sleep = lambda seconds: pytest.fail("a recent reading needs no wait")
    assert meter.busy_elsewhere({0, 1}) == pytest.approx(0.4)


def test_cpu_times_count_only_the_given_cpus(tmp_path):
    stat = tmp_path / "stat"
    write_stat(stat, 300, 100, 700, 900)
    assert threads.cpu_times({1}, stat) == pytest.approx((1.0, 10.0))
    assert threads.cpu_times({0, 1}, stat) == pytest.approx((4.0, 20.0))


def test_meter_without_proc_stat_says_nothing(tmp_path):
    assert LoadMeter(stat=tmp_path / "missing").busy_elsewhere({0}) is None


@pytest.fixture
def torch_threads(monkeypatch):
    """torch as at start-up with 2 threads, no environment variable set."""
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "_STARTUP_THREADS", 2)
    monkeypatch.setattr(threads, "_last_set", None)
    monkeypatch.setattr(threads, "physical_cores", lambda: 2)
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


class FixedMeter:
    def __init__(self, busy):
        self.busy = busy

    def busy_elsewhere(self, cpus, wait=True):
        return self.busy


class ScriptedMeter:
    """Busy CPUs elsewhere per reading, in turn (the last one repeats)."""

    def __init__(self, *readings):
        self.readings, self.waits = list(readings), []

    def busy_elsewhere(self, cpus, wait=True):
        self.waits.append(wait)
        return self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]


def test_auto_follows_the_load_and_keeps_the_users_count(torch_threads, monkeypatch):
    monkeypatch.setattr(threads, "_affinity", lambda: {0, 1})
    assert use_threads("auto", meter=FixedMeter(1.0)) == 1
    assert torch.get_num_threads() == 1
    # The load went away: the count this module set is its own to raise again.
    assert use_threads("auto", meter=FixedMeter(0.0)) == 2
    # Inference uses every core: its large tiles split well even beside a busy core.
    assert use_threads("auto", meter=FixedMeter(1.0)) == 1
    assert use_threads("auto", stage="inference", meter=FixedMeter(1.0)) == 2
    # A count the user set is kept by "auto", whatever the load ...
    torch.set_num_threads(3)
    assert use_threads("auto", meter=FixedMeter(1.0)) == 3
    assert use_threads("auto", stage="inference") == 3
    # ... and an explicit count always wins.
    assert use_threads(1) == 1
    assert torch.get_num_threads() == 1


def test_auto_keeps_omp_num_threads(torch_threads, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert use_threads("auto", meter=FixedMeter(1.0)) == 2


def test_a_busy_process_is_seen():
    """A real spinning process on this machine reads as about one busy CPU."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # started and spinning
        meter = LoadMeter()
        meter.busy_elsewhere(threads._affinity())
        time.sleep(0.5)
        assert meter.busy_elsewhere(threads._affinity()) > 0.6
    finally:
        spinner.kill()
        spinner.wait()


@pytest.mark.parametrize("bad", [0, -1, 1.5, "two", True, None])
def test_bad_threads_are_refused(bad):
    with pytest.raises(ValueError, match="threads must be 'auto' or an integer >= 1"):
        super_resolve(np.zeros((32, 32), np.uint8), threads=bad)


def test_the_count_used_is_reported(torch_threads):
    from napari_mzsr import iter_adapt
    from napari_mzsr.pipeline.run import drive

    image = np.random.default_rng(0).integers(0, 255, (40, 40), dtype=np.uint8)
    adapted = drive(iter_adapt(image, scale=2, steps=1, device="cpu", threads=1))
    assert adapted.threads_used == {"adaptation": 1}
    adapted.apply(image)
    assert adapted.threads_used == {"adaptation": 1, "inference": 1}


def test_cli_threads_option_and_summary(tmp_path, tiny_model, capsys):
    import tifffile

    from napari_mzsr.cli.main import main

    image = np.random.default_rng(1).integers(0, 255, (40, 40), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "in.tif", image)
    command = ["run", str(tmp_path / "in.tif"), "-o", str(tmp_path / "out"), "--steps", "1",
               "--model", str(tiny_model), "--device", "cpu", "--threads", "1"]  # fmt: skip
    assert main(command) == 0
    assert "CPU threads: adaptation 1, inference 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*command[:-1], "0"])
    assert "--threads: expected 'auto' or an integer >= 1, got '0'" in capsys.readouterr().err


def test_the_adaptation_follows_the_load_step_by_step(torch_threads, monkeypatch):
    """A blip in the first reading (another program starting) costs one step, not the
    run: the count is set again after every step from the load over that step."""
    from napari_mzsr import iter_adapt
    from napari_mzsr.pipeline.run import drive

    monkeypatch.setattr(threads, "_affinity", lambda: {0, 1})
    meter = ScriptedMeter(1.0, 0.0)
    monkeypatch.setattr(threads, "METER", meter)
    seen = []
    image = np.random.default_rng(0).integers(0, 255, (40, 40), dtype=np.uint8)
    run = iter_adapt(image, scale=2, steps=3, device="cpu", self_check=False)
    adapted = drive(run, lambda report: seen.append(torch.get_num_threads()))
    assert seen == [2, 2, 2]  # set to 1 for step 1, back to 2 after it
    assert meter.waits == [True, False, False, False]  # only the first reading may wait
    assert adapted.threads_used["adaptation"] == 2
