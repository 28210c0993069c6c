"""Where a training iteration's time goes (``python -m training meta --benchmark N``).

Only arithmetic runs in the timed loop: the data of every iteration (patches, kernels,
degradations) is drawn before the clock starts, and nothing is logged, validated or
checkpointed inside it. Reported per iteration: wall and process CPU seconds (median
of the timed iterations), the FLOPs counted by
:class:`torch.utils.flop_counter.FlopCounterMode`, the achieved GFLOP/s, and the share
of each part of one iteration measured with :mod:`torch.profiler` (the parts are the
``record_function`` ranges of :mod:`training.meta` and :mod:`training.pretrain`),
with the data preparation timed on its own.

(Computing a meta-batch's tasks in one :func:`torch.func.vmap` call over stacked fast
weights was tried, commit fb0677b, ``--batched``: 11% more CPU time per iteration on
this CPU, so it was not kept; benchmarks/results/training_benchmark_cpu.md.)
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from napari_mzsr.core.network import MZSRNet
from napari_mzsr.io.model_file import load_model

from .meta import Task, sample_task, task_loss
from .pretrain import sample_batch, train_step
from .session import open_session
from .tasks import multi_step_weights

META_PARTS = ("inner-forward", "inner-grad", "query-forward", "backward", "optimizer")
PRETRAIN_PARTS = ("forward", "backward", "optimizer")


def _profile_shares(iteration: Callable[[], None], parts: tuple[str, ...]) -> dict[str, float]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        with record_function("iteration"):
            iteration()
        total = time.perf_counter() - start
    times = {e.key: e.cpu_time_total / 1e6 for e in prof.key_averages() if e.key in parts}
    shares = {part: times.get(part, 0.0) / total for part in parts}
    shares["other"] = max(0.0, 1.0 - sum(shares.values()))
    return shares


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def run(
    recipe: dict[str, Any],
    stage: str,
    iterations: int,
    *,
    pretrained: str | Path | None = None,
    data_dir: str | Path | None = None,
    device: str | None = None,
    warmup: int = 1,
) -> dict[str, Any]:
    """Time ``iterations`` training iterations of ``stage`` ("meta" or "pretrain").

    Parameters
    ----------
    recipe : dict
        From :func:`training.recipe.load_recipe`; its stage settings decide the work
        (tasks, inner steps, order, patches, batch).
    stage : {"meta", "pretrain"}
    iterations : int
        Timed iterations (>= 1), after ``warmup`` untimed ones.
    pretrained : path, optional
        theta_M file to start from (default: freshly initialised weights; the cost
        does not depend on the weights).
    data_dir, device : optional
        See :func:`training.session.open_session`.

    Returns
    -------
    dict
        ``wall_s`` and ``cpu_s`` per iteration (medians), ``gflop`` per iteration,
        ``gflops_wall`` (GFLOP per wall second) and ``gflops_cpu`` (per CPU second),
        ``data_s`` (data preparation per iteration, CPU), ``shares`` of the parts in
        one profiled iteration, and the run's ``threads`` and ``load`` (1-min load
        average before and after).
    """
    if stage not in ("meta", "pretrain"):
        raise ValueError(f"stage must be meta or pretrain, got {stage!r}")
    if iterations < 1 or warmup < 0:
        raise ValueError(f"iterations must be >= 1 and warmup >= 0, got {iterations}, {warmup}")
    load_before = _load()
    session = open_session(recipe, stage, data_dir, None, None, device)
    cfg = session.settings
    if pretrained:
        net = load_model(pretrained).network()
    else:
        net = MZSRNet(recipe["channels"], **recipe["network"], generator=torch.Generator())
    net = session.prepare_net(net)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg["meta_lr" if stage == "meta" else "lr"])
    count = warmup + iterations + 2  # + one counted and one profiled iteration

    started = time.process_time()
    if stage == "meta":
        data = [[sample_task(session) for _ in range(cfg["tasks"])] for _ in range(count)]
        weights = multi_step_weights(0, cfg["inner_steps"], cfg["anneal_iterations"])
        weights = torch.tensor(weights, dtype=torch.float32, device=session.device)
    else:
        data = [sample_batch(session, cfg["batch"]) for _ in range(count)]
    data_s = (time.process_time() - started) / count

    def meta_iteration(tasks: list[Task]) -> None:
        optimizer.zero_grad(set_to_none=True)
        for task in tasks:
            loss, _ = task_loss(net, task, weights, cfg, session.autocast)
            with record_function("backward"):
                (loss / cfg["tasks"]).backward()
        with record_function("optimizer"):
            optimizer.step()

    def iteration(i: int) -> None:
        if stage == "meta":
            meta_iteration(data[i])
        else:
            train_step(net, *data[i], optimizer, session.autocast)

    for i in range(warmup):
        iteration(i)
    wall, cpu = [], []
    for i in range(warmup, warmup + iterations):
        w0, c0 = time.perf_counter(), time.process_time()
        iteration(i)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    with FlopCounterMode(display=False) as counter:
        iteration(count - 2)
    parts = META_PARTS if stage == "meta" else PRETRAIN_PARTS
    shares = _profile_shares(lambda: iteration(count - 1), parts)
    wall_s, cpu_s = statistics.median(wall), statistics.median(cpu)
    gflop = counter.get_total_flops() / 1e9
    return {
        "stage": stage,
        "iterations": iterations,
        "threads": torch.get_num_threads(),
        "load": [load_before, _load()],
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "wall_s_all": wall,
        "gflop": gflop,
        "gflops_wall": gflop / wall_s,
        "gflops_cpu": gflop / cpu_s,
        "data_s": data_s,
        "data_share": data_s / (data_s + cpu_s),
        "shares": shares,
        "channels_last": session.channels_last,
        "precision": str(session.autocast_dtype or torch.float32),
    }


def report(result: dict[str, Any]) -> str:
    """A few lines of text for :func:`run`'s result."""
    shares = ", ".join(f"{k} {100 * v:.0f}%" for k, v in result["shares"].items())
    return "\n".join(
        [
            f"{result['stage']} benchmark ({result['precision']}, "
            f"channels_last {result['channels_last']}): {result['iterations']} iterations, "
            f"{result['threads']} threads, load {result['load'][0]} -> {result['load'][1]}",
            f"seconds per iteration: {result['wall_s']:.3f} wall, {result['cpu_s']:.3f} CPU "
            f"(median; all wall: {', '.join(f'{t:.3f}' for t in result['wall_s_all'])})",
            f"FLOPs per iteration: {result['gflop']:.1f} GFLOP; achieved "
            f"{result['gflops_wall']:.1f} GFLOP/s wall, {result['gflops_cpu']:.1f} per CPU second",
            f"data preparation (outside the timed loop): {result['data_s']:.3f} s per iteration "
            f"({100 * result['data_share']:.1f}% of data + arithmetic)",
            f"profile of one iteration: {shares}",
        ]
    )
