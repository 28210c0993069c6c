"""Reading and writing image files for batch runs, with the pixel size kept right.

TIFF (plain, ImageJ hyperstacks, OME-TIFF, GeoTIFF) through tifffile and PNG through
Pillow. :func:`read_image` returns the pixels with their axes and the metadata that
describe the pixel size; :func:`write_image` writes a super-resolved result with that
metadata, pixel sizes divided by the scale, to a temporary file that is renamed into
place only once complete.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_path

TIFF_SUFFIXES = (".tif", ".tiff")
PNG_SUFFIXES = (".png",)
SUFFIXES = TIFF_SUFFIXES + PNG_SUFFIXES

# GeoTIFF tags carried to the output: pixel scale, tiepoint, transformation, geokeys,
# their parameters, GDAL metadata and nodata.
_GEO_PIXEL_SCALE, _GEO_TIEPOINT, _GEO_TRANSFORM, _GEO_KEYS = 33550, 33922, 34264, 34735
_GEO_TAGS = (_GEO_PIXEL_SCALE, _GEO_TIEPOINT, _GEO_TRANSFORM, _GEO_KEYS, 34736, 34737, 42112, 42113)
_RASTER_TYPE_KEY, _PIXEL_IS_POINT = 1025, 2


@dataclass
class ImageMeta:
    """What a writer needs to reproduce a file's layout and calibration.

    Attributes
    ----------
    kind : {"tiff", "imagej", "ome", "png"}
        File flavour; GeoTIFF is a ``"tiff"`` with ``geotiff`` tags.
    axes : str
        tifffile axis letters of the pixel array, e.g. ``"YX"``, ``"ZCYX"``, ``"YXS"``.
    resolution : (float, float) or None
        TIFF X/Y resolution in pixels per ``resolution_unit`` (PNG: dots per inch).
    resolution_unit : int or None
        TIFF ResolutionUnit (1 none, 2 inch, 3 centimetre).
    imagej : dict
        ImageJ metadata to write back (unit, spacing, finterval, ...).
    ome : dict
        OME Pixels attributes to write back (PhysicalSize*, units).
    geotiff : list of tuples
        GeoTIFF tags as tifffile ``extratags`` ``(code, dtype, count, value, True)``.
    """

    kind: str
    axes: str
    resolution: tuple[float, float] | None = None
    resolution_unit: int | None = None
    imagej: dict[str, Any] = field(default_factory=dict)
    ome: dict[str, Any] = field(default_factory=dict)
    geotiff: list[tuple] = field(default_factory=list)

    @property
    def rgb(self) -> bool:
        return self.axes.endswith("S")


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, ImageMeta]:
    """Read a TIFF or PNG file: pixels and :class:`ImageMeta`.

    Raises
    ------
    ValueError
        Unsupported suffix, unreadable or corrupt file, or an axis layout that is not
        ``...YX`` or ``...YXS`` (3 or 4 samples).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"{path.name}: unsupported file type {suffix!r} (use TIFF or PNG)")
    try:
        data, meta = _read_tiff(path) if suffix in TIFF_SUFFIXES else _read_png(path)
    except (OSError, ValueError, SyntaxError, KeyError, IndexError) as exc:
        raise ValueError(f"{path.name}: cannot read image ({exc})") from exc
    if not (meta.axes.endswith("YX") or meta.axes.endswith("YXS")):
        raise ValueError(f"{path.name}: axes {meta.axes!r} do not end with YX or YXS")
    if meta.rgb and data.shape[-1] not in (3, 4):
        raise ValueError(f"{path.name}: {data.shape[-1]} samples per pixel are not supported")
    return data, meta


