"""The docs' promises that code can check: the scripting page's snippet works for every
dtype it names, at odd sizes, and the README's images exist (with the note for the release)."""

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).parents[1] / "README.md"
SCRIPTING = Path(__file__).parents[1] / "docs" / "scripting.md"
MARKER = "<!-- scripting snippet: tests/test_widget_readme.py runs this block for each dtype -->"

pytestmark = pytest.mark.usefixtures("one_thread")


def _snippet() -> str:
    text = SCRIPTING.read_text()
    assert MARKER in text, "docs/scripting.md lost its scripting snippet"
    return re.search(r"```python\n(.*?)```", text[text.index(MARKER) :], re.S).group(1)


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((49, 57, 3), np.uint8), ((51, 46), np.uint16), ((48, 53), np.float64)],
)
def test_scripting_snippet_runs_for_every_dtype_it_names(shape, dtype, capsys):
    from napari_mzsr import imresize

    rng = np.random.default_rng(0)
    small = rng.random((shape[0] // 4 + 1, shape[1] // 4 + 1, *shape[2:]))
    unit = np.clip(imresize(small, 4), 0, 1)[: shape[0], : shape[1]]
    peak = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    hr = (unit * peak * 0.9).astype(dtype)
    code = _snippet().replace("hr = ...", "hr = HR", 1)
    namespace = {"HR": hr}
    exec(compile(code, "docs scripting snippet", "exec"), namespace)
    out = capsys.readouterr().out.split()
    assert float(out[-1]) > 20  # the PSNR (dB): the snippet ran to its end
    assert namespace["sr"].shape == namespace["truth"].shape


def test_readme_images_exist_and_carry_the_release_note():
    text = README.read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert "docs/screenshot.png" in images
    for link in images:
        assert (README.parent / link).is_file(), link
        before = text[: text.index(f"]({link})")][-400:]
        assert "must make this link absolute" in before, (
            f"{link}: say that the release makes it absolute (PyPI shows no relative images)"
        )
