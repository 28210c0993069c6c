"""adapt_patch="auto": patches of a fixed size for every image larger than the patches
cost, so that a step costs the same whatever the image size."""

from __future__ import annotations

import numpy as np
import pytest

from napari_mzsr.pipeline import options
from napari_mzsr.pipeline.options import AdaptOptions

KERNEL = np.full((21, 21), 1 / 441)


def _auto(**kw) -> AdaptOptions:
    return AdaptOptions(kernel=kw.pop("kernel", KERNEL), device="cpu", **kw)


def test_whole_image_up_to_the_cost_of_the_patches():
    limit = options.AUTO_WHOLE_IMAGE_PIXELS
    patch_pixels = options.AUTO_PATCHES * options.AUTO_PATCH**2
    # A patch step also re-measures the loss: the whole image is worth it a little beyond.
    assert patch_pixels < limit < 1.5 * patch_pixels
    side = int(limit**0.5)
    assert _auto().patch_size((side, side)) is None
    assert _auto().patch_size((limit, 1)) is None
    assert _auto().patch_size((side + 1, side + 1)) == (options.AUTO_PATCH,) * 2


@pytest.mark.parametrize("side", [256, 512, 1024, 4096])
def test_patch_pixels_per_step_do_not_grow_with_the_image(side):
    patch = _auto().patch_size((side, side))
    assert patch == (options.AUTO_PATCH, options.AUTO_PATCH)
    assert _auto().adapt_patches == options.AUTO_PATCHES


def test_auto_patches_are_clipped_to_thin_images_and_cover_the_kernel():
    assert _auto().patch_size((40, 4000)) == (40, options.AUTO_PATCH)
    big_kernel = np.full((101, 101), 1 / 101**2)
    assert _auto(kernel=big_kernel).patch_size((1000, 1000)) == (101, 101)


def test_explicit_choices_win():
    assert _auto(adapt_patch=None).patch_size((4096, 4096)) is None
    assert _auto(adapt_patch=64).patch_size((30, 30)) == (30, 30)
    assert _auto(adapt_patch=64, adapt_patches=3).adapt_patches == 3
