"""benchmarks/pareto.py: configurations averaged over images, the fronts, the comparison
at ZSSR's budgets (issue 35)."""

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
