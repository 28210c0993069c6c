"""Command line: ``napari-mzsr run`` for batches, ``napari-mzsr demo`` for a first try,
``napari-mzsr models`` to list the shipped theta_M files."""

from __future__ import annotations

import argparse
import glob
import sys
from collections.abc import Sequence
from pathlib import Path

from ..io.image_files import SUFFIXES, read_image, scaled_meta, write_image


def parse_kernel(spec: str) -> object:
    """Kernel option: ``iso:VAR``, ``aniso:L1,L2,THETA``, a preset name, a file, or
    ``estimate`` (fitted to each image)."""
    from ..core.kernels import ESTIMATE, PRESETS

    if spec == ESTIMATE:
        return ESTIMATE
    if spec.startswith("iso:"):
        return float(spec[4:])
    if spec.startswith("aniso:"):
        values = [float(v) for v in spec[6:].split(",")]
        if len(values) != 3:
            raise argparse.ArgumentTypeError("aniso: needs three numbers L1,L2,THETA")
        return tuple(values)
    if spec in PRESETS or Path(spec).is_file():
        return spec
    raise argparse.ArgumentTypeError(
        f"kernel {spec!r} is not iso:VAR, aniso:L1,L2,THETA, a preset "
        f"({', '.join(PRESETS)}), an existing file or {ESTIMATE}"
    )


def expand_inputs(inputs: Sequence[str]) -> tuple[list[Path], list[str]]:
    """Files from paths, folders (their TIFF/PNG files) and glob patterns; also returns
    the inputs that matched nothing."""
    files: list[Path] = []
    missing: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.name.lower().endswith(SUFFIXES))
        elif path.is_file():
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
        if not found:
            missing.append(item)
        files += [f for f in found if f not in files]
    return files, missing


def output_path(source: Path, outdir: Path, scale: float) -> Path:
    """``OUTDIR/<stem>_x<scale>_mzsr<suffixes>``, keeping ``.ome.tif`` together."""
    name = source.name
    lower = name.lower()
    ext = next((e for e in (".ome.tiff", ".ome.tif") if lower.endswith(e)), source.suffix)
    return outdir / f"{name[: len(name) - len(ext)]}_x{scale:g}_mzsr{ext}"


def _process(path: Path, target: Path, args: argparse.Namespace, position: int) -> None:
    from tqdm import tqdm

    from ..io.model_file import default_model, load_model
    from ..pipeline.stacks import iter_super_resolve_stack

    data, meta = read_image(path)
    model = load_model(args.model or default_model(args.scale, meta.rgb))
    run = iter_super_resolve_stack(
        data,
        args.scale,
        args.kernel,
        args.steps,
        model,
        args.device,
        args.seed,
        mode=args.mode,
        rgb=meta.rgb,
        normalization=args.normalization,
        ensemble=args.ensemble,
        back_projection=args.back_projection,
    )
    with tqdm(desc=path.name, unit="step", position=position, leave=False) as bar:
        try:
            while True:
                progress = next(run)
                bar.total = progress.total
                bar.n = progress.done
                bar.set_postfix_str(f"loss {progress.loss:.4f}" if progress.loss else "")
                bar.refresh()
        except StopIteration as done:
            result = done.value
    out_meta = scaled_meta(meta, args.scale, model.info.degradation)
    write_image(target, result, out_meta, overwrite=args.overwrite)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    files, missing = expand_inputs(args.inputs)
    failures = [f"{item}: no such file, folder or match" for item in missing]
    outdir = Path(args.output)
    written = 0
    with tqdm(files, desc="files", unit="file", position=0) as overall:
        for path in overall:
            target = output_path(path, outdir, args.scale)
            if target.exists() and not args.overwrite:
                failures.append(f"{path}: {target} exists (use --overwrite to replace it)")
                continue
            try:
                _process(path, target, args, position=1)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # one bad file must not stop the batch
                failures.append(f"{path}: {exc}")
                continue
            written += 1
            tqdm.write(f"wrote {target}")
    for line in failures:
        print(f"error: {line}", file=sys.stderr)
    print(f"{written} of {len(files) + len(missing)} inputs super-resolved", file=sys.stderr)
    return 1 if failures else 0


def demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    try:
        out = run_demo(
            Path(args.output), args.sample, args.steps, args.model, args.device, args.overwrite
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

    for name in sorted(shipped_models()):
        info = load_model(name).info
        val = info.training.get("validation_psnr", {})
        print(
            f"{name}: x{'/'.join(f'{s:g}' for s in info.scales)} {info.degradation}, "
            f"{info.channels} channel(s), validation {val}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-mzsr", description="Zero-shot super-resolution (MZSR) from the command line."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="super-resolve files, folders or globs of TIFF/PNG images")
    p.add_argument("inputs", nargs="+", help="files, folders or glob patterns")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--scale", type=float, default=2.0)
    p.add_argument(
        "--kernel",
        type=parse_kernel,
        default="iso:2.0",
        help="iso:VAR | aniso:L1,L2,THETA | preset | FILE | estimate (a Gaussian fitted "
        "to each image; default iso:2.0)",
    )
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--model", help="shipped name or theta_M file (default: by scale/channels)")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--mode",
        choices=("once", "per_slice"),
        default="once",
        help="stacks: adapt once and apply to every slice, or adapt per slice",
    )
    p.add_argument("--normalization", choices=("dtype", "percentile", "minmax"), default="dtype")
    p.add_argument(
        "--ensemble",
        choices=("mean", "median"),
        help="geometric self-ensemble over the flips/rotations that keep the kernel",
    )
    p.add_argument(
        "--back-projection",
        type=int,
        default=0,
        metavar="N",
        help="iterations of back-projection with the kernel after inference (default 0)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(func=run)

    d = sub.add_parser("demo", help="super-resolve a bundled sample, write a before/after PNG")
    d.add_argument("-o", "--output", default="mzsr_demo")
    d.add_argument("--sample", choices=("landsat", "cells"), default="landsat")
    d.add_argument("--steps", type=int, default=10)
    d.add_argument("--model")
    d.add_argument("--device", default="auto")
    d.add_argument("--overwrite", action="store_true")
    d.set_defaults(func=demo)

    m = sub.add_parser("models", help="list the shipped theta_M files")
    m.set_defaults(func=models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
