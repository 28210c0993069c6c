"""What each control of the dock widget does: the tooltips, and the Help window's text
(every control, the calibration section and the shipped models)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..cli.model_table import VALIDATION_NOTE, ModelSummary
from ..core.kernels import PRESETS
from .geometry import PREVIEW_MAX_SIDE

# Where the docs are published (pyproject's Documentation URL).
DOCS_URL = "https://napari-mzsr.github.io/napari-mzsr/"

TOOLTIPS = {
    "image": "the image layer to super-resolve (2-D, RGB, or a stack: the last two axes "
    "are Y and X, every other axis is kept)",
    "scope": "run this layer only, all its channels (the image layers of the same shape "
    "and place, e.g. from an image opened with channel_axis), or every selected layer, "
    "in one go",
    "channel_mode": "several layers: adapt a fresh network on each, or adapt once on the "
    "chosen layer and apply that network to every layer (faster; each keeps its own "
    "intensity mapping)",
    "model": "the meta-learned start (theta_M). 'auto' picks the shipped model for the "
    "scale, the image's channels and the kernel (bicubic presets: a bicubic model). "
    "Each entry: scales, data, subsampling, validation PSNR after 10 steps (see Help)",
    "model_file": "a theta_M file (.pt) made by training/ or napari_mzsr.save_model",
    "isotropic": "Z stacks whose Z step is coarser than the pixel size (the layer's "
    "scale): super-resolve Z alone, learnt from the stack's own XY slices, to a result "
    "with isotropic voxels that overlays the input. Scale, kernel, stack and preview "
    "are not used",
    "axial_sigma": "isotropic Z: the axial blur beyond the lateral one, a Gaussian sigma "
    "along Z in lateral pixels ('estimate': fitted to the stack's side planes)",
    "scale": "super-resolution factor (1.1 to 8); with 'different factor for X', the "
    "factor along Y. The model must serve it (see the model line)",
    "scale_x_on": "use another factor along X than along Y (e.g. 2 x 3)",
    "scale_x": "super-resolution factor along X",
    "kernel_kind": "the blur of your acquisition, as the network must undo it. 'auto' (the "
    "default) assumes no blur beyond a downscale's own (the 'photo' preset), matches the "
    "image's noise and falls back to Lanczos interpolation where the network does not "
    "beat bicubic on the "
    "image's own son; or a Gaussian (variance in pixels^2), a preset ('photo', "
    "'microscope' or the MZSR paper's), a file (.mat, .npy, .tif), another image layer, "
    "or estimated from the image",
    "variance": "variance (sigma^2) of the Gaussian blur, in pixels^2",
    "l1": "variance along the first principal axis, in pixels^2",
    "l2": "variance along the second principal axis, in pixels^2",
    "theta": "angle of the first principal axis, in radians",
    "preset": "photo: "
    + PRESETS["photo"].description
    + "; microscope: "
    + PRESETS["microscope"].description
    + "; the MZSR paper's kernels: g^d_* are for "
    "direct subsampling, g^b_1.3 for bicubic (photo and g^b_1.3 select a bicubic model "
    "under 'auto')",
    "kernel_file": "a kernel file: .mat (variable 'kernel'), .npy or .tif, square and odd",
    "kernel_layer": "an image layer holding the kernel (2-D, square, odd size)",
    "steps": "adaptation steps on the image (the paper uses 1 or 10); more steps fit the "
    "image better and take longer; 0 applies theta_M as it is",
    "device": "where the network runs: 'auto' picks CUDA, then Apple MPS, then the CPU",
    "stack_mode": "stacks: adapt once on the shown slice and apply to every slice (fast), "
    "or adapt on each slice (slower, each slice fitted)",
    "current_only": "stacks: super-resolve only the slice shown in the viewer",
    "replace": "remove this layer's previous result when the new one is added",
    "float_output": "write the result as float32 instead of the input's dtype",
    "show_advanced": "show the advanced options",
    "lr": "learning rate of every adaptation step (empty: the model's schedule)",
    "normalization": "how intensities map to the network's 0..1: 'auto' takes uint8 and "
    "[0, 1] float data as they are and maps everything else by its 0.1/99.9 percentiles "
    "(the status says the mapping used)",
    "seed": "seed of the random patch positions and torch's generator",
    "ensemble": "combine the flips/rotations that leave the kernel unchanged (8 for an "
    "isotropic kernel); one inference each",
    "back_projection": "iterations of back-projection with the kernel after inference "
    "(0: off; auto: 1 under the photo assumption, the default kernel, else 0); it trusts "
    "the kernel, so an estimated one that is too large costs detail",
    "tile": "inference tile side in input pixels (0: from the device's free memory); "
    "smaller tiles need less memory, results are the same",
    "threads": "CPU threads (0: auto: the adaptation uses the cores other programs leave "
    "free, measured before each run, since on a busy 2-core laptop one thread adapts "
    "faster than two; inference uses all cores); the layer's metadata records the counts",
    "reset": "forget the choices remembered from earlier sessions and go back to the "
    "defaults (those of File > Preferences > Plugins > napari-mzsr where set); added "
    "models stay in the list",
    "run": "super-resolve with these settings; the result is added as a new layer",
    "preview": f"one adaptation step on the region shown in the viewer (at most "
    f"{PREVIEW_MAX_SIDE} x {PREVIEW_MAX_SIDE} pixels of the current slice), in about a "
    "second; shown as a temporary layer that the full run replaces",
    "cancel": "stop after the current step; nothing is added",
    "export": "write the model the last run adapted (to its one image or adaptation slice) "
    "as a BioImage.IO package (.zip): it runs in other tools without napari-mzsr, with "
    "test tensors and a cover from your image; available after a run without preview",
}


def label_of(control: Any) -> str:
    """What a control is called on screen: a button's or check box's text, else its label."""
    return getattr(control, "text", None) or control.label


def help_html(
    controls: Iterable[tuple[str, str]],
    calibration: Iterable[tuple[str, str]],
    models: Iterable[ModelSummary],
) -> str:
    """The Help window: ``(label, what it does)`` of the controls and of the calibration
    section, then the shipped models and what their accuracy figures mean."""

    def table(rows: Iterable[tuple[str, str]]) -> str:
        cells = "".join(f"<tr><td><b>{label}</b></td><td>{text}</td></tr>" for label, text in rows)
        return f"<table cellpadding='3'>{cells}</table>"

    shipped = [
        (
            s.name,
            f"{s.scales}, {s.data}, {s.degradation} subsampling; validation PSNR "
            f"{' / '.join(f'{s.psnr[k]:.2f}' for k in sorted(s.psnr, key=int))} dB "
            f"after 0 / 1 / 10 steps on {s.validation}",
        )
        for s in models
    ]
    return (
        "<h3>MZSR super-resolution</h3><p>Adapts a meta-learned network to the image "
        "itself in a few steps, then super-resolves it. With the kernel on 'auto' it "
        "assumes an image of unknown origin and checks itself against bicubic "
        "interpolation; give the blur of your acquisition where you know it.</p>"
        f"{table(controls)}<h4>Calibrate from pairs</h4>{table(calibration)}"
        f"<h4>Shipped models</h4>{table(shipped)}<p>{VALIDATION_NOTE}</p>{_readme_link()}"
    )


def _readme_link() -> str:
    """A link to the widget's page of the docs in the source tree the package runs from,
    if there is one, else to the online docs."""
    page = Path(__file__).resolve().parents[3] / "docs" / "napari.md"
    if page.is_file():
        return f'<p>More: <a href="{page.as_uri()}">docs/napari.md</a> of napari-mzsr.</p>'
    return f'<p>More: <a href="{DOCS_URL}">the napari-mzsr documentation</a>.</p>'
