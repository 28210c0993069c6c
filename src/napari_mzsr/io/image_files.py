"""Reading and writing image files for batch runs, with the pixel size kept right.

TIFF (plain, ImageJ hyperstacks, OME-TIFF, GeoTIFF) through tifffile; PNG, JPEG, BMP
and WebP through Pillow (a JPEG's EXIF orientation is applied, as viewers show it);
OME-Zarr (NGFF 0.4 and 0.5) through the optional ``zarr`` and ``dask`` packages, read
lazily so that an image larger than memory is never loaded whole. :func:`read_image`
returns the pixels with their axes and the metadata that describe the pixel size;
:func:`write_image` writes a super-resolved result with that metadata, pixel sizes
divided by the scale, to a temporary file (or folder) that is renamed into place only
once complete.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_folder, atomic_path

TIFF_SUFFIXES = (".tif", ".tiff")
PNG_SUFFIXES = (".png",)
# Read through Pillow; lossy (JPEG, WebP) or dated (BMP), so results are written as PNG.
PILLOW_SUFFIXES = (".jpg", ".jpeg", ".bmp", ".webp")
ZARR_SUFFIXES = (".zarr",)  # also ".ome.zarr"; a folder
SUFFIXES = TIFF_SUFFIXES + PNG_SUFFIXES + PILLOW_SUFFIXES + ZARR_SUFFIXES


def is_zarr(path: Path) -> bool:
    """Whether ``path`` names an OME-Zarr store (a folder ending in .zarr)."""
    return path.name.lower().endswith(ZARR_SUFFIXES)


ZARR_INSTALL = (
    "OME-Zarr needs the optional zarr and dask packages: pip install 'zarr>=3' "
    "'dask[array]' (or the package's [zarr] extra)"
)
# OME-NGFF axis units for TIFF ResolutionUnit (2: inch, 3: centimetre) and ImageJ units.
_TIFF_UNITS = {2: "inch", 3: "centimeter"}
_UNIT_NAMES = {
    "um": "micrometer", "µm": "micrometer", "micron": "micrometer", "\\u00B5m": "micrometer",
    "nm": "nanometer", "mm": "millimeter", "cm": "centimeter", "m": "meter",
    "inch": "inch", "pixel": None, "": None,
}  # fmt: skip

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
    kind : {"tiff", "imagej", "ome", "png", "ome-zarr"}
        File flavour; GeoTIFF is a ``"tiff"`` with ``geotiff`` tags; JPEG, BMP and WebP
        read as ``"png"`` (their DPI kept, their results written as PNG).
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
    ngff : dict
        OME-Zarr: ``axes`` (the NGFF axis dicts), ``scale`` and ``translation`` (one
        per axis, in the axes' units) and ``omero`` (channel rendering), to write back.
    """

    kind: str
    axes: str
    resolution: tuple[float, float] | None = None
    resolution_unit: int | None = None
    imagej: dict[str, Any] = field(default_factory=dict)
    ome: dict[str, Any] = field(default_factory=dict)
    geotiff: list[tuple] = field(default_factory=list)
    ngff: dict[str, Any] = field(default_factory=dict)

    @property
    def rgb(self) -> bool:
        return self.axes.endswith("S")


def _unsupported(path: Path) -> ValueError:
    return ValueError(
        f"{path.name}: unsupported file type {path.suffix.lower()!r} (use TIFF, PNG, JPEG, "
        "BMP, WebP or OME-Zarr)"
    )


