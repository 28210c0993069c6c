"""The command line's arguments: parsing them, and turning them into checked options."""

from __future__ import annotations

import argparse
import re
from pathlib import Path


def parse_kernel(spec: str) -> object:
    """Kernel option: ``auto``, ``iso:VAR``, ``aniso:L1,L2,THETA``, a preset name, a
    file, or ``estimate`` (fitted to the image)."""
    from ..core.kernels import AUTO, ESTIMATE, PRESETS

    accepted = (
        f"is not {AUTO}, iso:VAR, aniso:L1,L2,THETA, a preset ({', '.join(PRESETS)}), an "
        f"existing file or {ESTIMATE}"
    )
    if spec in (ESTIMATE, AUTO):
        return spec
    try:
        if spec.startswith("iso:"):
            return _buildable(spec, float(spec[4:]))
        if spec.startswith("aniso:"):
            values = [float(v) for v in spec[6:].split(",")]
            if len(values) == 3:
                return _buildable(spec, tuple(values))
    except ValueError:
        pass
    if spec in PRESETS or Path(spec).is_file():
        return spec
    raise argparse.ArgumentTypeError(f"kernel {spec!r} {accepted}")


def _buildable(spec: str, value: object) -> object:
    """``value`` if the core makes a kernel of it; else its error, as --kernel's."""
    from ..core.kernels import as_kernel

    # Checked here, the error names --kernel at once, before any input is read.
    try:
        as_kernel(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"kernel {spec!r}: {exc}") from None
    return value


def parse_scale(spec: str) -> tuple[float, float]:
    """Scale option: one factor (``2.5``) or two for Y and X (``2x3`` or ``2,3``)."""
    parts = re.split(r"[x,]", spec.strip().lower())
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2):
        raise argparse.ArgumentTypeError(
            f"scale {spec!r} is not a factor (2.5) or a pair for Y and X (2x3 or 2,3)"
        )
    return (values[0], values[-1])


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``run`` that become :class:`~napari_mzsr.AdaptOptions` and
    :class:`~napari_mzsr.ApplyOptions`."""
    parser.add_argument(
        "--scale",
        type=parse_scale,
        help="factor, or SYxSX (default: the factor of a --model that serves one, such as a "
        "camera profile, else 2; a factor within 0.1%% of such a model's is taken as its own)",
    )
    parser.add_argument(
        "--kernel",
        type=parse_kernel,
        default="auto",
        help="auto | photo | microscope | iso:VAR | aniso:L1,L2,THETA | another preset | "
        "FILE | estimate (a Gaussian fitted to the image). Default auto: the photo "
        "assumption (no blur beyond a downscale's own), the image's noise matched, the "
        "result self-checked against bicubic. microscope: optical blur of variance 2 px^2, "
        "direct subsampling (the default of earlier versions)",
    )
    parser.add_argument(
        "--noise",
        choices=("auto", "off"),
        default="auto",
        help="auto: add the image's own noise to its son so that it is not sharpened "
        "(default); off: adapt on a clean son",
    )
    parser.add_argument(
        "--no-self-check",
        action="store_true",
        help="always give the network's result; by default a run whose network does not "
        "beat bicubic on the image's own son falls back to theta_M or to Lanczos "
        "interpolation",
    )
    parser.add_argument("--steps", type=int, help="adaptation steps (default 10)")
    parser.add_argument("--model", help="shipped name or theta_M file (default: by scale/channels)")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--normalization",
        choices=("auto", "dtype", "percentile", "minmax"),
        default="auto",
        help="intensity mapping (default auto: uint8 and [0, 1] floats as they are, other "
        "data by their 0.1/99.9 percentiles)",
    )
    parser.add_argument(
        "--ensemble",
        choices=("mean", "median"),
        help="geometric self-ensemble over the flips/rotations that keep the kernel",
    )
    parser.add_argument(
        "--back-projection",
        type=back_projection_arg,
        default=None,
        metavar="N",
        help="iterations of back-projection with the kernel after inference, or auto "
        "(default: 1 under the photo assumption, the default kernel, else 0)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=threads_arg,
        default="auto",
        metavar="N",
        help="CPU threads, or 'auto' (default): the adaptation uses the cores other "
        "processes leave free, measured before it and after each step, inference every "
        "core; reported in the summary line",
    )


def options_from_args(args: argparse.Namespace):
    """Checked :class:`~napari_mzsr.AdaptOptions` and :class:`~napari_mzsr.ApplyOptions`
    from the parsed arguments (imports torch).

    Raises
    ------
    ValueError, FileNotFoundError
        A bad value; the message names the option.
    """
    from ..pipeline.options import AdaptOptions, ApplyOptions

    adapt = AdaptOptions(
        scale=args.scale,
        kernel=args.kernel,
        steps=10 if args.steps is None else args.steps,
        model=args.model,
        device=args.device,
        seed=args.seed,
        normalization=args.normalization,
        noise=args.noise,
        self_check=not args.no_self_check,
        threads=args.threads,
    )
    apply = ApplyOptions(ensemble=args.ensemble, back_projection=args.back_projection)
    return adapt, apply


def back_projection_arg(text: str) -> int | None:
    """``--back-projection``: ``auto`` (None) or an integer, whose range the options'
    check reports (:class:`~napari_mzsr.pipeline.options.ApplyOptions`)."""
    if text == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer, got {text!r}") from None


def threads_arg(text: str) -> int | str:
    """``--threads``: ``auto`` or an integer >= 1 (argparse reports the error). Checked
    here rather than by :func:`~napari_mzsr.core.threads.check_threads`, whose module
    imports torch: parsing the command line does not."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer >= 1, got {text!r}")
    return value
