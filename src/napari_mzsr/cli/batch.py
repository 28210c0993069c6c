"""``napari-mzsr run``: super-resolve a batch of files, folders and glob patterns.

Everything that can be checked is checked before any image is computed (and before
torch is imported): every input is a regular, readable image file; the output folder
exists or can be made and is writable; the options are valid. Then each image is
processed on its own: one that fails is reported and the batch goes on; an output that
exists already is skipped (``--overwrite`` replaces it), so a rerun completes an
interrupted batch. Files in the output folder that are this tool's outputs are never
taken as inputs. SIGTERM stops the batch like Ctrl-C, and no partial file is left.
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

from ..io.image_files import SUFFIXES, probe_image, read_image, scaled_meta, write_image
from .arguments import options_from_args

# Output names: <stem>_x<factor>_mzsr<suffixes>, e.g. "a_x2_mzsr.tif", "b_x2x3_mzsr.png".
OUTPUT_NAME = re.compile(r"_x[0-9.]+(x[0-9.]+)?_mzsr(\.ome)?\.[A-Za-z]+$")


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
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.name.lower().endswith(SUFFIXES))
        elif path.exists():
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(item, recursive=True))
            found = [p for p in found if not p.is_dir()]
        if not found:
            missing.append(item)
        files += [f for f in found if f not in files]
    return files, missing


def format_scale(scale: tuple[float, float]) -> str:
    """``"2"`` for x2, ``"2x3"`` for unequal factors."""
    sy, sx = scale
    return f"{sy:g}" if sy == sx else f"{sy:g}x{sx:g}"


def output_path(source: Path, outdir: Path, scale: float | tuple[float, float]) -> Path:
    """``OUTDIR/<stem>_x<scale>_mzsr<suffixes>``, keeping ``.ome.tif`` together."""
    pair = (scale, scale) if isinstance(scale, int | float) else tuple(scale)
    name = source.name
    lower = name.lower()
    ext = next((e for e in (".ome.tiff", ".ome.tif") if lower.endswith(e)), source.suffix)
    return outdir / f"{name[: len(name) - len(ext)]}_x{format_scale(pair)}_mzsr{ext}"


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
        if not stat.S_ISREG(mode):
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


def process(path: Path, target: Path, args: argparse.Namespace, options, apply) -> None:
    """Super-resolve one file into ``target`` with checked options."""
    from tqdm import tqdm

    from ..pipeline.stacks import run_stack, stack_data

    data, meta = read_image(path)
    stack, file_options = stack_data(data, options, rgb=meta.rgb)
    run = run_stack(stack, file_options, apply, mode=args.mode)
    with tqdm(desc=path.name, unit="step", position=1, leave=False) as bar:
        try:
            while True:
                progress = next(run)
                bar.total = progress.total
                bar.n = progress.done
                bar.set_postfix_str(f"loss {progress.loss:.4f}" if progress.loss else "")
                bar.refresh()
        except StopIteration as done:
            result = done.value
    out_meta = scaled_meta(meta, file_options.scale, file_options.model.info.degradation)
    write_image(target, result.data, out_meta, overwrite=args.overwrite)


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
    total = len(files) + len(report.skipped) + len(report.failed)
    todo = []
    for path in files:
        target = output_path(path, outdir, args.scale)
        if target.exists() and not args.overwrite:
            report.skipped.append(f"{path}: {target} exists (--overwrite replaces it)")
        else:
            todo.append((path, target))
    if todo:
        try:
            options, apply = options_from_args(args)
        except (ValueError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        _process_all(todo, args, options, apply, report)
    report.print(total)
    return 1 if report.failed else 0


def _process_all(todo, args, options, apply, report: BatchReport) -> None:
    from tqdm import tqdm

    with sigterm_as_interrupt(), tqdm(todo, desc="files", unit="file", position=0) as overall:
        for path, target in overall:
            try:
                process(path, target, args, options, apply)
            except KeyboardInterrupt:
                report.print(len(todo))
                raise
            except Exception as exc:  # one bad file must not stop the batch
                report.failed.append(f"{path}: {exc}")
                continue
            report.written.append(target)
            tqdm.write(f"wrote {target}")
