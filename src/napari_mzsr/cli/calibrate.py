"""``napari-mzsr calibrate PAIRS_DIR -o camera.pt --scale S``: a camera profile from a
folder of real (LR, HR) pairs, for ``napari-mzsr run --model camera.pt``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# core.calibration.METHODS without importing torch to build the parser (a test compares them).
METHODS = ("drtl", "drtl-meta", "finetune")


def parse_calibration_scale(spec: str) -> float | None:
    """``auto`` (measured from the pairs) or one factor > 1."""
    if spec.strip().lower() == "auto":
        return None
    try:
        value = float(spec)
    except ValueError:
        value = float("nan")
    if not value > 1:
        raise argparse.ArgumentTypeError(f"scale {spec!r} is not a factor > 1 or 'auto'")
    return value


def add_calibrate_parser(sub: argparse._SubParsersAction) -> None:
    """The ``calibrate`` subcommand."""
    c = sub.add_parser(
        "calibrate",
        help="calibrate a camera profile (a theta_M file) from a folder of real LR/HR pairs",
        description="Calibrate theta_M to a camera or microscope from a few registered real "
        "(LR, HR) pairs (files 001L.png/001H.png or a_LR.tif/a_HR.tif); the profile is "
        "then used with 'napari-mzsr run --model PROFILE --scale S'.",
    )
    c.add_argument("pairs", help="folder of (LR, HR) pairs")
    c.add_argument("-o", "--output", required=True, help="profile file to write (.pt)")
    c.add_argument(
        "--scale",
        type=parse_calibration_scale,
        required=True,
        help="magnification from LR to HR, e.g. 2.887, or 'auto' to measure it from the pairs "
        "(rounded to 4 digits); 'run' must be given the same factor",
    )
    c.add_argument(
        "--method",
        choices=METHODS,
        default="drtl",
        help="drtl (default): fine-tune with relation-weighted synthetic distortions; "
        "drtl-meta: the meta-learning variant; finetune: the pairs alone",
    )
    c.add_argument("--steps", type=int, default=300, help="updates (default 300)")
    c.add_argument("--learning-rate", type=float, default=3e-4)
    c.add_argument(
        "--holdout",
        type=float,
        default=0.1,
        help="fraction of each pair's rows kept out of training to measure the profile "
        "(default 0.1)",
    )
    c.add_argument(
        "--model",
        help="starting theta_M: a plain (not scale-aware) shipped name or .pt file (default: "
        "the calibration's default model, the shipped direct-x2)",
    )
    c.add_argument("--name", help="profile name (default: the output file's stem)")
    c.add_argument("--device", default="auto")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    c.set_defaults(func=calibrate_command)


def calibrate_command(args: argparse.Namespace) -> int:
    """Read the pairs, check them, calibrate, write the profile atomically."""
    from ..core.calibration import CalibrationStep
    from ..io.model_file import save_model
    from ..io.pair_files import read_pairs
    from ..pipeline.calibrate import (
        DEFAULT_MODEL,
        CalibrateOptions,
        held_out_summary,
        iter_calibrate_profile,
        top_relations,
    )
    from ..pipeline.run import drive

    output = Path(args.output)
    if output.exists() and not args.overwrite:
        print(f"error: {output} exists; pass --overwrite to replace it", file=sys.stderr)
        return 1
    try:
        pairs, scale, how = read_pairs(args.pairs, args.scale)
        options = CalibrateOptions(
            scale=scale,
            model=DEFAULT_MODEL if args.model is None else args.model,
            method=args.method,
            steps=args.steps,
            learning_rate=args.learning_rate,
            holdout=args.holdout,
            name=args.name or output.stem,
            device=args.device,
            seed=args.seed,
        )
        print(
            f"{len(pairs)} pair(s) in {args.pairs}, scale {scale} ({how}); {args.method}, "
            f"{args.steps} steps on {options.device}",
            file=sys.stderr,
        )
        run = iter_calibrate_profile(
            [(p.lr, p.hr) for p in pairs], options, names=[p.key for p in pairs]
        )
        every = max(1, args.steps // 10)

        def report(step: CalibrationStep) -> None:
            done = step.step + 1
            if done % every == 0 or done == args.steps:
                print(f"  step {done}/{args.steps}, loss {step.loss:.4f}", file=sys.stderr)

        profile = drive(run, report)
        save_model(output, profile.state_dict, profile.info, overwrite=args.overwrite)
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    training = profile.info.training
    for pair in training["pairs"]:
        dy, dx = pair["shift"]
        print(
            f"  {pair['name']}: shift ({dy:+.2f}, {dx:+.2f}) HR px, ratio {pair['ratio']:.3f}, "
            f"misplacement {pair['misplacement']:.2f} px"
        )
    print(f"{held_out_summary(profile)} ({training['seconds']:.0f} s)")
    top = top_relations(profile)
    if top:
        print("closest synthetic distortions: " + ", ".join(f"{k} {w:.2f}" for k, w in top))
    print(f"wrote {output}; use: napari-mzsr run IMAGES -o OUT --model {output} --scale {scale}")
    return 0