def probe_image(path: str | os.PathLike) -> None:
    """Check that ``path`` is an image file :func:`read_image` can read, from its
    header alone (no pixels are read).

    Raises
    ------
    ValueError
        Unsupported suffix, or a file that is not a readable image of that type.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"{path.name}: unsupported file type {suffix!r} (use TIFF or PNG)")
    try:
        if suffix in TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                axes = tif.series[0].axes
        else:
            from PIL import Image

            with Image.open(path) as im:
                im.verify()
            axes = "YX"
    except (OSError, ValueError, SyntaxError, KeyError, IndexError) as exc:
        raise ValueError(f"{path.name}: cannot read image ({exc})") from exc
    except Exception as exc:  # a reader's own error type (PIL, tifffile) for a corrupt file
        raise ValueError(f"{path.name}: cannot read image ({type(exc).__name__}: {exc})") from exc
    if not (axes.endswith("YX") or axes.endswith("YXS")):
        raise ValueError(f"{path.name}: axes {axes!r} do not end with YX or YXS")


def _read_tiff(path: Path) -> tuple[np.ndarray, ImageMeta]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        data = series.asarray()
        axes = series.axes
        page = tif.pages[0]
        resolution = tuple(float(v) for v in page.resolution) if 282 in page.tags else None
        unit = int(page.resolutionunit) if 296 in page.tags else None
        if tif.is_ome:
            meta = ImageMeta("ome", axes, resolution, unit, ome=_ome_pixels(tif.ome_metadata))
        elif tif.is_imagej:
            keep = ("unit", "spacing", "finterval", "fps", "yorigin", "xorigin", "mode")
            ij = {k: v for k, v in (tif.imagej_metadata or {}).items() if k in keep}
            meta = ImageMeta("imagej", axes, resolution, unit, imagej=ij)
        else:
            geo = [
                (code, page.tags[code].dtype, page.tags[code].count, page.tags[code].value, True)
                for code in _GEO_TAGS
                if code in page.tags
            ]
            meta = ImageMeta("tiff", axes, resolution, unit, geotiff=geo)
    return data, meta


def _ome_pixels(xml: str | None) -> dict[str, Any]:
    if not xml:
        return {}
    root = ET.fromstring(xml)
    pixels = next((el for el in root.iter() if el.tag.endswith("}Pixels")), None)
    if pixels is None:
        return {}
    keys = ("PhysicalSizeX", "PhysicalSizeY", "PhysicalSizeZ", "TimeIncrement")
    out: dict[str, Any] = {}
    for key in keys:
        if key in pixels.attrib:
            out[key] = float(pixels.attrib[key])
        if key + "Unit" in pixels.attrib:
            out[key + "Unit"] = pixels.attrib[key + "Unit"]
    return out


def _read_png(path: Path) -> tuple[np.ndarray, ImageMeta]:
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        dpi = im.info.get("dpi")
        if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("RGBA" if "transparency" in im.info or im.mode == "PA" else "RGB")
        if im.mode == "LA":
            im = im.convert("RGBA")
        data = np.asarray(im)
    if data.dtype == np.int32:  # Pillow's "I" mode for 16-bit greyscale PNG
        data = data.astype(np.uint16)
    axes = "YXS" if data.ndim == 3 else "YX"
    resolution = (float(dpi[0]), float(dpi[1])) if dpi else None
    return data, ImageMeta("png", axes, resolution)


def bundled_sample(name: str) -> np.ndarray:
    """The pixels of a sample image shipped in the package's ``samples/`` folder."""
    from importlib import resources

    import tifffile

    with resources.as_file(resources.files("napari_mzsr") / "samples" / name) as path:
        return tifffile.imread(path)


def first_centre(scale: float, degradation: str) -> float:
    """Position of the result's first pixel centre, in input pixels from the input's
    first pixel centre: ``-(s - 1) / (2 s)`` for bicubic models (each input pixel is the
    centre of its ``s x s`` block), 0 for direct ones (input pixel ``i`` is output pixel
    ``s * i``); see :mod:`napari_mzsr.plugin.geometry`. Direct subsampling decimates
    integer factors only; other factors are resized, centred, as bicubic ones
    (:func:`napari_mzsr.core.degradation.decimated_axes`)."""
    if degradation not in ("bicubic", "direct"):
        raise ValueError(f"degradation must be 'bicubic' or 'direct', got {degradation!r}")
    decimated = degradation == "direct" and float(scale).is_integer()
    return 0.0 if decimated else -(scale - 1) / (2 * scale)