def read_image(path: str | os.PathLike) -> tuple[Any, ImageMeta]:
    """Read an image file: pixels and :class:`ImageMeta`.

    Returns
    -------
    data : ndarray, or dask array for OME-Zarr (read lazily, chunk by chunk)
    meta : ImageMeta

    Raises
    ------
    ValueError
        Unsupported suffix, unreadable or corrupt file, an axis layout that is not
        ``...YX`` or ``...YXS`` (3 or 4 samples), or OME-Zarr without ``zarr``/``dask``
        installed (the message gives the install command).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise _unsupported(path)
    try:
        if suffix in TIFF_SUFFIXES:
            data, meta = _read_tiff(path)
        elif suffix in ZARR_SUFFIXES:
            data, meta = _read_zarr(path)
        else:
            data, meta = _read_png(path)
    except ImportError:
        raise ValueError(f"{path.name}: {ZARR_INSTALL}") from None
    except (OSError, ValueError, SyntaxError, KeyError, IndexError, TypeError) as exc:
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
        raise _unsupported(path)
    try:
        if suffix in TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                axes = tif.series[0].axes
        elif suffix in ZARR_SUFFIXES:
            _, meta = _read_zarr(path)  # lazy: reads the metadata only
            axes = meta.axes
        else:
            from PIL import Image

            with Image.open(path) as im:
                im.verify()
            axes = "YX"
    except ImportError:
        raise ValueError(f"{path.name}: {ZARR_INSTALL}") from None
    except (OSError, ValueError, SyntaxError, KeyError, IndexError, TypeError) as exc:
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
    from PIL import Image, ImageOps

    with Image.open(path) as opened:
        opened.load()
        dpi = opened.info.get("dpi")
        im = ImageOps.exif_transpose(opened)  # JPEG: the orientation viewers show
        if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("RGBA" if "transparency" in im.info or im.mode == "PA" else "RGB")
        if im.mode == "LA":
            im = im.convert("RGBA")
        if im.mode == "1":
            im = im.convert("L")
        data = np.asarray(im)
    if data.dtype == np.int32:  # Pillow's "I" mode for 16-bit greyscale PNG
        data = data.astype(np.uint16)
    axes = "YXS" if data.ndim == 3 else "YX"
    resolution = (float(dpi[0]), float(dpi[1])) if dpi else None
    return data, ImageMeta("png", axes, resolution)


def _read_zarr(path: Path) -> tuple[Any, ImageMeta]:
    """The full-resolution level of an OME-Zarr image (NGFF 0.4 or 0.5) as a dask array,
    with its axes, pixel sizes and offsets (nothing of the pixels is read)."""
    import dask.array as da
    import zarr

    group = zarr.open_group(str(path), mode="r")
    attrs = dict(group.attrs)
    ome = attrs.get("ome", attrs)  # NGFF 0.5 nests its metadata under "ome"
    if "multiscales" not in ome:
        raise ValueError("no OME-NGFF 'multiscales' metadata (not an OME-Zarr image)")
    multiscale = ome["multiscales"][0]
    dataset = multiscale["datasets"][0]  # the highest resolution
    array = group[dataset["path"]]
    ndim = array.ndim
    axes = multiscale.get("axes") or [{"name": n} for n in "tczyx"[-ndim:]]
    axes = [{"name": a} if isinstance(a, str) else dict(a) for a in axes]
    if len(axes) != ndim:
        raise ValueError(f"{len(axes)} axes in the metadata for an array of {ndim} dimensions")
    scale, translation = np.ones(ndim), np.zeros(ndim)
    # Per NGFF: the dataset's transformations, then the multiscale's.
    for transforms in (dataset, multiscale):
        for t in transforms.get("coordinateTransformations", []):
            if t.get("type") == "scale":
                factor = np.asarray(t["scale"], dtype=float)
                scale, translation = scale * factor, translation * factor
            elif t.get("type") == "translation":
                translation = translation + np.asarray(t["translation"], dtype=float)
    letters = "".join(str(a["name"])[:1].upper() for a in axes)
    ngff = {
        "axes": axes,
        "scale": scale.tolist(),
        "translation": translation.tolist(),
        "name": multiscale.get("name", path.stem),
    }
    if "omero" in ome:
        ngff["omero"] = ome["omero"]
    return da.from_zarr(array), ImageMeta("ome-zarr", letters, ngff=ngff)


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
    ngff = dict(meta.ngff)
    if ngff:
        scale, translation = list(ngff["scale"]), list(ngff["translation"])
        for axis, centre, factor in ((-2, cy, sy), (-1, cx, sx)):
            translation[axis] += centre * scale[axis]  # the first output pixel's centre
            scale[axis] /= factor
        ngff.update(scale=scale, translation=translation)
    return replace(
        meta,
        resolution=resolution,
        ome=ome,
        imagej=imagej,
        geotiff=_scaled_geotiff(meta.geotiff, (sy, sx), (cy, cx)),
        ngff=ngff,
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
    path: str | os.PathLike, data: Any, meta: ImageMeta, *, overwrite: bool = False
) -> Path:
    """Write ``data`` with ``meta`` atomically: a temporary file (or folder, for
    OME-Zarr) beside ``path`` is renamed onto it only after it is completely written.

    ``data`` may be a dask array for OME-Zarr, written block by block (never whole in
    memory); other formats take an array in memory.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    ValueError
        OME-Zarr without ``zarr`` installed (the message gives the install command).
    """
    path = Path(path)
    if path.suffix.lower() in ZARR_SUFFIXES:
        with atomic_folder(path, overwrite=overwrite) as tmp:
            write_zarr(tmp, data, meta)
        return path
    with atomic_path(path, overwrite=overwrite) as tmp:
        if path.suffix.lower() in PNG_SUFFIXES:
            _write_png(tmp, data, meta)
        else:
            _write_tiff(tmp, data, meta)
    return path


def write_zarr(path: Path, data: Any, meta: ImageMeta) -> None:
    """Write an OME-Zarr image (NGFF 0.4, zarr format 2, one resolution level) into the
    (empty) folder ``path``: ``data`` numpy or dask, chunk by chunk."""
    try:
        import dask.array as da
    except ImportError:
        raise ValueError(ZARR_INSTALL) from None
    lazy = da.asarray(data)
    if meta.rgb and not meta.ngff:  # NGFF puts Y and X last: colours become channels
        lazy = da.moveaxis(lazy, -1, -3)
        meta = replace(meta, ngff=_ngff_from(meta, lazy.ndim))
    array = create_zarr(path, lazy.shape, lazy.dtype, meta)
    da.store(lazy.rechunk(array.chunks), array, lock=False)


def create_zarr(path: Path, shape: tuple[int, ...], dtype: Any, meta: ImageMeta):
    """An empty OME-Zarr image (NGFF 0.4, zarr format 2, one level) in the folder
    ``path``, with ``meta``'s axes and pixel sizes; returns its zarr array to fill
    (chunks: one slice, at most 1024 pixels a side)."""
    try:
        import zarr
    except ImportError:
        raise ValueError(ZARR_INSTALL) from None
    ngff = meta.ngff or _ngff_from(meta, len(shape))
    chunks = (*(1,) * (len(shape) - 2), *(min(n, 1024) for n in shape[-2:]))
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    array = group.create_array("0", shape=shape, chunks=chunks, dtype=np.dtype(dtype))
    transforms = [
        {"type": "scale", "scale": [float(v) for v in ngff["scale"]]},
        {"type": "translation", "translation": [float(v) for v in ngff["translation"]]},
    ]
    multiscale = {
        "version": "0.4",
        "name": ngff.get("name", path.stem),
        "axes": ngff["axes"],
        "datasets": [{"path": "0", "coordinateTransformations": transforms}],
    }
    attrs: dict[str, Any] = {"multiscales": [multiscale]}
    if "omero" in ngff:
        attrs["omero"] = ngff["omero"]
    group.attrs.update(json.loads(json.dumps(attrs)))
    return array


def _ngff_from(meta: ImageMeta, ndim: int) -> dict[str, Any]:
    """NGFF axes and pixel sizes from another file's metadata (OME-TIFF physical
    sizes, ImageJ units and spacing, TIFF/PNG resolution)."""
    letters = meta.axes[:-1] if meta.rgb else meta.axes
    if meta.rgb:  # the colours moved before Y and X (see write_zarr)
        letters = letters[:-2] + ("C" if "C" not in letters else "S") + letters[-2:]
    letters = letters if len(letters) == ndim else "TCZYX"[-ndim:]
    kinds = {"T": "time", "C": "channel", "S": "channel", "Z": "space", "Y": "space"}
    axes = [{"name": a.lower(), "type": kinds.get(a, "space")} for a in letters]
    scale = [1.0] * ndim
    space = [i for i, a in enumerate(axes) if a["name"] in "zyx" and a["type"] == "space"]
    unit = None
    if meta.ome:
        unit = _UNIT_NAMES.get(str(meta.ome.get("PhysicalSizeXUnit", "µm")), None)
        for i in space:
            key = f"PhysicalSize{axes[i]['name'].upper()}"
            scale[i] = float(meta.ome.get(key, 1.0))
        unit = unit or "micrometer"
    elif meta.resolution is not None:
        unit = (
            _UNIT_NAMES.get(str(meta.imagej.get("unit", "")), None)
            if meta.kind == "imagej"
            else ("inch" if meta.kind == "png" else _TIFF_UNITS.get(meta.resolution_unit))
        )
        per_x, per_y = meta.resolution
        for i in space:
            name = axes[i]["name"]
            if name == "x" and per_x:
                scale[i] = 1.0 / per_x
            elif name == "y" and per_y:
                scale[i] = 1.0 / per_y
            elif name == "z" and "spacing" in meta.imagej:
                scale[i] = float(meta.imagej["spacing"])
    if unit:
        for i in space:
            axes[i]["unit"] = unit
    return {"axes": axes, "scale": scale, "translation": [0.0] * ndim}


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
