"""Budget-matched recipe studies: run arms of training stages, plot and tabulate them.

An arms file (TOML, ``training/study/*.toml``) names a base recipe and the arms; each
arm is a list of stages (``pretrain`` or ``meta`` commands of ``python -m training``,
each with a CPU budget and ``--set`` overrides of the base recipe). Every arm gets the
same seed and the same total CPU budget: process CPU time of its training steps
(``max_cpu_minutes``), not wall time, so that arms stay matched when other jobs share
the CPU. Validation, on held-out training images, is logged against that CPU time.

``python -m training.study run --arms FILE --data DIR --runs DIR [--parallel 2]``
    Runs the arms, ``--parallel`` at a time, one thread each; a stage whose output
    exists is skipped, one with a checkpoint but no output is resumed.
``python -m training.study report --arms FILE --runs DIR --out PREFIX [--notes MD]``
    Writes ``PREFIX.md`` / ``PREFIX.json`` (table: validation PSNR after each
    validated step count, e.g. 0, 1 and 10 adaptation steps, at the start and the end,
    gain per CPU-hour) and ``PREFIX.png``
    (all arms' validation curves against CPU minutes); names the arms not run and
    appends the Markdown file ``MD``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from napari_mzsr.io.atomic import atomic_path

from .recipe import ROOT, load_recipe


def validated_steps(study: dict[str, Any]) -> list[str]:
    """The adaptation step counts the base recipe validates (the table's columns)."""
    return [str(n) for n in load_recipe(ROOT / study["recipe"])["validation"]["steps"]]


def report_steps(study: dict[str, Any]) -> tuple[str, str]:
    """The two step counts the plot shows: one step and the most the recipe validates."""
    return "1", max(validated_steps(study), key=int)


def load_arms(path: str | Path) -> dict[str, Any]:
    """Read an arms file; checks that every arm has a unique name and known stages."""
    study = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    names = [arm["name"] for arm in study["arm"]]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: arm names must be unique, got {names}")
    for arm in study["arm"]:
        for stage in arm["stage"]:
            if stage["command"] not in ("pretrain", "meta"):
                raise ValueError(f"{path}: arm {arm['name']}: unknown command {stage['command']}")
    return study


def _output(study: dict[str, Any], stage: dict[str, Any], out: Path) -> Path:
    if stage["command"] == "pretrain":
        return out / "pretrained.pt"
    return out / f"{load_recipe(ROOT / study['recipe'])['name']}.pt"


def stage_dirs(arm: dict[str, Any], runs: Path) -> list[Path]:
    """Output folder of each stage of ``arm``."""
    return [runs / arm["name"] / f"{k}-{stage['command']}" for k, stage in enumerate(arm["stage"])]


def commands(study: dict[str, Any], arm: dict[str, Any], data: str, runs: Path) -> list[list[str]]:
    """The ``python -m training`` argument lists of ``arm``'s stages, in order.

    Paths in the arms file are relative to the repository root; ``{runs}`` stands for
    the runs folder and ``@previous`` for the previous stage's output. A stage's
    ``start_step`` (default 0) is the step it starts from when it resumes a checkpoint.
    """
    out = []
    previous = None
    for stage, folder in zip(arm["stage"], stage_dirs(arm, runs), strict=True):
        cmd = [stage["command"], "--recipe", study["recipe"], "--data", data]
        cmd += ["--out", str(folder), "--threads", "1"]
        budget = f"{stage['command']}.max_cpu_minutes={stage['cpu_minutes']}"
        for assignment in [budget, *stage.get("set", [])]:
            cmd += ["--set", assignment]
        for option in ("pretrained", "init", "resume"):
            if option in stage:
                value = stage[option]
                value = str(previous) if value == "@previous" else value.format(runs=runs)
                cmd += [f"--{option}", value]
        out.append(cmd)
        previous = _output(study, stage, folder)
    return out


def launch(cmd: list[str], log: Path) -> None:
    """Run ``python -m training *cmd`` with one thread, appending its output to ``log``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with log.open("a") as fh:
        subprocess.run(
            [sys.executable, "-m", "training", *cmd],
            cwd=ROOT,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            check=True,
        )


def run_arm(
    study: dict[str, Any],
    arm: dict[str, Any],
    data: str,
    runs: Path,
    launcher: Callable[[list[str], Path], None] = launch,
) -> None:
    """Run ``arm``'s stages one after the other with ``launcher`` (default:
    :func:`launch`, a process of one thread per stage)."""
    stages = zip(arm["stage"], stage_dirs(arm, runs), commands(study, arm, data, runs), strict=True)
    for stage, folder, cmd in stages:
        if _output(study, stage, folder).exists():
            continue
        ckpt = folder / "checkpoint.pt"
        if ckpt.exists():
            if "--resume" in cmd:
                i = cmd.index("--resume")
                del cmd[i : i + 2]
            cmd += ["--resume", str(ckpt)]
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "command.txt").open("a") as fh:
            fh.write(shlex.join(["python", "-m", "training", *cmd]) + "\n")
        launcher(cmd, folder / "stdout.txt")


def _records(folder: Path) -> list[dict[str, Any]]:
    path = folder / "log.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def curves(study: dict[str, Any], runs: Path) -> dict[str, dict[str, Any]]:
    """Per arm: validation points ``(cpu_minutes, {steps: psnr})`` along all its stages
    (each stage's CPU time offset by the stages before), its training iterations and
    CPU/wall time per stage."""
    result: dict[str, dict[str, Any]] = {}
    for arm in study["arm"]:
        points, stages, offset = [], [], 0.0
        for stage, folder in zip(arm["stage"], stage_dirs(arm, runs), strict=True):
            records = _records(folder)
            train = [r for r in records if "loss" in r and "cpu_s" in r]
            for r in records:
                if "val" in r:
                    points.append(((offset + r["cpu_s"]) / 60.0, r["val"]))
            if train:
                stages.append(
                    {
                        "command": stage["command"],
                        "steps": train[-1]["step"] - stage.get("start_step", 0),
                        "cpu_min": train[-1]["cpu_s"] / 60.0,
                        "wall_min": train[-1]["wall_s"] / 60.0,
                    }
                )
                offset += train[-1]["cpu_s"]
        result[arm["name"]] = {"points": points, "stages": stages, "cpu_min": offset / 60.0}
    for arm in study["arm"]:
        source = arm.get("start_value_from")
        if source and result[source]["points"] and result[arm["name"]]["points"]:
            result[arm["name"]]["points"].insert(0, (0.0, result[source]["points"][0][1]))
    return result


def table(study: dict[str, Any], data: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per arm: start, end and best validation after each step count the
    recipe validates and the gains per CPU-hour (end minus start, divided by the arm's
    CPU hours)."""
    steps = validated_steps(study)
    rows = []
    for arm in study["arm"]:
        d = data[arm["name"]]
        if len(d["points"]) < 2:
            continue
        start, end = d["points"][0][1], d["points"][-1][1]
        hours = d["cpu_min"] / 60.0
        rows.append(
            {
                "arm": arm["name"],
                "what": arm["what"],
                "stages": d["stages"],
                "cpu_min": d["cpu_min"],
                "start": {k: start[k] for k in steps},
                "end": {k: end[k] for k in steps},
                "best": {k: max(p[1][k] for p in d["points"]) for k in steps},
                "gain_per_cpu_hour": {k: (end[k] - start[k]) / hours for k in steps},
            }
        )
    return rows


def plot(study: dict[str, Any], data: dict[str, dict[str, Any]], path: Path, title: str) -> None:
    """Validation PSNR after 1 and after n steps against CPU minutes, one line per arm
    that ran and one row of panels per family of arms (each family its own PSNR range)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ran = [arm for arm in study["arm"] if data[arm["name"]]["points"]]
    families = list(dict.fromkeys(arm.get("family", "") for arm in ran)) or [""]
    fig, axes = plt.subplots(len(families), 2, figsize=(13, 4.5 * len(families)), squeeze=False)
    for i, arm in enumerate(study["arm"]):
        if arm not in ran:
            continue
        points = data[arm["name"]]["points"]
        row = axes[families.index(arm.get("family", ""))]
        for ax, key in zip(row, report_steps(study), strict=True):
            ax.plot(
                [p[0] for p in points],
                [p[1][key] for p in points],
                marker="o",
                ms=3,
                color=plt.cm.tab10(i % 10),
                label=arm["name"],
            )
    for family, row in zip(families, axes, strict=True):
        for ax, key in zip(row, report_steps(study), strict=True):
            ax.set(xlabel="CPU minutes (training steps, 1 thread)", ylabel="PSNR (dB)")
            name = f"{family}: " if family else ""
            plural = "s" if key != "1" else ""
            ax.set_title(f"{name}validation PSNR after {key} adaptation step{plural}")
            ax.grid(alpha=0.3)
        row[1].legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    try:
        with atomic_path(path, overwrite=True) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)


def _markdown(
    study: dict[str, Any], rows: list[dict[str, Any]], cmds: list[str], notes: str
) -> list[str]:
    from benchmarks.report import fmt, markdown_table

    steps = validated_steps(study)
    columns = " / ".join(steps)
    lines = [study.get("description", "").strip(), "", "Arm commands:", "", "```"]
    lines += [*cmds, "```", ""]
    header = [
        "arm",
        "what",
        "stages (iterations, CPU min, wall min)",
        "CPU min",
        f"start {columns} steps (dB)",
        f"end {columns} steps (dB)",
        f"best {columns} steps (dB)",
        f"gain per CPU-hour, {columns} steps (dB)",
    ]
    body = []
    for r in rows:
        stages = "; ".join(
            f"{s['command']} {s['steps']} it, {s['cpu_min']:.1f} / {s['wall_min']:.1f}"
            for s in r["stages"]
        )
        body.append(
            [
                r["arm"],
                r["what"],
                stages,
                fmt(r["cpu_min"], 1),
                *(" / ".join(fmt(r[k][n]) for n in steps) for k in ("start", "end", "best")),
                " / ".join(f"{r['gain_per_cpu_hour'][n]:+.2f}" for n in steps),
            ]
        )
    done = {r["arm"] for r in rows}
    missing = [f"{a['name']} ({a['what']})" for a in study["arm"] if a["name"] not in done]
    tail = ["", "Arms not run: " + "; ".join(missing) + "."] if missing else []
    return lines + markdown_table(header, body) + tail + (["", notes.strip()] if notes else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.study", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run the arms")
    p.add_argument("--arms", required=True)
    p.add_argument("--data", required=True, help="folder of training images")
    p.add_argument("--runs", required=True, help="folder for the arms' runs")
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--only", nargs="*", help="names of the arms to run (default all)")
    p = sub.add_parser("report", help="table and plot of the arms' runs")
    p.add_argument("--arms", required=True)
    p.add_argument("--runs", required=True)
    p.add_argument("--data", default="DATA", help="training folder shown in the commands")
    p.add_argument("--out", required=True, help="path prefix of the .md, .json and .png")
    p.add_argument("--notes", help="a Markdown file appended to the report (the findings)")
    args = parser.parse_args(argv)
    study = load_arms(args.arms)
    runs = Path(args.runs).resolve()
    if args.command == "run":
        arms = [a for a in study["arm"] if not args.only or a["name"] in args.only]
        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            for future in [pool.submit(run_arm, study, arm, args.data, runs) for arm in arms]:
                future.result()
        return 0

    from benchmarks.report import write_results

    data = curves(study, runs)
    rows = table(study, data)
    out = Path(args.out)
    plot(study, data, out.with_suffix(".png"), study.get("title", "recipe study"))
    cmds = [
        f"# {arm['name']}\n"
        + "\n".join(
            shlex.join(["python", "-m", "training", *c])
            for c in commands(study, arm, args.data, Path("RUNS"))
        )
        for arm in study["arm"]
    ]
    command = " ".join(["python -m training.study", *map(shlex.quote, argv or sys.argv[1:])])
    write_results(
        out.parent,
        out.name,
        study.get("title", "recipe study"),
        command,
        _markdown(study, rows, cmds, Path(args.notes).read_text() if args.notes else ""),
        {"rows": rows, "curves": {k: v["points"] for k, v in data.items()}},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
