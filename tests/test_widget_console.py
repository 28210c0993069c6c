"""The scripting page's threaded console snippet, run as a console user runs it.

Needs napari, pytest-qt and an X display; run headless with ``xvfb-run -a pytest``.
"""

import re
from pathlib import Path

import numpy as np
import pytest
from gui_support import TIMEOUT_MS, fresh_choices, require_gui

require_gui()

pytestmark = pytest.mark.gui
__all__ = ["fresh_choices"]

SCRIPTING = Path(__file__).parents[1] / "docs" / "scripting.md"
MARKER = "<!-- console snippet: tests/test_widget_console.py runs this block -->"


def _snippet() -> str:
    text = SCRIPTING.read_text()
    assert MARKER in text, "docs/scripting.md lost its console snippet"
    block = re.search(r"```python\n(.*?)```", text[text.index(MARKER) :], re.S)
    return block.group(1)


def test_readme_console_snippet_runs_in_a_thread_with_progress(make_napari_viewer, qtbot):
    from napari.utils import progress

    from napari_mzsr import degrade, gaussian_kernel, imresize

    rng = np.random.default_rng(0)
    hr = np.clip(imresize(rng.random((16, 16)), 4), 0, 1)
    lr = np.rint(255 * np.clip(degrade(hr, gaussian_kernel(2.0), 2), 0, 1)).astype(np.uint8)
    viewer = make_napari_viewer()
    layer = viewer.add_image(lr, name="cells", scale=(0.5, 0.5), translate=(3.0, 1.0))
    viewer.layers.selection.active = layer
    bars = set()
    progress._all_instances.events.changed.connect(lambda e: bars.update(e.added))
    namespace = {"viewer": viewer}
    exec(compile(_snippet(), "docs console snippet", "exec"), namespace)
    worker = namespace["worker"]
    steps = []
    worker.yielded.connect(steps.append)
    qtbot.waitUntil(lambda: len(viewer.layers) == 2, timeout=TIMEOUT_MS)

    out = viewer.layers[-1]
    assert out.name == "cells x2" and out.data.shape == (64, 64)
    # The shipped grey model is direct: output pixel 2i lies on input pixel i.
    np.testing.assert_allclose(out.scale, [0.25, 0.25])
    np.testing.assert_allclose(out.translate, [3.0, 1.0])
    assert len(steps) == 10 and steps[-1].step + 1 == steps[-1].steps == 10
    ((bar,),) = [bars]
    assert bar.total == 10 and bar.desc.startswith("MZSR")
