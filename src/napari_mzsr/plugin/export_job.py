"""The "Export..." buttons: a BioImage.IO package of the last run's adapted model or of
the last camera profile, written in a worker so that the viewer stays responsive."""

from __future__ import annotations

from collections.abc import Callable
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


class Exporter:
    """One Export button's flow, the same for a run and for a calibration: what the last
    result offers, the save dialog, the worker, and the status line it reports to.

    ``alive`` says whether the owning widget can still be updated; ``suffix`` ends the
    suggested file name (``"-adapted"`` for an adapted model).
    """

    def __init__(
        self,
        button: Any,
        owner: Any,
        status: Callable[[str], None],
        fail: Callable[[str], None],
        *,
        alive: Callable[[], bool] = lambda: True,
        suffix: str = "",
    ) -> None:
        self.button, self.owner, self.status, self.fail = button, owner, status, fail
        self.alive, self.suffix = alive, suffix
        self.offered: tuple[Any, Any] | None = None  # (model, sample image)
        self.worker = None
        button.changed.connect(self.export)

    def offer(self, model: Any, sample: Any) -> None:
        """What the button exports from now on (``model`` None: nothing)."""
        self.offered = None if model is None else (model, sample)
        self.button.enabled = self.offered is not None and self.worker is None

    def export(self, *_: object) -> None:
        """Ask where, then write the package in a worker."""
        if self.offered is None or self.worker is not None:
            return
        model, sample = self.offered
        path = ask_package_path(self.owner.native, f"{model.info.name}{self.suffix}.zip")
        if path is None:
            return
        worker = export_work(model, path, sample)
        worker.returned.connect(self._on_returned)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.button.enabled = False
        self.status(f"exporting {path.name}...")
        worker.start()

    def _on_returned(self, message: str) -> None:
        if self.alive():
            if message.startswith("failed"):
                self.fail(message.removeprefix("failed: "))
            else:
                self.status(message)

    def _on_finished(self) -> None:
        self.worker = None
        if self.alive():
            try:
                self.button.enabled = self.offered is not None
            except RuntimeError:
                pass  # the widget is already gone
