"""Make docs/screenshot.png: the MZSR widget docked next to a result on the cells sample.

Opens napari, loads the "blurred and downscaled" DNA channel of the fluorescence sample
and the original, super-resolves the former with the widget (exactly as a user would:
options set, Run clicked) and saves a screenshot of the whole window with the three
layers side by side.

Run it headless under Xvfb::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshot.py MODEL.pt
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

PLUGIN = "napari-mzsr"
WIDGET = "MZSR super-resolution"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="theta_M file (.pt) or name of a shipped model")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("screenshot.png"))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, nargs=2, default=(1500, 900), metavar=("W", "H"))
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the run")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    import napari
    from napari._qt.dialogs.qt_notification import NapariQtNotification
    from qtpy.QtWidgets import QApplication

    from napari_mzsr.io.model_file import shipped_models
    from napari_mzsr.plugin.widget import FROM_FILE

    viewer = napari.Viewer(title="napari-mzsr")
    viewer.window.resize(*args.size)
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
    if args.model in shipped_models():
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
    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()
    for _ in range(20):  # let the canvas and the dock widget repaint
        app.processEvents()
        time.sleep(0.05)
    viewer.screenshot(str(args.output), canvas_only=False)
    print(f"wrote {args.output}")
    viewer.close()


if __name__ == "__main__":
    main()
