"""Command line: ``python -m training {pretrain,meta,export} ...`` (see ``--help``)."""

from __future__ import annotations

import argparse
import sys

from . import distributed


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train MZSR's theta_M: pretraining, then meta-transfer learning. "
        "Run under torchrun for several processes.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("pretrain", "large-scale pretraining on bicubic pairs; writes pretrained.pt"),
        ("meta", "meta-transfer learning from pretrained weights; writes <name>.pt"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--recipe", required=True, help="TOML recipe (training/recipes/)")
        if name == "meta":
            p.add_argument("--pretrained", required=True, help="pretrained.pt of the first stage")
        else:
            p.add_argument(
                "--init",
                help="theta_M file to start from instead of random weights (fine-tuning, "
                "e.g. x4 from x2; 3 <-> 1 channels are converted)",
            )
        p.add_argument("--data", help="folder of HR training images (overrides the recipe)")
        p.add_argument("--val-data", help="folder of validation images (default: held out)")
        p.add_argument("--out", help="output folder (default runs/<name>/<stage>)")
        p.add_argument("--resume", help="checkpoint of this stage to continue exactly")
        p.add_argument("--device", help="cpu, cuda, cuda:1, ... (overrides the recipe)")
    p = sub.add_parser("export", help="write a theta_M file from a checkpoint")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="theta_M file to write (.pt)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "export":
        from .export import export_checkpoint

        print(export_checkpoint(args.checkpoint, args.out))
        return 0

    from .recipe import load_recipe

    recipe = load_recipe(args.recipe)
    common = {
        "data_dir": args.data,
        "val_dir": args.val_data,
        "out": args.out,
        "resume": args.resume,
        "device": args.device,
    }
    try:
        if args.command == "pretrain":
            from .pretrain import run

            path = run(recipe, init=args.init, **common)
        else:
            from .meta import run

            path = run(recipe, args.pretrained, **common)
    finally:
        distributed.shutdown()
    if path is not None:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
