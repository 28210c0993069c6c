"""``napari-mzsr run``: super-resolve a batch of files, folders and glob patterns.

Everything that can be checked is checked before any image is computed (and before
torch is imported): every input is a regular, readable image file (or an OME-Zarr
folder); the output folder
exists or can be made and is writable; the options are valid. Then each image is
processed on its own: one that fails is reported and the batch goes on; an output that
exists already is skipped (``--overwrite`` replaces it), so a rerun completes an
interrupted batch. Files in the output folder that are this tool's outputs are never
taken as inputs. SIGTERM stops the batch like Ctrl-C, and no partial file is left.

OME-Zarr inputs run lazily (:mod:`napari_mzsr.pipeline.lazy`): adaptation reads its
patches, inference reads and writes block by block, so an image larger than memory is
never held whole; their results are OME-Zarr too.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import signal
import stat
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..io.image_files import (
    PILLOW_SUFFIXES,
    SUFFIXES,
    is_zarr,
    probe_image,
    read_image,
    scaled_meta,
    write_image,
)
from .arguments import options_from_args
from .axial import TAG as AXIAL_TAG
from .axial import axial_options_from_args

# Output names: <stem>_x<factor>_mzsr<suffixes>, e.g. "a_x2_mzsr.tif", "b_x2x3_mzsr.png";
# with --axial <stem>_isoz_mzsr<suffixes>.
OUTPUT_NAME = re.compile(r"(_x[0-9.]+(x[0-9.]+)?|_isoz)_mzsr(\.ome)?\.[A-Za-z]+$")
FORMATS = ("auto", "tiff", "png", "ome-zarr")
FORMAT_SUFFIX = {"tiff": ".tif", "png": ".png", "ome-zarr": ".ome.zarr"}


@dataclass
class BatchReport:
    """What became of each input: written, skipped (with why) or failed (with why)."""

    written: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def print(self, total: int) -> None:
        for line in self.skipped:
            print(f"skipped: {line}", file=sys.stderr)
        for line in self.failed:
            print(f"error: {line}", file=sys.stderr)
        print(
            f"{len(self.written)} of {total} inputs super-resolved, {len(self.skipped)} "
            f"skipped, {len(self.failed)} failed",
            file=sys.stderr,
        )


def expand_inputs(inputs: Sequence[str]) -> tuple[list[Path], list[str]]:
    """Files from paths, folders (their image files) and glob patterns; also returns
    the inputs that matched nothing."""
    files: list[Path] = []
    missing: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir() and not is_zarr(path):
            found = sorted(p for p in path.iterdir() if p.name.lower().endswith(SUFFIXES))
        elif path.exists():
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(item, recursive=True))
            found = [p for p in found if not p.is_dir() or is_zarr(p)]
        if not found:
            missing.append(item)
        files += [f for f in found if f not in files]
    return files, missing


def format_scale(scale: tuple[float, float]) -> str:
    """``"2"`` for x2, ``"2x3"`` for unequal factors."""
    sy, sx = scale
    return f"{sy:g}" if sy == sx else f"{sy:g}x{sx:g}"


def output_path(
    source: Path,
    outdir: Path,
    scale: float | tuple[float, float],
    fmt: str = "auto",
    tag: str | None = None,
) -> Path:
    """``OUTDIR/<stem>_x<scale>_mzsr<suffixes>`` (``_<tag>_mzsr`` with a ``tag``),
    keeping ``.ome.tif`` and ``.ome.zarr`` together. ``fmt="auto"`` keeps the input's
    format, except that JPEG, BMP and WebP inputs give PNG (lossless: a JPEG would blur
    away what was resolved)."""
    pair = (scale, scale) if isinstance(scale, int | float) else tuple(scale)
    name = source.name
    lower = name.lower()
    doubles = (".ome.tiff", ".ome.tif", ".ome.zarr")
    ext = next((e for e in doubles if lower.endswith(e)), source.suffix)
    stem = name[: len(name) - len(ext)]
    if fmt != "auto":
        new = FORMAT_SUFFIX[fmt]
        keep = fmt == "tiff" and ext.lower() in (".ome.tif", ".ome.tiff", ".tif", ".tiff")
        ext = ext if keep else new
    elif ext.lower() in PILLOW_SUFFIXES:
        ext = ".png"
    return outdir / f"{stem}_{tag or 'x' + format_scale(pair)}_mzsr{ext}"


def check_inputs(files: list[Path], outdir: Path) -> tuple[list[Path], list[str], list[str]]:
    """Split ``files`` into readable images, skipped entries and unreadable ones, reading
    only their headers (a named pipe is never opened)."""
    readable, skipped, failed = [], [], []
    resolved_out = outdir.resolve()
    for path in files:
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            failed.append(f"{path}: cannot read ({exc.strerror})")
            continue
        if not stat.S_ISREG(mode) and not (stat.S_ISDIR(mode) and is_zarr(path)):
            skipped.append(f"{path}: not a regular file")
            continue
        if path.resolve().parent == resolved_out and OUTPUT_NAME.search(path.name):
            skipped.append(f"{path}: an output of napari-mzsr in the output folder")
            continue
        try:
            probe_image(path)
        except ValueError as exc:
            failed.append(str(exc))
            continue
        readable.append(path)
    return readable, skipped, failed


def check_output_folder(outdir: Path) -> None:
    """Make ``outdir`` if needed and check it is a writable folder.

    Raises
    ------
    ValueError
        It is a file, cannot be made, or cannot be written to.
    """
    if outdir.exists() and not outdir.is_dir():
        raise ValueError(f"output folder {outdir} is an existing file; give a folder (-o)")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot make the output folder {outdir}: {exc.strerror}") from None
    if not os.access(outdir, os.W_OK | os.X_OK):
        raise ValueError(f"output folder {outdir} is not writable")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt as Ctrl-C does, so that
    writes in progress clean up after themselves."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Bars:
    """Two progress bars for one file: the adaptation steps of the current adaptation
    (10 for ``--steps 10``) and the slices (each slice's inference)."""

    def __init__(self, name: str) -> None:
        from tqdm import tqdm

        self.steps = tqdm(desc=f"{name}: adapting", unit="step", position=1, leave=False)
        self.slices = tqdm(desc=f"{name}: slices", unit="slice", position=2, leave=False)

    def update(self, p) -> None:
        """Show a :class:`~napari_mzsr.StackProgress`."""
        if p.phase == "adapt":
            if self.steps.total != p.steps or p.step < self.steps.n:  # a new adaptation
                self.steps.reset(total=p.steps)
            self.steps.n = p.step
            if p.loss is not None:
                self.steps.set_postfix_str(f"loss {p.loss:.4f}", refresh=False)
            self.steps.refresh()
        elif p.phase == "apply":
            self.slices.total = p.n_slices
            self.slices.n = p.slice_done
            self.slices.refresh()

    def close(self) -> None:
        self.steps.close()
        self.slices.close()


def print_summary(path: Path, check: str, threads: dict[str, int], projected: str = "") -> None:
    """A file's line on stderr: the self-check's line, what back-projection did and the
    CPU threads used."""
    from ..core.threads import describe_threads

    summary = "; ".join(filter(None, [check, projected, describe_threads(threads)]))
    print(f"{path.name}: {summary}", file=sys.stderr)


def process(path: Path, target: Path, args: argparse.Namespace, options, apply) -> None:
    """Super-resolve one file into ``target`` with checked options."""
    from ..pipeline.stacks import run_stack, stack_data

    if getattr(args, "axial", False):
        from .axial import process_axial

        return process_axial(path, target, args, options)

    data, meta = read_image(path)
    if meta.kind == "ome-zarr":
        _process_lazy(path, target, data, meta, args, options, apply)
        return
    stack, file_options = stack_data(data, options, rgb=meta.rgb)
    run = run_stack(stack, file_options, apply, mode=args.mode)
    bars = Bars(path.name)
    try:
        while True:
            bars.update(next(run))
    except StopIteration as done:
        result = done.value
    finally:
        run.close()
        bars.close()
    out_meta = scaled_meta(meta, file_options.scale, file_options.model.info.degradation)
    write_image(target, result.data, out_meta, overwrite=args.overwrite)
    print_summary(path, result.describe_checks(), result.threads, result.describe_back_projection())


def _process_lazy(path: Path, target: Path, data, meta, args, options, apply) -> None:
    """An OME-Zarr input: adapt on patches read from it, then write the result slice by
    slice and block by block, never holding the image or the result whole."""
    import dask.array as da
    import numpy as np

    from ..io.atomic import atomic_folder
    from ..io.image_files import create_zarr
    from ..pipeline.images import image_data
    from ..pipeline.lazy import apply_dask
    from ..pipeline.run import adapt_image
    from ..pipeline.stacks import StackProgress, default_index

    if apply.ensemble or apply.back_projection:
        raise ValueError(
            "--ensemble and --back-projection are not available for OME-Zarr inputs "
            "(they run lazily, block by block); leave them out"
        )
    if not is_zarr(target):
        raise ValueError("OME-Zarr inputs are written as OME-Zarr (--format ome-zarr)")
    stack = image_data(
        data,
        rgb=False,
        stack=True,
        normalization=options.normalization,
        percentiles=options.percentiles,
    )
    options = options.for_image(False)
    positions = list(np.ndindex(*stack.slice_shape))
    bars = Bars(path.name)

    def adapt(position):
        run = adapt_image(stack.slice(position), options)
        try:
            while True:
                r = next(run)
                bars.update(StackProgress("adapt", r.step + 1, r.steps, 0, 1, 0, 0, r.loss))
        except StopIteration as done:
            return done.value
        finally:
            run.close()

    out_meta = scaled_meta(meta, options.scale, options.model.info.degradation)
    try:
        adapted = adapt(default_index(stack.slice_shape)) if args.mode == "once" else None
        with atomic_folder(target, overwrite=args.overwrite) as tmp:
            array = None
            for done, position in enumerate(positions):
                model = adapt(position) if args.mode == "per_slice" else adapted
                sr = apply_dask(
                    model, stack.array[position], output_dtype=apply.output_dtype, rgb=False,
                    tile=apply.tile,
                )  # fmt: skip
                if array is None:
                    shape = (*stack.slice_shape, *sr.shape)
                    array = create_zarr(tmp, shape, sr.dtype, out_meta)
                region = (*position, slice(None), slice(None))
                da.store(sr.rechunk(array.chunks[-2:]), array, regions=region, lock=False)
                bars.update(StackProgress("apply", 0, 0, done + 1, len(positions), 0, 0, None))
    finally:
        bars.close()
    if adapted is not None:
        check = adapted.self_check.describe() if adapted.self_check is not None else ""
        print_summary(path, check, adapted.threads_used)


def run(args: argparse.Namespace) -> int:
    """The ``run`` command; returns the exit status (0: nothing failed)."""
    outdir = Path(args.output)
    files, missing = expand_inputs(args.inputs)
    report = BatchReport(failed=[f"{item}: no such file, folder or match" for item in missing])
    try:
        check_output_folder(outdir)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    files, report.skipped, unreadable = check_inputs(files, outdir)
    report.failed += unreadable
    # Bad options are refused even when every output already exists (a re-run with a
    # mistyped flag must not pass for a successful one); not when no input is readable,
    # which fails anyway, without loading torch.
    options = apply = None
    if files:
        try:
            if getattr(args, "axial", False):
                options = axial_options_from_args(args)
            else:
                options, apply = options_from_args(args)
        except (ValueError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    total = len(files) + len(report.skipped) + len(report.failed)
    todo = []
    # The factor the options resolved (a profile's own when --scale was left out).
    scale = options.scale if apply is not None else args.scale or (2.0, 2.0)
    for path in files:
        tag = AXIAL_TAG if getattr(args, "axial", False) else None
        target = output_path(path, outdir, scale, getattr(args, "format", "auto"), tag)
        if target.exists() and not args.overwrite:
            report.skipped.append(f"{path}: {target} exists (--overwrite replaces it)")
        else:
            todo.append((path, target))
    if todo:
        _process_all(todo, args, options, apply, report)
    report.print(total)
    return 1 if report.failed else 0


def _process_all(todo, args, options, apply, report: BatchReport) -> None:
    from tqdm import tqdm

    with sigterm_as_interrupt(), tqdm(todo, desc="files", unit="file", position=0) as overall:
        for path, target in overall:
            try:
                note = process(path, target, args, options, apply)
            except KeyboardInterrupt:
                report.print(len(todo))
                raise
            except Exception as exc:  # one bad file must not stop the batch
                report.failed.append(f"{path}: {exc}")
                continue
            report.written.append(target)
            tqdm.write(f"wrote {target}" + (f" ({note})" if note else ""))
