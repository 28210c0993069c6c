"""One table of the defaults against the real-images issue's targets, from the JSON files
that ``benchmarks.real_images`` runs wrote (a run per shard of the sets).

    python -m benchmarks.real_images_summary benchmarks/results/real_images_*_cpu.json \\
        --name real_images_summary_cpu

Per set: the mean and the smallest gain of the defaults over bicubic, the target for the
mean (+0.5 dB on uncompressed photos, 0 with JPEG, +0.8 on the DSLR pairs, 0 on the phone
pairs, +1 on fluorescence), whether every image is within 0.1 dB of bicubic, and how often
the self-check fell back.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from .report import command_line, markdown_table, write_results

# Every image of every set: no more than this below bicubic (dB).
WORST_ALLOWED = -0.1


def target(group: str) -> float:
    """The issue's target for the mean gain of the defaults over bicubic on ``group``."""
    if group.startswith("photos"):
        return 0.0 if group.endswith("jpeg75") else 0.5
    if group.startswith("City100 NikonD5500"):
        return 0.8
    if group.startswith("City100"):
        return 0.0
    return 1.0


# The self-check's fallback: Lanczos, bicubic in results files made before it.
FALLBACKS = ("lanczos", "bicubic")


def summarize(rows: list[dict[str, Any]]) -> tuple[list[list[str]], dict[str, int]]:
    """Table rows per group and the counts of targets met."""
    table, met = [], {"mean": 0, "worst": 0, "sets": 0}
    for group in dict.fromkeys(r["group"] for r in rows):
        cells = [r["defaults"] for r in rows if r["group"] == group]
        gains = [c["gain"] for c in cells]
        mean, worst = statistics.mean(gains), min(gains)
        fell_back = sum(c.get("choice") in FALLBACKS for c in cells)
        lanczos = [r["lanczos"]["gain"] for r in rows if r["group"] == group and "lanczos" in r]
        # Rounded as shown: a set that fell back to bicubic everywhere is at 0, not below.
        mean_ok = round(mean, 2) >= target(group)
        worst_ok = round(worst, 2) >= WORST_ALLOWED
        met["mean"] += mean_ok
        met["worst"] += worst_ok
        met["sets"] += 1
        table.append([
            group, str(len(gains)),
            f"{statistics.mean(lanczos):+.2f}" if lanczos else "—",
            f"{mean:+.2f}", f"{target(group):+.1f}", "yes" if mean_ok else "**no**",
            f"{worst:+.2f}", "yes" if worst_ok else "**no**", f"{fell_back}/{len(gains)}",
        ])  # fmt: skip
    return table, met


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="real_images JSON files")
    parser.add_argument("--name", default="real_images_summary_cpu")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    rows, sources = [], []
    for path in args.results:
        data = json.loads(path.read_text())
        rows += data["rows"]
        sources.append(f"- `{path.name}`: `{data['command']}`")
    table, met = summarize(rows)
    header = ["set", "images", "Lanczos", "defaults mean", "target", "met",
              "defaults min", f"all >= {WORST_ALLOWED:+.1f}", "fell back"]  # fmt: skip
    markdown = [
        "Gain in dB of PSNR (Y) over bicubic interpolation of the same LR image. Made from:",
        "",
        *sources,
        "",
        *markdown_table(header, table),
        "",
        f"Mean target met on {met['mean']} of {met['sets']} sets; no image more than "
        f"{-WORST_ALLOWED:g} dB below bicubic on {met['worst']} of {met['sets']}.",
    ]
    command = command_line("benchmarks.real_images_summary", sys.argv[1:] if argv is None else argv)
    title = "Real images: the defaults against the targets"
    payload = {"met": met, "table": table}
    md_path, _ = write_results(args.out, args.name, title, command, markdown, payload)
    print(md_path)
    return md_path


if __name__ == "__main__":
    main()
