"""Writing benchmark results: Markdown and strictly valid JSON, the command on top.

PSNR is infinite for identical images. JSON has no infinity, so non-finite floats are
written as the strings ``"inf"``, ``"-inf"`` and ``"nan"``; Markdown shows ``inf``.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from napari_mzsr.io.atomic import atomic_path


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by its name (``"inf"``, ...) and
    tuples turned into lists, so that ``json.dumps(..., allow_nan=False)`` accepts it."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def fmt(value: float | None, digits: int = 2, missing: str = "—") -> str:
    """A number for a Markdown cell: ``inf`` spelled out, ``missing`` for None."""
    if value is None:
        return missing
    if not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return f"{value:.{digits}f}"


def command_line(module: str, argv: Sequence[str]) -> str:
    """The shell command that reproduces a run of ``python -m module argv``."""
    return f"python -m {module} {shlex.join(argv)}".rstrip()


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Lines of a Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def write_results(
    out: Path,
    name: str,
    title: str,
    command: str,
    markdown: Sequence[str],
    payload: Mapping[str, Any],
) -> tuple[Path, Path]:
    """Write ``out/name.md`` (title, then the command line) and ``out/name.json`` (with
    ``command`` as its first key); returns both paths."""
    md_path, json_path = out / f"{name}.md", out / f"{name}.json"
    head = [f"# {title}", "", f"Command: `{command}`", ""]
    data = json_safe({"command": command, **payload})
    # Re-running a benchmark replaces its committed results, but never with half a file.
    for path, text in [
        (json_path, json.dumps(data, indent=2, allow_nan=False) + "\n"),
        (md_path, "\n".join([*head, *markdown]) + "\n"),
    ]:
        with atomic_path(path, overwrite=True) as tmp:
            tmp.write_text(text)
    return md_path, json_path
