"""Training curves side by side: validation PSNR against CPU minutes of meta-iterations.

Reads the ``log.jsonl`` of each run (``training/runlog.py``: a validation record per
``val_every`` iterations with its CPU seconds) and writes ``NAME.md`` (a table per run) and
``NAME.png`` (PSNR after each step count, and the gain over bicubic where recorded, against
CPU minutes). Example::

    python -m benchmarks.training_curves --runs real=training/checkpoints/real/meta-log.jsonl \\
        real-control=training/checkpoints/real-control/meta-log.jsonl --name real_training_cpu
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from .report import command_line, markdown_table, write_results


def validations(log: Path) -> list[dict]:
    """The validation records of a run log, in step order (a resumed step once)."""
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    by_step = {r["step"]: r for r in records if "val" in r}
    return [by_step[s] for s in sorted(by_step)]


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", required=True, help="NAME=LOG.jsonl ...")
    parser.add_argument("--name", default="training_curves_cpu")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    runs = {n: validations(Path(p)) for n, p in (entry.split("=", 1) for entry in args.runs)}
    keys = sorted({k for rs in runs.values() for r in rs for k in r["val"]}, key=str)
    counts = [k for k in keys if k.isdigit()]
    panels = counts + (["gain"] if "gain" in keys else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4), squeeze=False)
    markdown = []
    for name, records in runs.items():
        minutes = [r["cpu_s"] / 60 for r in records]
        for ax, key in zip(axes[0], panels, strict=True):
            ax.plot(minutes, [r["val"][key] for r in records], marker="o", ms=3, label=name)
            plural = "" if key == "1" else "s"
            title = (
                "gain over bicubic (dB)" if key == "gain" else f"PSNR after {key} step{plural} (dB)"
            )
            ax.set(xlabel="CPU minutes of meta-iterations", title=title)
        rows = [
            [str(r["step"]), f"{r['cpu_s'] / 60:.1f}", *(f"{r['val'][k]:.2f}" for k in panels)]
            for r in records
        ]
        header = [
            "iteration",
            "CPU min",
            *(("gain" if k == "gain" else f"{k} steps") for k in panels),
        ]
        markdown += [f"## {name}", "", *markdown_table(header, rows), ""]
    axes[0][0].legend()
    fig.tight_layout()
    png = args.out / f"{args.name}.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)
    command = command_line("benchmarks.training_curves", sys.argv[1:] if argv is None else argv)
    markdown = [f"Figure: `{png.name}`.", "", *markdown]
    md, _ = write_results(args.out, args.name, "Training curves", command, markdown, {"runs": runs})
    print(md)
    return md


if __name__ == "__main__":
    main()