def scaled_meta(
    meta: ImageMeta, scale: float | tuple[float, float], degradation: str = "bicubic"
) -> ImageMeta:
    """Metadata of the super-resolved image: pixels ``sy`` and ``sx`` times smaller
    along Y and X, placed as the model's ``degradation`` implies (origins and GeoTIFF
    tiepoints). ``scale`` is one factor or ``(sy, sx)``."""
    sy, sx = (scale, scale) if isinstance(scale, int | float) else scale
    cy, cx = first_centre(sy, degradation), first_centre(sx, degradation)
    resolution = None
    if meta.resolution is not None:  # TIFF order: X, then Y
        resolution = (meta.resolution[0] * sx, meta.resolution[1] * sy)
    ome = dict(meta.ome)
    for key, factor in (("PhysicalSizeX", sx), ("PhysicalSizeY", sy)):
        if key in ome:
            ome[key] = ome[key] / factor
    imagej = dict(meta.imagej)
    for key, centre, factor in (("xorigin", cx, sx), ("yorigin", cy, sy)):
        if key in imagej:  # an origin in pixel units: the same point in output pixels
            imagej[key] = (imagej[key] - centre) * factor
    return replace(
        meta,
        resolution=resolution,
        ome=ome,
        imagej=imagej,
        geotiff=_scaled_geotiff(meta.geotiff, (sy, sx), (cy, cx)),
    )


def _scaled_geotiff(
    tags: list[tuple], scale: tuple[float, float], centre: tuple[float, float]
) -> list[tuple]:
    values = {t[0]: t[3] for t in tags}
    keys = values.get(_GEO_KEYS, ())
    pixel_is_point = any(
        keys[i] == _RASTER_TYPE_KEY and keys[i + 3] == _PIXEL_IS_POINT
        for i in range(4, len(keys) - 3, 4)
    )
    # The tiepoint ties raster (0, 0): the first pixel's centre (PixelIsPoint) or its
    # outer corner (PixelIsArea); how far that point moves along rows and columns, in
    # input pixels:
    shift_y, shift_x = (
        c if pixel_is_point else c - 0.5 / s + 0.5 for c, s in zip(centre, scale, strict=True)
    )
    fy, fx = scale
    out = []
    for code, dtype, count, value, writeonce in tags:
        if code == _GEO_PIXEL_SCALE:
            gx, gy, *rest = value
            value = (gx / fx, gy / fy, *rest)
        elif code == _GEO_TRANSFORM:
            m = list(value)
            m[3] += shift_x * m[0] + shift_y * m[1]
            m[7] += shift_x * m[4] + shift_y * m[5]
            for i in (0, 4, 8):  # column coefficients
                m[i] /= fx
            for i in (1, 5, 9):  # row coefficients
                m[i] /= fy
            value = tuple(m)
        elif code == _GEO_TIEPOINT and _GEO_PIXEL_SCALE in values:
            gx, gy = values[_GEO_PIXEL_SCALE][:2]
            t = list(value)
            t[3] += shift_x * gx
            t[4] -= shift_y * gy  # model Y decreases down the rows
            value = tuple(t)
        out.append((code, dtype, count, value, writeonce))
    return out


def write_image(
    path: str | os.PathLike, data: np.ndarray, meta: ImageMeta, *, overwrite: bool = False
) -> Path:
    """Write ``data`` with ``meta`` atomically: a temporary file in the target folder
    is renamed onto ``path`` only after it is completely written.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        if path.suffix.lower() in PNG_SUFFIXES:
            _write_png(tmp, data, meta)
        else:
            _write_tiff(tmp, data, meta)
    return path


def _write_tiff(path: Path, data: np.ndarray, meta: ImageMeta) -> None:
    import tifffile

    kwargs: dict[str, Any] = {"photometric": "rgb" if meta.rgb else "minisblack"}
    if meta.resolution is not None:
        kwargs["resolution"] = meta.resolution
        if meta.resolution_unit is not None and meta.kind != "imagej":
            kwargs["resolutionunit"] = meta.resolution_unit
    if meta.kind == "imagej":
        tifffile.imwrite(
            path, data, imagej=True, metadata={"axes": meta.axes, **meta.imagej}, **kwargs
        )
    elif meta.kind == "ome":
        tifffile.imwrite(path, data, ome=True, metadata={"axes": meta.axes, **meta.ome}, **kwargs)
    else:
        tifffile.imwrite(path, data, extratags=meta.geotiff, metadata=None, **kwargs)


def _write_png(path: Path, data: np.ndarray, meta: ImageMeta) -> None:
    from PIL import Image

    if data.dtype not in (np.uint8, np.uint16) or (data.dtype == np.uint16 and data.ndim == 3):
        raise ValueError(f"PNG output supports uint8 images and uint16 greyscale, not {data.dtype}")
    image = Image.fromarray(data)
    options = {"dpi": meta.resolution} if meta.resolution else {}
    image.save(path, format="PNG", **options)
