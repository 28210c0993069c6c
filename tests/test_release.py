"""Release readiness the suite can check quickly: the sdist and the wheel build, pass
``twine check``, and carry the weights, the manifest, the samples and the project URLs.
(``scripts/release_check.sh`` also installs the wheel in a fresh venv and runs the demo.)"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    pytest.importorskip("build")
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_sdist_and_wheel_pass_twine_check(dist):
    pytest.importorskip("twine")
    files = sorted(dist.iterdir())
    assert sorted(f.suffix for f in files) == [".gz", ".whl"]
    done = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, files)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_wheel_carries_weights_manifest_samples_and_urls(dist):
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = Parser().parsestr(
            archive.read(next(n for n in names if n.endswith("METADATA"))).decode()
        )
    shipped = {p.name for p in (ROOT / "src" / "napari_mzsr" / "weights").glob("*.pt")}
    assert {f"napari_mzsr/weights/{n}" for n in shipped} <= names
    assert "napari_mzsr/plugin/napari.yaml" in names
    assert any(n.startswith("napari_mzsr/samples/") and n.endswith(".tif") for n in names)
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL"))
    assert {"Source Code", "Documentation", "Bug Tracker", "User Support"} <= set(urls)
    assert metadata["License-Expression"] == "MIT"
    assert "napari-mzsr" in metadata["Name"] and "Framework :: napari" in metadata.get_all(
        "Classifier"
    )
