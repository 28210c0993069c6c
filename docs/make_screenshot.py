"""Make docs/screenshot.png: the MZSR widget after a run on the fluorescence sample, with
its model list open and the tooltip of a model showing.

Opens napari, loads the "blurred and downscaled" DNA channel of the cells sample and the
original, super-resolves the former with the widget (exactly as a user would: options
set, Run clicked), lays input, result and original side by side, opens the model list,
shows the tooltip of the model that ran and saves a picture of the screen (popups and
tooltips are windows of their own, so the screen is grabbed, not the main window). The
widget's remembered choices are kept in a temporary folder: the picture does not depend
on, nor change, the user's settings.

Run it headless under Xvfb::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshot.py direct-x2-gray
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

PLUGIN = "napari-mzsr"
WIDGET = "MZSR super-resolution"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "model", nargs="?", default="auto", help="'auto', a shipped model name or a .pt file"
    )
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("screenshot.png"))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, nargs=2, default=(1560, 960), metavar=("W", "H"))
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the run")
    return parser.parse_args()


def settle(app, seconds: float = 1.0) -> None:
    """Let Qt and the canvas repaint."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def main() -> None:
    args = parse_args()
    from qtpy.QtCore import QSettings

    # Before the widget exists: its remembered choices go to a throwaway folder.
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, tempfile.mkdtemp())

    import napari
    from napari._qt.dialogs.qt_notification import NapariQtNotification
    from qtpy.QtCore import QPoint
    from qtpy.QtWidgets import QApplication, QToolTip

    from napari_mzsr.io.model_file import shipped_models
    from napari_mzsr.plugin.jobs import AUTO
    from napari_mzsr.plugin.widget import FROM_FILE

    viewer = napari.Viewer(title="napari-mzsr")
    window = viewer.window._qt_window
    window.resize(*args.size)
    window.move(0, 0)
    viewer.open_sample(PLUGIN, "cells")
    original = viewer.layers["cells DNA"]
    for name in ("cells PH3", "cells body"):
        viewer.layers.remove(name)
    original.name = "cells DNA (original)"
    viewer.open_sample(PLUGIN, "cells_degraded")
    low = viewer.layers[-1]
    for layer in (original, low):
        layer.colormap = "gray"  # the result inherits it; blue on black is hard to see

    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    widget._image.value = low
    if args.model == "auto":
        widget._model.value = AUTO
    elif args.model in shipped_models():
        widget._model.value = args.model
    else:
        widget._model.value = FROM_FILE
        widget._model_file.value = Path(args.model).resolve()
    widget._kernel_kind.value = "preset"
    widget._preset.value = "g^d_2.0"  # the sample's known kernel
    widget._steps.value = args.steps
    widget._device.value = args.device
    widget._run_button.native.click()

    app = QApplication.instance()
    deadline = time.monotonic() + args.timeout
    while widget.running and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)
    if widget.running or len(viewer.layers) != 3:
        raise SystemExit(f"the run did not finish: {widget._status.value}")

    # Input, result and original side by side, in that order from left to right.
    viewer.layers.move(viewer.layers.index(original), len(viewer.layers))
    viewer.grid.enabled = True
    viewer.grid.shape = (1, 3)
    viewer.reset_view()
    # Keep napari's own toasts (e.g. a Qt backend deprecation notice) out of the picture.
    for toast in window.findChildren(NapariQtNotification):
        toast.close()
    settle(app)

    # The model list, open, with the tooltip of the model that ran.
    combo = widget._model.native
    combo.showPopup()
    settle(app, 0.5)
    view = combo.view()
    ran = viewer.layers[1].metadata["mzsr"]["model"]
    row = combo.findData(ran)
    if row < 0:
        row = next(i for i in range(combo.count()) if combo.itemText(i).startswith(f"{ran}:"))
    view.setCurrentIndex(view.model().index(row, 0))
    # Below the three images, so that it hides none of them.
    canvas = viewer.window._qt_viewer.canvas.native
    corner = canvas.mapToGlobal(QPoint(40, int(canvas.height() * 0.72)))
    QToolTip.showText(
        corner,
        combo.itemData(row, 3),  # Qt.ToolTipRole
        view,
    )
    settle(app, 0.5)
    screen = app.primaryScreen().grabWindow(0)
    screen.copy(0, 0, *args.size).save(str(args.output))
    print(f"wrote {args.output}: {widget._status.value}")
    combo.hidePopup()
    viewer.close()


if __name__ == "__main__":
    main()
