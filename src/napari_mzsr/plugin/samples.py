"""Sample images for napari's File > Open Sample menu.

The images are small CC0 crops shipped in ``samples/`` (see ``samples/README.md``). The
"blurred and downscaled" samples are made on the fly from them with a known kernel, so a
user can super-resolve them and compare with the original. torch is imported only when
such a sample is opened, never when napari reads the manifest.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..io.image_files import bundled_sample

LayerData = tuple[np.ndarray, dict[str, Any], str]

CELL_CHANNELS = ("DNA", "PH3", "body")
CELL_COLORMAPS = ("blue", "green", "magenta")

# The paper's g^d_2.0: isotropic Gaussian of variance 2.0, direct x2 subsampling, which
# is what the "direct-x2" theta_M is meta-trained for.
DEGRADE_PRESET = "g^d_2.0"
DEGRADE_FACTOR = 2


def _display_limits(channel: np.ndarray) -> list[float]:
    # Sparse fluorescence fills little of the uint8 range; stretch to the bright cells.
    return [0.0, float(max(np.percentile(channel, 99.8), 1))]


def cells() -> list[LayerData]:
    """Widefield fluorescence of human cells: three uint8 channels (DNA, PH3, cell body)
    of 256x256 pixels, one layer each.

    Returns
    -------
    list of LayerData
        One image layer tuple holding a (3, 256, 256) array split by ``channel_axis``.
    """
    data = bundled_sample("cells_human_3ch.tif")
    kwargs = {
        "channel_axis": 0,
        "name": [f"cells {c}" for c in CELL_CHANNELS],
        "colormap": list(CELL_COLORMAPS),
        "blending": "additive",
        "contrast_limits": [_display_limits(c) for c in data],
    }
    return [(data, kwargs, "image")]


def landsat() -> list[LayerData]:
    """Landsat 7 ETM+ true-colour scene, 256x256 RGB uint8.

    Returns
    -------
    list of LayerData
    """
    return [(bundled_sample("landsat7_rgb.tif"), {"name": "landsat", "rgb": True}, "image")]


def _degraded(image: np.ndarray, source: str) -> tuple[np.ndarray, dict[str, Any]]:
    from ..core.degradation import degrade
    from ..core.kernels import PRESETS

    preset = PRESETS[DEGRADE_PRESET]
    low = degrade(image, preset.kernel(), DEGRADE_FACTOR, preset.degradation)
    info = np.iinfo(image.dtype)
    low = np.clip(np.rint(low), info.min, info.max).astype(image.dtype)
    f = DEGRADE_FACTOR
    # Scaled so that it overlays the original sample. Direct subsampling keeps pixel
    # f * i of the original as pixel i, so no offset; a bicubic downscale would centre
    # each pixel on its f x f block. The widget places results by the same rule, so a
    # x2 result lands on the original's pixel grid.
    layer_kwargs = {
        "name": f"{source} blurred x1/{f} ({DEGRADE_PRESET})",
        "scale": (f, f),
        "translate": (0.0, 0.0) if preset.degradation == "direct" else ((f - 1) / 2,) * 2,
        "metadata": {
            "mzsr_degradation": {
                "source": source,
                "kernel": (
                    f"isotropic Gaussian, variance {preset.l1:g} pixels^2, "
                    f"{preset.size}x{preset.size} ({DEGRADE_PRESET})"
                ),
                "kernel_array": preset.kernel(),
                "factor": f,
                "subsampling": preset.degradation,
            }
        },
    }
    return low, layer_kwargs


def cells_degraded() -> list[LayerData]:
    """The DNA channel of :func:`cells`, blurred with the g^d_2.0 kernel (isotropic
    Gaussian, variance 2.0) and subsampled x2 (direct): 128x128 uint8.

    Returns
    -------
    list of LayerData
    """
    dna = bundled_sample("cells_human_3ch.tif")[0]
    low, kwargs = _degraded(dna, "cells DNA")
    kwargs.update(colormap=CELL_COLORMAPS[0], contrast_limits=_display_limits(dna))
    return [(low, kwargs, "image")]


def landsat_degraded() -> list[LayerData]:
    """:func:`landsat` blurred with the g^d_2.0 kernel and subsampled x2 (direct):
    128x128 RGB uint8.

    Returns
    -------
    list of LayerData
    """
    low, kwargs = _degraded(bundled_sample("landsat7_rgb.tif"), "landsat")
    kwargs["rgb"] = True
    return [(low, kwargs, "image")]
