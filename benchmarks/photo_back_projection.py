"""Back-projection under the photo assumption: which subsampling, how many iterations.

The defaults adapt to an image of unknown origin with an area-averaged son, and its
downscaling tool (area, bicubic, Lanczos, a camera) is unknown. Back-projection makes
the result consistent with the input under an assumed downscale; this study adapts
once per image with the defaults' adaptation (no back-projection), then back-projects
that result against blends of area averaging and bicubic downscaling (weight ``w`` of
area) for several iteration counts, and scores each against bicubic interpolation as
``benchmarks.real_images`` does (the blends work on the rounded uint8 result). Images
where the self-check fell back to Lanczos are scored as the package gives them (no
back-projection); the ``package`` column is what the defaults give (``apply`` with
``back_projection`` left to the model: JPEG images are not projected).

Run it on the validation split only: the defaults were chosen from its output.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_mzsr.core.refinement import back_project
from napari_mzsr.core.tensors import from_batch, to_batch
from napari_mzsr.pipeline.run import drive, iter_adapt

from . import real_images as ri
from .machine import add_threads_option, apply_threads
from .report import command_line, fmt, markdown_table, write_results

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
ITERATIONS = (1, 3, 10)


def study(item: ri.Item) -> dict[str, Any]:
    """Gains over bicubic (dB) of the defaults without back-projection and with every
    blend and count, for one item."""
    shape = item.hr.shape[:2]
    adapted = drive(iter_adapt(item.lr, scale=ri._factors(item.lr, shape)))
    plain = adapted.apply(item.lr, back_projection=0)
    base = ri.score(ri.bicubic(item.lr, shape)[0], item)[0]

    def gain(sr: np.ndarray) -> float:
        return ri.score(ri._fit(sr, shape), item)[0] - base

    check = adapted.self_check
    row: dict[str, Any] = {
        "group": item.group, "key": item.key, "choice": check.choice if check else None,
        "jpeg": adapted.jpeg_quality is not None, "unrefined": gain(plain),
    }  # fmt: skip
    kernel = torch.from_numpy(adapted.kernel).float()
    sr, lr = (to_batch(image / 255.0, channels=3) for image in (plain, item.lr))
    for w in WEIGHTS:
        for n in ITERATIONS:
            blend = {"area": w, "bicubic": 1 - w}
            if not adapted.uses_network:
                row[f"w{w:g} n{n}"] = row["unrefined"]
                continue
            out = back_project(sr, lr, kernel, adapted.scale, blend, n)
            row[f"w{w:g} n{n}"] = gain(ri._to_uint8(from_batch(out, rgb=True)))
    # What the defaults give (back-projected before rounding, JPEG and fallbacks alone).
    row["package"] = gain(adapted.apply(item.lr))
    return row


def items(data: Path | None, city100: Path | None, limit: int | None) -> Iterator[ri.Item]:
    """The validation photos (clean: three tools, three factors; noisy and JPEG: two
    and two) when ``data`` is given, City100 pairs 016-040 of both cameras when
    ``city100`` is."""
    if data is not None:
        paths = [data / "train" / name for name in ri.VALIDATION][:limit]
        clean = ri.photo_items(paths, (2.0, 3.0, 2.5), ("area", "matlab", "lanczos"), ("clean",))
        yield from clean
        yield from ri.photo_items(paths, (2.0, 3.0), ("area", "matlab"), ("noise2", "jpeg75"))
    if city100 is not None:
        keys = [f"{i:03d}" for i in range(16, 41)][:limit]
        for camera in ri.CAMERAS:
            yield from ri.city100_items(city100 / "real" / f"City100_{camera}", camera, keys)


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown: per set, each column's mean and worst gain, and how many fell back."""
    columns = ["unrefined", *(f"w{w:g} n3" for w in WEIGHTS), "w0.5 n1", "w0.5 n10", "package"]
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["group"], []).append(row)
    table = []
    for group, members in groups.items():
        cells = [
            f"{fmt(statistics.mean(r[c] for r in members))} ({fmt(min(r[c] for r in members))})"
            for c in columns
        ]
        fell = sum(r["choice"] == "lanczos" for r in members)
        table.append([group, str(len(members)), str(fell), *cells])
    header = ["set", "images", "fell back", *columns]
    return [
        "Gain over bicubic in dB, mean (worst image). `wW nN`: N iterations against W area +",
        "(1 - W) bicubic; `package`: what the defaults give (JPEG images not projected).",
        "",
        *markdown_table(header, table),
    ]


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="the shared data folder (for the photos)")
    parser.add_argument(
        "--city100", type=Path,
        help="a folder with City100 pairs 016-040 (benchmarks/city100_validation.sh)",
    )  # fmt: skip
    parser.add_argument("--limit", type=int, help="first N photos / pairs only")
    parser.add_argument("--name", default="photo_back_projection")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "validation"
    )
    add_threads_option(parser)
    args = parser.parse_args(argv)
    apply_threads(args)
    command = command_line(
        "benchmarks.photo_back_projection", sys.argv[1:] if argv is None else argv
    )
    rows = []
    for item in items(args.data, args.city100, args.limit):
        rows.append(study(item))
        print(item.group, item.key, f"{rows[-1]['package']:+.2f}", file=sys.stderr)
    title = "Back-projection under the photo assumption (validation split)"
    md, _ = write_results(args.out, args.name, title, command, summary(rows), {"rows": rows})
    print(md)
    return md


if __name__ == "__main__":
    main()
