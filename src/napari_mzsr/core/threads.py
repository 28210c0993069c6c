"""How many CPU threads torch runs a job with: for an adaptation, the cores this process
may use less those other processes keep busy, measured again at every adaptation; for
inference, all of them.

Why measure: torch's threads meet at a barrier after every convolution, so one thread
that shares its core with another process holds the others back. On a 2-core AMD EPYC
with one core kept busy by another process, MZSR(10) at 256x256 RGB took 11.9 s with
torch's default of 2 threads and 8.3 s with 1; on the idle machine 2 threads took 4.5 s
(``benchmarks/threads.py`` has the full table).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path

import torch

from .devices import physical_cores

# Other processes' use of a core, in cores, below which the core still counts as
# free: a desktop's background (napari's own event loop, a browser tab) uses a
# fraction of one, and giving up a thread for it would halve the speed.
FREE_CORE_SLACK = 0.3
# Shortest window a load reading is taken over: /proc/stat counts in 10 ms ticks.
MIN_WINDOW = 0.1
# A reading older than this says nothing about the machine now; a new one is taken.
MAX_AGE = 10.0
# The environment variables by which a user fixes OpenMP's (and torch's) thread count.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")

# torch's thread count when this package first looked: any other count (that this
# module did not set) was chosen by someone, and "auto" leaves it alone.
_STARTUP_THREADS = torch.get_num_threads()
_last_set: int | None = None


def cpu_times(cpus: set[int], stat: Path = Path("/proc/stat")) -> tuple[float, float] | None:
    """Busy and total seconds the logical ``cpus`` have run since boot, from Linux's
    ``/proc/stat`` (None where it cannot be read: other systems).

    Idle and I/O wait count as not busy; guest time is already inside user time.
    """
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy = total = 0
    for line in lines:
        name, *fields = line.split()
        if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus):
            continue
        ticks = [int(value) for value in fields[:8]]
        total += sum(ticks)
        busy += sum(ticks) - ticks[3] - ticks[4]
    return (busy / tick, total / tick) if total else None


@dataclass
class LoadMeter:
    """Reads how many CPUs other processes keep busy: the machine's busy time on this
    process's CPUs less this process's own CPU time, over the time since the last
    reading (or over :data:`MIN_WINDOW` seconds, waited for, when that reading is
    missing, too recent or older than :data:`MAX_AGE`).

    Measuring across the previous job means a stack's slices cost no extra wait.
    """

    stat: Path = Path("/proc/stat")
    clock: Callable[[], float] = time.monotonic
    own_time: Callable[[], float] = time.process_time
    sleep: Callable[[float], None] = time.sleep
    _last: tuple[float, float, float] | None = None

    def _read(self, cpus: set[int]) -> tuple[float, float, float] | None:
        times = cpu_times(cpus, self.stat)
        return None if times is None else (self.clock(), times[0], self.own_time())

    def busy_elsewhere(self, cpus: set[int], *, wait: bool = True) -> float | None:
        """CPUs (of ``cpus``) other processes used, on average, since the last
        reading; None where the system does not say, or, with ``wait`` False, where
        the last reading is too recent (it is kept, so the window grows) or missing."""
        now = self._read(cpus)
        if now is None:
            return None
        last = self._last
        if not wait and (last is None or now[0] - last[0] < MIN_WINDOW):
            return None
        if last is None or not MIN_WINDOW <= now[0] - last[0] <= MAX_AGE:
            last = now
            self.sleep(MIN_WINDOW)
            now = self._read(cpus)
            if now is None:
                return None
        self._last = now
        wall = now[0] - last[0]
        others = (now[1] - last[1]) - (now[2] - last[2])
        return max(0.0, others / wall) if wall > 0 else 0.0


METER = LoadMeter()


def free_threads(cores: int, busy: float | None, logical: int) -> int:
    """Threads for a job: the physical ``cores`` this process may use less the share
    of them that other processes keep busy (``busy`` of the ``logical`` CPUs, spread
    evenly over the cores), a core counting as free while others use less than
    :data:`FREE_CORE_SLACK` of it; at least 1. ``busy`` None (not measured): ``cores``.
    """
    if busy is None:
        return cores
    taken = busy * cores / max(logical, 1)
    return max(1, min(cores, math.floor(cores - taken + FREE_CORE_SLACK)))


def _affinity() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def user_threads(environ: Mapping[str, str] = os.environ) -> int | None:
    """The count someone other than this module chose for torch (an environment
    variable of :data:`THREAD_VARIABLES`, or ``torch.set_num_threads``), else None."""
    current = torch.get_num_threads()
    if any(environ.get(name) for name in THREAD_VARIABLES):
        return current
    if current not in (_STARTUP_THREADS, _last_set):
        return current
    return None


def use_threads(
    threads: int | str = "auto",
    *,
    stage: str = "adaptation",
    wait: bool = True,
    meter: LoadMeter | None = None,
) -> int:
    """Set torch's CPU thread count for the job about to run; returns it.

    Parameters
    ----------
    threads : "auto" or int
        An integer >= 1 is used as given. ``"auto"``: a count the user chose
        (:func:`user_threads`) is kept; otherwise, for an ``"adaptation"``, the free
        cores (:func:`free_threads`, measured by ``meter``; all physical cores where
        the system does not report its load), and for an ``"inference"`` all physical
        cores.
    wait : bool
        False: never wait for a load reading; where none is ready (the last is less
        than :data:`MIN_WINDOW` old) the count stays (between adaptation steps).
    stage : {"adaptation", "inference"}
        Why they differ: an adaptation step is many small convolutions, each ending at
        a barrier that waits for the thread sharing a busy core, while inference runs
        large tiles that split well. With one of 2 cores busy elsewhere, inference of
        512x512 RGB took 7.3 s with 2 threads and 8.6 s with 1; adaptation 9.9 s with 2
        and 6.8 s with 1 (``benchmarks/results/threads_cpu.md``).

    The count is process-wide in torch, so it is set again before each job.
    """
    global _last_set
    if threads == "auto":
        chosen = user_threads()
        if chosen is not None:
            return chosen
        if stage == "inference":
            count = physical_cores()
        else:
            cpus = _affinity()
            busy = (meter or METER).busy_elsewhere(cpus, wait=wait)
            if busy is None and not wait:
                return torch.get_num_threads()
            count = free_threads(physical_cores(), busy, len(cpus))
    else:
        count = int(threads)
    if count != torch.get_num_threads():
        torch.set_num_threads(count)
    _last_set = count
    return count


def check_threads(threads: object) -> int | str:
    """``threads`` as given when it is ``"auto"`` or an integer >= 1.

    Raises
    ------
    ValueError
        Anything else; the message names the option.
    """
    if isinstance(threads, str) and threads == "auto":
        return "auto"
    if isinstance(threads, bool) or not isinstance(threads, Integral) or threads < 1:
        raise ValueError(f"threads must be 'auto' or an integer >= 1, got {threads!r}")
    return int(threads)


def describe_threads(used: Mapping[str, int]) -> str:
    """One line for a summary: ``"CPU threads: adaptation 1, inference 2"``, or
    ``""`` where nothing ran on the CPU."""
    if not used:
        return ""
    return "CPU threads: " + ", ".join(f"{stage} {count}" for stage, count in used.items())
