"""What each theta_M serves and how well it did in training: for ``napari-mzsr models``
and the widget's model list.

The accuracy figures are the model's own ``training.validation_psnr``: the mean PSNR
(dB; Y channel of RGB, luma for 1-channel models) after 0, 1 and 10 adaptation steps on
central crops of the held-out training images, each degraded with every validation
kernel of the model's recipe. They are not the Set5/Set14 benchmark figures of the
docs (docs/models.md): other images, small crops (96 or 192 pixels, per model; the borders
shaved off weigh more), a mix of kernels averaged together, and taken during training.
"""

from __future__ import annotations

import textwrap
import tomllib
from dataclasses import dataclass

from ..io.model_file import ModelInfo

VALIDATION_NOTE = (
    "PSNR: mean dB after 0 / 1 / 10 adaptation steps on central crops of held-out "
    "training images (how many, of what side: the 'validation' column; Y channel of RGB "
    "models, luma for 1-channel ones), each blurred with each of the model's validation "
    "kernels and subsampled; recorded by training/. These are not the Set5/Set14 figures "
    "of the docs (docs/models.md), which are whole benchmark images with one named kernel each: "
    "different images, small crops and a mix of kernels give other (lower) numbers. "
    "Compare models of the same task with them, not with the paper."
)


@dataclass(frozen=True)
class ModelSummary:
    """One model as a user chooses it.

    Attributes
    ----------
    name : str
    scales : str
        ``"x2"`` or ``"x1.1 to x4"``.
    data : str
        ``"RGB"`` or ``"grey (each channel)"``.
    degradation : str
        ``"direct"`` or ``"bicubic"`` subsampling of its training pairs.
    psnr : dict of str to float
        Validation PSNR (dB) keyed by adaptation steps (``"0"``, ``"1"``, ``"10"``).
    crops, crop, kernels : int, int, str
        What the validation PSNR was measured on (see :data:`VALIDATION_NOTE`).
    """

    name: str
    scales: str
    data: str
    degradation: str
    psnr: dict[str, float]
    crops: int
    crop: int
    kernels: str

    @property
    def accuracy(self) -> str:
        """``"27.06 dB"``: validation PSNR after the most steps recorded, or ``"n/a"``."""
        if not self.psnr:
            return "n/a"
        steps = max(self.psnr, key=int)
        return f"{self.psnr[steps]:.2f} dB after {steps} steps"

    @property
    def validation(self) -> str:
        """``"4 crops of 192 px"``: what the validation PSNR was measured on."""
        return f"{self.crops} crops of {self.crop} px" if self.crops else "n/a"

    def label(self) -> str:
        """One line for a model list: ``"direct-x2-gray: x2, grey, direct, 27.06 dB"``."""
        value = f"{self.psnr[max(self.psnr, key=int)]:.2f} dB" if self.psnr else "no PSNR"
        return f"{self.name}: {self.scales}, {self.data}, {self.degradation}, {value}"

    def tooltip(self) -> str:
        """Several lines: what the model serves and what its accuracy means."""
        psnr = " / ".join(f"{self.psnr[k]:.2f}" for k in sorted(self.psnr, key=int)) or "n/a"
        lines = [
            f"{self.name}: {self.scales}, {self.data}, {self.degradation} subsampling",
            f"validation PSNR {psnr} dB after 0 / 1 / 10 steps, on {self.validation}",
            f"validation kernels: {self.kernels}",
            "",
            VALIDATION_NOTE,
        ]
        return "\n".join(textwrap.fill(line, 72) if line else line for line in lines)


def summarize(info: ModelInfo) -> ModelSummary:
    """The :class:`ModelSummary` of a model's metadata."""
    training = info.training
    # Step counts only: a real-degradation validation also records its "gain".
    psnr = {
        str(k): float(v) for k, v in training.get("validation_psnr", {}).items() if str(k).isdigit()
    }
    try:
        recipe = tomllib.loads(training.get("recipe_toml", ""))
    except tomllib.TOMLDecodeError:
        recipe = {}
    validation = recipe.get("validation", {})
    kernels = ", ".join(_kernel_text(k) for k in validation.get("kernels", [])) or "unknown"
    if validation.get("set") == "real":
        # training/validate_real.py: drawn real degradations, the package's defaults.
        kernels = (
            "real degradations (one drawn chain per crop and factor: blur, subsampling, "
            "noise, JPEG), run with the defaults; PSNR on RGB"
        )
    images = training.get("val_images")
    crops = len(images) if isinstance(images, list) else int(images or 0)
    crop = int(recipe.get("data", {}).get("val_crop", 0))
    return ModelSummary(
        name=info.name,
        scales=info.describe_scales(),
        data="RGB" if info.channels == 3 else "grey (each channel)",
        degradation=info.degradation,
        psnr=psnr,
        crops=crops,
        crop=crop,
        kernels=kernels,
    )


def _kernel_text(kernel: list[float]) -> str:
    l1, l2, theta = kernel
    if l1 == l2:
        return f"isotropic variance {l1:g}"
    return f"anisotropic {l1:g}/{l2:g} at {theta:g} rad"


def models_table(summaries: list[ModelSummary]) -> str:
    """A plain-text table of the models, with units, and what its numbers are."""
    header = (
        "model",
        "scales",
        "data",
        "subsampling",
        "PSNR 0 steps",
        "1 step",
        "10 steps",
        "validation",
    )
    rows = [header]
    for s in summaries:
        values = [f"{s.psnr[k]:.2f} dB" if k in s.psnr else "n/a" for k in ("0", "1", "10")]
        rows.append((s.name, s.scales, s.data, s.degradation, *values, s.validation))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += ["", "Validation kernels:"]
    lines += [f"  {s.name}: {s.kernels}" for s in summaries]
    lines += ["", *textwrap.wrap(VALIDATION_NOTE, 100)]
    return "\n".join(lines)
