"""``napari-mzsr export``: a BioImage.IO model package of a run, a profile or a theta_M."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .arguments import add_run_options


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="adapt to an image and write the adapted model as a BioImage.IO package (.zip) "
        "that runs without napari-mzsr; or, with --as-is, a theta_M or camera profile",
        description="Adapt theta_M to IMAGE as `napari-mzsr run` does and write the adapted "
        "network as a BioImage.IO model package (spec 0.5); IMAGE also gives its test "
        "tensors and cover. With --as-is, write --model (a theta_M or a camera profile) "
        "without adapting it.",
    )
    p.add_argument("image", help="one 2D grey or RGB image file")
    p.add_argument("-o", "--output", required=True, help="the package to write (.zip)")
    p.add_argument(
        "--as-is", action="store_true", help="export --model as it is, without adaptation"
    )
    p.add_argument("--name", help="the package's name (default: says what it holds)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing package")
    add_run_options(p)
    p.set_defaults(func=export_command)


def export_command(args: argparse.Namespace) -> int:
    if args.ensemble or args.back_projection:
        print(
            "error: --ensemble and --back-projection are not part of an exported package "
            "(it runs the network once)",
            file=sys.stderr,
        )
        return 2
    if args.as_is and not args.model:
        print("error: --as-is needs --model (a theta_M or camera profile)", file=sys.stderr)
        return 2
    from ..io.bioimageio import export_bioimageio
    from ..io.image_files import read_image
    from ..pipeline.run import drive, iter_adapt
    from .arguments import options_from_args

    try:
        data, meta = read_image(Path(args.image))
        if meta.kind == "ome-zarr" or data.ndim != (3 if meta.rgb else 2):
            raise ValueError(
                f"image: {args.image} is not one 2D image (shape {data.shape}); export one slice"
            )
        if args.as_is:
            model, note = args.model, "as it is"
        else:
            options, _ = options_from_args(args)
            model = drive(iter_adapt(data, options, rgb=meta.rgb))
            note = f"adapted in {model.steps_taken} steps"
        path = export_bioimageio(
            model,
            args.output,
            sample=data,
            scale=args.scale if args.as_is else None,
            name=args.name,
            overwrite=args.overwrite,
        )
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path} ({note})")
    return 0
