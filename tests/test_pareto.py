"""benchmarks/pareto.py: configurations averaged over images, the fronts, the comparison
at ZSSR's budgets (issue 35)."""

import pytest

from benchmarks import pareto


def _records():
    def mzsr(steps, psnr, seconds, ensemble=None):
        point = {"steps": steps, "psnr": psnr, "seconds": seconds}
        if ensemble:
            point["ensemble"] = ensemble
        return point

    def zssr(iterations, psnr, seconds, refined):
        return {"iterations": iterations, "psnr": psnr, "seconds": seconds, "refinements": refined}

    image = {
        "mzsr auto": {"points": [mzsr(0, 30, 1), mzsr(10, 34, 3), mzsr(10, 34.5, 9, "mean")]},
        "zssr": {"points": [zssr(10, 31, 4, False), zssr(10, 33, 10, True),
                            zssr(300, 35, 60, True)]},
    }  # fmt: skip
    return [{"image": "a", "curves": image}, {"image": "b", "curves": image}]


def test_configurations_are_means_over_the_images_and_named():
    configs = {c["config"]: c for c in pareto.configurations(_records())}
    assert set(configs) == {
        "mzsr auto once 0", "mzsr auto once 10", "mzsr auto ensemble mean 10",
        "zssr plain 10", "zssr refined 10", "zssr refined 300",
    }  # fmt: skip
    assert configs["zssr refined 300"] == {
        "method": "ZSSR", "config": "zssr refined 300", "psnr": 35, "seconds": 60
    }  # fmt: skip


def test_the_comparison_is_made_at_each_zssr_front_budget():
    rows = pareto.compare(pareto.configurations(_records()))
    assert [r["budget_s"] for r in rows] == [4, 10, 60]
    assert [r["mzsr_best"] for r in rows] == [34, 34.5, 34.5]
    assert [round(r["margin"], 2) for r in rows] == [3.0, 1.5, -0.5]
    # A budget no MZSR configuration fits in says so.
    configs = pareto.configurations(_records())
    late = [dict(c, seconds=c["seconds"] + 100) if c["method"] == "MZSR" else c for c in configs]
    assert pareto.compare(late)[0]["mzsr_best"] is None


def test_back_projection_configurations_are_named_apart():
    records = _records()
    bp = {"steps": 10, "psnr": 35.5, "seconds": 5, "ensemble": "mean", "back_projection": 10}
    for record in records:
        record["curves"]["mzsr auto"]["points"].append(bp)
    configs = {c["config"]: c for c in pareto.configurations(records)}
    assert configs["mzsr auto ensemble mean BP10 10"]["psnr"] == 35.5
    assert configs["mzsr auto ensemble mean 10"]["psnr"] == 34.5


def test_a_grid_setting_runs_end_to_end_with_back_projection(tmp_path):
    """One tiny image at an arbitrary-scale setting: MZSR read with and without
    back-projection (which moves the result), ZSSR read, the report written."""
    import json

    import numpy as np
    from PIL import Image

    folder = tmp_path / "hr"
    folder.mkdir()
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 255, (12, 12, 3)), np.ones((4, 4, 1))).astype(np.uint8)
    Image.fromarray(smooth).save(folder / "tiny.png")
    with pytest.raises(SystemExit):
        pareto.main(["--set5", str(folder), "--settings", "--grid", "blur x7"])
    md = pareto.main([
        "--set5", str(folder), "--settings", "--grid", "blur x1.5", "--steps", "0", "1",
        "--zssr-iterations", "2", "--back-projection", "0", "3", "--out", str(tmp_path),
        "--name", "p",
    ])  # fmt: skip
    assert "## blur x1.5" in md.read_text()
    result = json.loads((tmp_path / "p.json").read_text())
    points = result["records"]["blur x1.5"][0]["curves"]["mzsr auto"]["points"]
    plain = [p for p in points if "back_projection" not in p and "ensemble" not in p]
    projected = [p for p in points if p.get("back_projection") == 3 and "ensemble" not in p]
    assert [p["steps"] for p in plain] == [p["steps"] for p in projected] == [0, 1]
    assert all(a["psnr"] != b["psnr"] for a, b in zip(plain, projected, strict=True))
