"""Writing files completely or not at all, with the permissions of an ordinary file."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PARTIAL = ".partial"
_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask (read without changing it for longer than a call)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(path: Path) -> list[Path]:
    """Delete the temporary files and folders of earlier writes of ``path`` whose process
    is gone (killed while writing); returns them. Those of running writers are kept."""
    removed = []
    for candidate in path.parent.glob(f".{path.name}.*{PARTIAL}"):
        pid = candidate.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            if candidate.is_dir():
                shutil.rmtree(candidate, ignore_errors=True)
            else:
                candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; on success it is renamed onto
    ``path`` (atomic on one file system) with the mode a new file gets under the umask,
    on any error it is deleted. An interrupted write never leaves a partial or clobbered
    file at ``path``; the temporary file of a killed writer (named
    ``.NAME.PID.XXXX.partial``) is removed by the next write of the same path.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False (checked before anything is written).

    Examples
    --------
    >>> with atomic_path("result.txt") as tmp:  # doctest: +SKIP
    ...     tmp.write_text("done")
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; refusing to overwrite it without permission")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=PARTIAL
    )
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp creates 0600 files; give the result an ordinary file's mode.
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(path: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """:func:`atomic_path` for a folder (an OME-Zarr store):
    a temporary folder beside ``path``, renamed onto it when complete, removed on any
    error; the temporary folder of a killed writer is removed by the next write."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; refusing to overwrite it without permission")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{id(path):x}{PARTIAL}"
    tmp.mkdir(mode=0o777 & ~current_umask())
    try:
        yield tmp
        if path.exists():  # --overwrite: move the old one aside, then delete it
            old = path.parent / f".{path.name}.{os.getpid()}.old{PARTIAL}"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
