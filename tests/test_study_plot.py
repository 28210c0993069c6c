"""training/study.plot writes its PNG atomically: a failed write leaves the old file."""

from __future__ import annotations

import pytest

from training import study


def _inputs():
    plan = {"recipe": "training/recipes/direct-x2.toml", "arm": [{"name": "a"}]}
    steps = study.report_steps(plan)
    points = [(m, {steps[0]: 30.0 + m, steps[1]: 31.0 + m}) for m in (1.0, 2.0)]
    return plan, {"a": {"points": points}}


def test_plot_writes_a_png(tmp_path):
    plan, data = _inputs()
    study.plot(plan, data, tmp_path / "s.png", "t")
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["s.png"]


def test_a_failed_plot_leaves_the_old_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def broken(self, fname, **kwargs):
        with open(fname, "wb") as f:
            f.write(b"half a png")
        raise OSError("disk full")

    plan, data = _inputs()
    (tmp_path / "s.png").write_bytes(b"old")
    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        study.plot(plan, data, tmp_path / "s.png", "t")
    assert (tmp_path / "s.png").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["s.png"]
