"""Which theta_M file each benchmark row uses: ``--models NAME=PATH`` overrides, a
folder of ``<name>.pt`` files, or the shipped model of that name."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

from napari_mzsr.io.model_file import MZSRModel, load_model


def add_models_option(parser: argparse.ArgumentParser) -> None:
    """``--models NAME=PATH ...``, read back with :func:`parse_models`."""
    parser.add_argument(
        "--models", nargs="*", default=[], metavar="NAME=PATH", help="e.g. direct-x2=run/a.pt"
    )


def parse_models(pairs: Sequence[str]) -> dict[str, str]:
    """``--models NAME=PATH ...`` as ``{name: path}``; exits on a malformed pair."""
    out = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--models expects NAME=PATH, got {pair!r}")
        out[name] = path
    return out


def resolve_models(
    names: Sequence[str], model_dir: Path | None, overrides: Mapping[str, str]
) -> tuple[dict[str, MZSRModel], dict[str, str]]:
    """Load each theta_M: ``overrides[name]``, else ``model_dir/name.pt``, else the
    shipped model. Returns the loaded models and, for the missing ones, why."""
    models, missing = {}, {}
    for name in names:
        source: str | Path = overrides.get(name, name)
        if name not in overrides and model_dir is not None:
            source = model_dir / f"{name}.pt"
        try:
            models[name] = load_model(source)
        except FileNotFoundError as exc:
            missing[name] = str(exc)
    return models, missing
