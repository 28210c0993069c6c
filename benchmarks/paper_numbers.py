"""Published numbers of the MZSR paper (REFERENCE section 8), keyed like our results.

``PAPER[(setting, set_name)][method]`` is a :class:`PaperCell`; cells the paper does not
report are absent. Setting names are those of :data:`benchmarks.lr_inputs.SETTINGS`,
method names those of :data:`benchmarks.methods.METHODS`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperCell:
    """One published value: PSNR (dB) and SSIM where the paper gives it."""

    psnr: float
    ssim: float | None = None
    note: str = ""


_TABLE2 = """
g^d_0.2 Set5     30.24/.8976 34.29/.9373 33.14/.9277 33.74/.9301
g^d_0.2 BSD100   27.45/.7992 29.35/.8465 28.74/.8389 29.03/.8415
g^d_0.2 Urban100 24.70/.7958 28.13/.8788 26.24/.8394 26.60/.8439
g^d_2.0 Set5     28.73/.8449 34.90/.9397 35.20/.9398 36.05/.9439
g^d_2.0 BSD100   26.51/.7157 30.57/.8712 30.58/.8627 31.09/.8739
g^d_2.0 Urban100 23.70/.7109 27.86/.8582 28.23/.8657 29.19/.8838
g^d_ani Set5     28.15/.8265 33.96/.9307 34.05/.9271 34.78/.9323
g^d_ani BSD100   26.00/.6891 29.72/.8479 28.82/.8013 29.54/.8297
g^d_ani Urban100 23.13/.6796 27.03/.8335 26.51/.8126 27.34/.8369
g^b_1.3 Set5     30.54/.8773 35.24/.9434 35.18/.9430 36.64/.9498
g^b_1.3 BSD100   27.49/.7546 30.74/.8743 29.02/.8544 31.25/.8818
g^b_1.3 Urban100 24.74/.7527 28.30/.8693 28.27/.8771 29.83/.8965
"""

# PSNR only in the paper for Table 1 and the x4 row.
_PSNR_ONLY = """
bicubic    Set5     33.64 36.93 36.77 37.25
bicubic    BSD100   29.55 31.43 31.33 31.64
bicubic    Urban100 26.87 29.34 30.01 30.41
g^d_2.0_x4 Set5     24.74 27.39 30.20 30.50
"""

_COLUMNS = ("Bicubic", "ZSSR", "MZSR(1)", "MZSR(10)")


def _parse() -> dict[tuple[str, str], dict[str, PaperCell]]:
    table: dict[tuple[str, str], dict[str, PaperCell]] = {}
    for line in _TABLE2.strip().splitlines():
        setting, set_name, *cells = line.split()
        table[setting, set_name] = {
            method: PaperCell(float(p), float(s))
            for method, (p, s) in zip(_COLUMNS, (c.split("/") for c in cells), strict=True)
        }
    for line in _PSNR_ONLY.strip().splitlines():
        setting, set_name, *cells = line.split()
        table[setting.replace("_x4", " x4"), set_name] = {
            method: PaperCell(float(p)) for method, p in zip(_COLUMNS, cells, strict=True)
        }
    # Read off the paper's Figure 3 (theta_M used without adaptation), hence approximate.
    table["g^d_2.0", "Set5"]["MZSR(0)"] = PaperCell(15.7, None, "approx., Figure 3")
    return table


PAPER: dict[tuple[str, str], dict[str, PaperCell]] = _parse()

# Table 4 of the paper: seconds per image on an NVIDIA Titan XP.
PAPER_SECONDS: dict[str, float] = {"ZSSR": 142.72, "MZSR(1)": 0.13, "MZSR(10)": 0.36}
PAPER_TIME_DEVICE = "NVIDIA Titan XP"


def paper_cell(setting: str, set_name: str, method: str) -> PaperCell | None:
    """The paper's value for one cell, or None where the paper reports none."""
    return PAPER.get((setting, set_name), {}).get(method)
