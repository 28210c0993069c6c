"""What the GUI test modules share: when they can run, and clicking Run."""

from __future__ import annotations

import os
import sys

import pytest

TIMEOUT_MS = 60_000


def require_gui() -> None:
    """Skip the calling test module unless napari, pytest-qt and an X display are there."""
    pytest.importorskip("napari")
    pytest.importorskip("pytestqt")
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        pytest.skip("needs an X display (run under xvfb-run -a)", allow_module_level=True)


def click_run(qtbot, widget) -> None:
    """Click the widget's Run button and wait until its worker has finished."""
    widget._run_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)


def forget_choices(folder) -> None:
    """Keep the widget's remembered choices in ``folder`` from now on: none to start
    with, and the user's own settings file never touched."""
    from qtpy.QtCore import QSettings

    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(folder))


@pytest.fixture(autouse=True)
def fresh_choices(tmp_path_factory):
    """Every test starts with no remembered widget choices, in a folder of its own
    (:func:`forget_choices`). Autouse in the modules that import it."""
    folder = tmp_path_factory.mktemp("qsettings")
    forget_choices(folder)
    yield folder
