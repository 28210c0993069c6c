"""The run's log (JSON lines) and a PNG plot of its loss and validation curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


class RunLog:
    """Append-only JSON-lines log; ``log.jsonl`` and ``log.png`` in ``folder``.

    Records carry a ``"step"`` and either ``"loss"`` (training) or ``"val"`` (a dict
    of mean PSNR by number of adaptation steps).
    """

    def __init__(self, folder: str | Path, resume_step: int | None = None) -> None:
        self.path = Path(folder) / "log.jsonl"
        self.plot_path = self.path.with_suffix(".png")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("")
        else:
            # Drop what was logged after the checkpoint: those steps will be redone.
            kept = [r for r in self.records() if r["step"] <= resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")

    def plot(self, title: str) -> None:
        """Training loss (log scale) and validation PSNR against the step."""
        records = self.records()
        train = [r for r in records if "loss" in r]
        val = [r for r in records if "val" in r]
        fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
        if train:
            marker = "o" if len(train) < 50 else None  # a lone point has no line to draw
            steps, losses = [r["step"] for r in train], [r["loss"] for r in train]
            ax_loss.plot(steps, losses, lw=0.8, marker=marker, ms=3)
            ax_loss.set_yscale("log")
        ax_loss.set(xlabel="step", ylabel="L1 loss", title="training loss")
        # Step counts only: a real-degradation validation also records its "gain".
        counts = {k for r in val for k in r["val"] if k.isdigit()}
        for key in sorted(counts, key=int):
            points = [(r["step"], r["val"][key]) for r in val if key in r["val"]]
            ax_val.plot(*zip(*points, strict=True), marker="o", ms=3, label=f"{key} steps")
        if val:
            ax_val.legend()
        ax_val.set(xlabel="step", ylabel="PSNR (dB)", title="validation PSNR after n steps")
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(self.plot_path, dpi=100)
        plt.close(fig)
