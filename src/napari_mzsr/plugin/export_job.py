"""The "Export..." buttons: a BioImage.IO package of the last run's adapted model or of
the last camera profile, written in a worker so that the viewer stays responsive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from napari.qt.threading import thread_worker

from .jobs import plain_message


def ask_package_path(parent: Any, suggestion: str) -> Path | None:
    """The ``.zip`` the user picks in a save dialog (which asks before replacing a
    file), or None if cancelled."""
    from qtpy.QtWidgets import QFileDialog

    chosen, _ = QFileDialog.getSaveFileName(
        parent, "Export a BioImage.IO model package", suggestion, "BioImage.IO package (*.zip)"
    )
    if not chosen:
        return None
    path = Path(chosen)
    return path if path.suffix.lower() == ".zip" else path.with_name(path.name + ".zip")


@thread_worker
def export_work(model: Any, path: Path, sample: np.ndarray) -> str:
    """Write the package (replacing ``path``: the dialog asked); returns the status line,
    or ``"failed: ..."`` with the reason."""
    from ..io.bioimageio import export_bioimageio

    try:
        export_bioimageio(model, path, sample=sample, overwrite=True)
    except Exception as exc:
        return f"failed: {plain_message(exc)}"
    return f"exported {path.name}: a BioImage.IO package that runs without napari-mzsr"
