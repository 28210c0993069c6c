"""Command line: ``napari-mzsr run`` for batches, ``napari-mzsr demo`` for a first try,
``napari-mzsr models`` to list the shipped theta_M files, ``napari-mzsr calibrate`` for a
camera profile from real pairs, ``napari-mzsr export`` for a BioImage.IO package."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import __version__
from .arguments import add_run_options
from .axial import add_axial_options
from .batch import FORMATS, run
from .calibrate import add_calibrate_parser
from .export import add_export_parser


def demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    try:
        out = run_demo(
            Path(args.output),
            sample=args.sample,
            steps=args.steps,
            model=args.model,
            device=args.device,
            overwrite=args.overwrite,
        )
    except (FileExistsError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    scores = out["psnr"]
    print(
        f"{args.sample}: bicubic {scores['bicubic']:.2f} dB, MZSR ({out['model']}, "
        f"{args.steps} steps) {scores['MZSR']:.2f} dB against the original"
    )
    for path in out["paths"].values():
        print(f"wrote {path}")
    return 0


def models(args: argparse.Namespace) -> int:
    from ..io.model_file import load_model, shipped_models
    from .model_table import models_table, summarize

    summaries = [summarize(load_model(name).info) for name in sorted(shipped_models())]
    print(models_table(summaries))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-mzsr", description="Zero-shot super-resolution (MZSR) from the command line."
    )
    parser.add_argument("--version", action="version", version=f"napari-mzsr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "run",
        help="super-resolve files, folders or globs of TIFF, PNG, JPEG, BMP, WebP or "
        "OME-Zarr images",
    )
    p.add_argument(
        "inputs", nargs="+", help="files, folders, glob patterns, or OME-Zarr folders (.zarr)"
    )
    p.add_argument("-o", "--output", required=True, help="output folder")
    add_run_options(p)
    p.add_argument(
        "--mode",
        choices=("once", "per_slice"),
        default="once",
        help="stacks: adapt once and apply to every slice, or adapt per slice",
    )
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="output format: auto (the input's; PNG for JPEG, BMP and WebP inputs), tiff, "
        "png or ome-zarr (written block by block; OME-Zarr inputs always give OME-Zarr)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_axial_options(p)
    p.set_defaults(func=run)

    d = sub.add_parser("demo", help="super-resolve a bundled sample, write a before/after PNG")
    d.add_argument("-o", "--output", default="mzsr_demo")
    d.add_argument("--sample", choices=("landsat", "cells"), default="landsat")
    d.add_argument("--steps", type=int, default=10)
    d.add_argument("--model")
    d.add_argument("--device", default="auto")
    d.add_argument("--overwrite", action="store_true")
    d.set_defaults(func=demo)

    m = sub.add_parser(
        "models", help="table of the shipped theta_M files: scales, data, validation PSNR"
    )
    m.set_defaults(func=models)
    add_calibrate_parser(sub)
    add_export_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted: no partial file was left", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
