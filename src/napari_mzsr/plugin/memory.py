"""The widget's choices, remembered between sessions (Qt's QSettings, an INI file in the
user's configuration folder, e.g. ``~/.config/napari-mzsr/widget.ini``).

Values are stored as JSON, so a number stays a number. A value that no longer fits
its control (a model file that was deleted, a device that is gone) is skipped when
restoring; the control keeps its default.
"""

from __future__ import annotations

import json
from typing import Any

from qtpy.QtCore import QSettings

ORGANISATION, APPLICATION = "napari-mzsr", "widget"
GROUP = "choices"


def store() -> QSettings:
    """The settings file of the widget (``QSettings.setPath`` moves it, e.g. in tests)."""
    return QSettings(QSettings.IniFormat, QSettings.UserScope, ORGANISATION, APPLICATION)


def load() -> dict[str, Any]:
    """All remembered choices, by control name."""
    settings = store()
    settings.beginGroup(GROUP)
    out = {}
    for key in settings.childKeys():
        try:
            out[key] = json.loads(settings.value(key))
        except (TypeError, ValueError):
            continue  # written by something else: ignore it
    settings.endGroup()
    return out


def save(values: dict[str, Any]) -> None:
    """Remember ``values`` (control name -> JSON-serialisable value)."""
    settings = store()
    settings.beginGroup(GROUP)
    for key, value in values.items():
        settings.setValue(key, json.dumps(value))
    settings.endGroup()
    settings.sync()


def forget() -> None:
    """Forget every remembered choice (the widget's "Reset")."""
    settings = store()
    settings.remove(GROUP)
    settings.sync()


MODELS = "models"


def load_models() -> list[tuple[str, str]]:
    """The models the user added to the model list, as ``(label, file)``, oldest first."""
    settings = store()
    try:
        entries = json.loads(settings.value(MODELS, "[]"))
        return [(str(label), str(path)) for label, path in entries]
    except (TypeError, ValueError):
        return []  # written by something else: start with none


def save_models(entries: list[tuple[str, str]]) -> None:
    """Remember the added models (kept by :func:`forget`: a Reset keeps them)."""
    settings = store()
    settings.setValue(MODELS, json.dumps([list(entry) for entry in entries]))
    settings.sync()
