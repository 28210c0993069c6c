"""A user's image (or stack), checked and given its intensity map once, where a run
starts; every later step reads it through :class:`ImageData` and checks nothing again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..core.checks import check_dtype, check_finite, check_image, is_dask
from ..core.intensity import IntensityMap, intensity_map

Region = tuple[slice, slice]


@dataclass(frozen=True)
class ImageData:
    """Checked image data and the map of its intensities to the network's range.

    Attributes
    ----------
    array : ndarray or dask array, shape (..., H, W) or (..., H, W, 3|4)
        The user's data, never modified. Leading axes are slice axes (stacks).
    rgb : bool
        Whether the last axis holds RGB(A) colours.
    intensity : IntensityMap
        Fitted on the whole data (all slices), so the slices stay comparable.
    """

    array: object
    rgb: bool
    intensity: IntensityMap

    @property
    def slice_shape(self) -> tuple[int, ...]:
        """Shape of the leading (slice) axes; ``()`` for one image."""
        return tuple(self.array.shape[: self.array.ndim - (3 if self.rgb else 2)])

    @property
    def shape(self) -> tuple[int, int]:
        """Height and width of the images."""
        end = self.array.ndim - (1 if self.rgb else 0)
        return int(self.array.shape[end - 2]), int(self.array.shape[end - 1])

    @property
    def has_alpha(self) -> bool:
        return self.rgb and self.array.shape[-1] == 4

    def slice(self, position: Sequence[int]) -> ImageData:
        """The image at ``position`` on the slice axes (a view: nothing is read)."""
        return replace(self, array=self.array[tuple(position)])

    def read(self, region: Region | None = None, *, alpha: bool = False) -> np.ndarray:
        """The colour (or grey) values of ``region`` of a 2-D image, in its own units;
        the alpha channel instead with ``alpha``. A dask image computes only the
        region, and its float values are checked for NaN/inf here."""
        index = (slice(None), slice(None)) if region is None else tuple(region)
        if self.rgb:
            index = (*index, 3 if alpha else slice(0, 3))
        values = self.array[index]
        if is_dask(values):
            values = np.asarray(values.compute())
            check_finite(values)
        return np.asarray(values)

    def unit(self, region: Region | None = None) -> np.ndarray:
        """:meth:`read` mapped to the network's range (float32)."""
        return self.intensity.forward(self.read(region))


def image_data(
    image: object,
    *,
    rgb: bool | None = None,
    normalization: str | IntensityMap = "auto",
    percentiles: tuple[float, float] = (0.1, 99.9),
    stack: bool = False,
    fit_on: object | None = None,
) -> ImageData:
    """Check ``image`` and fit its intensity map: the one place both happen.

    Parameters
    ----------
    image : array-like or dask array
        (H, W) or (H, W, 3|4); with ``stack``, any number of leading slice axes.
    rgb : bool, optional
        Whether the last axis holds colours; default: guessed for a single image
        (last axis of 3 or 4), False for a stack.
    normalization, percentiles
        See :func:`napari_mzsr.core.intensity.intensity_map`; an
        :class:`~napari_mzsr.core.intensity.IntensityMap` is used as it is.
    stack : bool
        Accept leading slice axes.
    fit_on : array-like, optional
        The part of ``image`` to fit the intensity map on (e.g. one slice of a stack,
        so that the rest is never read); default: all of it.

    Raises
    ------
    ValueError
        Bad dtype, shape, NaN/inf values, or an intensity mapping that cannot map the
        data.
    """
    array = image if is_dask(image) or isinstance(image, np.ndarray) else np.asarray(image)
    if stack:
        check_dtype(array)
        is_rgb = bool(rgb)
        split_axes(array.shape, is_rgb)
        check_finite(array)
    else:
        is_rgb = check_image(array, rgb)
    if isinstance(normalization, IntensityMap):
        imap = normalization
    else:
        source = array if fit_on is None else fit_on
        colours = source[..., :3] if is_rgb else source
        imap = intensity_map(colours, normalization, percentiles)
    return ImageData(array, is_rgb, imap)


def split_axes(shape: Sequence[int], rgb: bool = False) -> tuple[tuple[int, ...], int]:
    """Split an array shape into its slice axes and the number of trailing image axes.

    Parameters
    ----------
    shape : sequence of int
        Shape of the data, spatial axes last (then the colour axis for RGB).
    rgb : bool
        Whether the last axis holds RGB(A) colours.

    Returns
    -------
    slice_shape : tuple of int
        Shape of the leading (non-spatial) axes; ``()`` for a single image.
    n_image_axes : int
        2 for grayscale, 3 for RGB(A).

    Raises
    ------
    ValueError
        If the shape has too few axes or an RGB last axis that is not 3 or 4 long.

    Examples
    --------
    >>> split_axes((5, 64, 64))
    ((5,), 2)
    >>> split_axes((2, 64, 64, 3), rgb=True)
    ((2,), 3)
    """
    shape = tuple(int(n) for n in shape)
    n_image = 3 if rgb else 2
    if len(shape) < n_image:
        kind = "an RGB image needs (..., H, W, 3|4)" if rgb else "an image needs (..., H, W)"
        raise ValueError(f"data of shape {shape} has too few axes: {kind}")
    if rgb and shape[-1] not in (3, 4):
        raise ValueError(f"an RGB(A) layer must end with 3 or 4 colours, got shape {shape}")
    return shape[: len(shape) - n_image], n_image
