"""``napari-mzsr run --axial``: make anisotropic Z stacks isotropic
(:func:`napari_mzsr.super_resolve_axial`), the factor read from each file's voxel size
(ImageJ or OME metadata, OME-Zarr scale) unless ``--z-factor`` gives it.

Each file is a ``(Z, Y, X)`` stack, possibly with a channel axis ``C`` (each channel
adapted on its own). OME-Zarr inputs are read and written block by block; their
result is OME-Zarr. The Z step of the output's metadata is divided by the factor.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.kernels import ESTIMATE

TAG = "isoz"  # output names: <stem>_isoz_mzsr<suffixes>


def parse_axial_kernel(spec: str) -> object:
    """``estimate``, ``sigma:S`` or ``fwhm:W`` (the axial Gaussian, in lateral pixels)."""
    if spec == ESTIMATE:
        return ESTIMATE
    name, _, value = spec.partition(":")
    try:
        if name in ("sigma", "fwhm"):
            return {name: float(value)}
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(
        f"axial kernel {spec!r} is not estimate, sigma:S or fwhm:W (lateral pixels)"
    )


def add_axial_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("isotropic Z (--axial)")
    group.add_argument(
        "--axial",
        action="store_true",
        help="super-resolve the Z axis of (Z, Y, X) stacks to the lateral pixel size; the "
        "factor from the file's voxel size (ImageJ, OME) or --z-factor. --scale and --kernel "
        "are not used (see --axial-kernel), --ensemble and --back-projection are refused; "
        "--steps defaults to 100",
    )
    group.add_argument(
        "--z-factor",
        type=float,
        metavar="F",
        help="Z step / lateral pixel size, 1 to 10 (default: from each file's voxel size)",
    )
    group.add_argument(
        "--axial-kernel",
        type=parse_axial_kernel,
        default=ESTIMATE,
        metavar="SPEC",
        help="axial blur beyond the lateral one: estimate (from the side planes; default), "
        "sigma:S or fwhm:W in lateral pixels",
    )


def axial_options_from_args(args: argparse.Namespace):
    """Checked :class:`~napari_mzsr.AxialOptions` from the parsed arguments (imports
    torch); the factor is checked here when ``--z-factor`` gives it.

    Raises
    ------
    ValueError
        A bad value, or ``--ensemble``/``--back-projection``, which the axial run has
        no counterpart for (refused rather than silently ignored).
    """
    from ..pipeline.axial_options import (
        DEFAULT_MODEL,
        DEFAULT_STEPS,
        AxialOptions,
        check_axial_factor,
    )

    if args.ensemble is not None or args.back_projection:
        flag = "--ensemble" if args.ensemble is not None else "--back-projection"
        raise ValueError(f"{flag} is not available with --axial (image runs only)")
    if args.z_factor is not None:
        check_axial_factor(args.z_factor)
    return AxialOptions(
        kernel=args.axial_kernel,
        steps=DEFAULT_STEPS if args.steps is None else args.steps,
        model=args.model or DEFAULT_MODEL,
        device=args.device,
        seed=args.seed,
        normalization=args.normalization,
    )


def file_z_factor(meta, z_factor: float | None) -> tuple[float, str]:
    """The factor of one file and where it came from: ``z_factor`` if given, else its
    voxel size.

    Raises
    ------
    ValueError
        No factor given and none in the file, or one outside (1, 10].
    """
    from ..core.axial import z_factor_from_scale
    from ..io.voxels import voxel_size
    from ..pipeline.axial_options import check_axial_factor

    if z_factor is not None:
        return check_axial_factor(z_factor), "--z-factor"
    size = voxel_size(meta)
    if size is None:
        raise ValueError(
            "no Z step in its metadata (ImageJ spacing, OME PhysicalSizeZ or "
            "OME-Zarr scale), or axis units that cannot be compared; give --z-factor"
        )
    factor = z_factor_from_scale(size)
    try:
        return check_axial_factor(factor), f"voxel size {size[0]:g} x {size[1]:g} x {size[2]:g}"
    except ValueError:
        raise ValueError(
            f"its voxel size {size} gives a Z factor of {factor:.3g}, outside (1, 10]; "
            "give --z-factor"
        ) from None


def stack_axes(axes: str) -> str:
    """tifffile ``axes`` of a file read as a Z stack: a plain multi-page TIFF's one
    unnamed leading axis (``Q``, ``I`` or ``S``) is Z."""
    letters = axes.upper()
    if len(letters) == 3 and letters[0] in "QIS" and letters.endswith("YX"):
        return "ZYX"
    return letters


def channel_axis(axes: str) -> int | None:
    """The channel axis of a stack with tifffile ``axes`` (Z, Y, X and maybe C)."""
    letters = stack_axes(axes)
    if sorted(letters) not in (sorted("ZYX"), sorted("CZYX")) or not letters.endswith("YX"):
        raise ValueError(
            f"--axial needs a (Z, Y, X) stack, possibly with channels (C), got axes {axes!r}"
        )
    return letters.index("C") if "C" in letters else None


def process_axial(path: Path, target: Path, args: argparse.Namespace, options) -> str:
    """Make one file isotropic into ``target``; returns where the factor came from."""
    from tqdm import tqdm

    from ..core.axial import axial_output_length, axial_positions
    from ..io.atomic import atomic_folder
    from ..io.image_files import create_zarr, is_zarr, read_image, write_image
    from ..io.voxels import axial_meta
    from ..pipeline.axial import iter_super_resolve_axial

    data, meta = read_image(path)
    axis = channel_axis(meta.axes)
    z_factor, source = file_z_factor(meta, args.z_factor)
    out_meta = axial_meta(meta, z_factor, float(axial_positions(1, z_factor)[0]))
    z = stack_axes(meta.axes).index("Z")
    shape = list(data.shape)
    shape[z] = axial_output_length(shape[z], z_factor)
    dtype = options.output_dtype or data.dtype
    bar = tqdm(desc=f"{path.name}: x{z_factor:g} along Z", unit="unit", position=1, leave=False)

    def run(out=None):
        steps = iter_super_resolve_axial(
            data, options, z_factor=z_factor, channel_axis=axis, out=out
        )
        try:
            while True:
                p = next(steps)
                bar.total = p.total
                bar.n = p.done
                bar.set_postfix_str(
                    f"{p.phase} channel {p.channel + 1}/{p.channels}", refresh=False
                )
                bar.refresh()
        except StopIteration as done:
            return done.value
        finally:
            steps.close()

    try:
        if meta.kind == "ome-zarr":
            if not is_zarr(target):
                raise ValueError("OME-Zarr inputs are written as OME-Zarr (--format ome-zarr)")
            with atomic_folder(target, overwrite=args.overwrite) as tmp:
                run(create_zarr(tmp, tuple(shape), dtype, out_meta))
        else:
            write_image(target, run(), out_meta, overwrite=args.overwrite)
    finally:
        bar.close()
    return f"x{z_factor:g} along Z from the {source}"
