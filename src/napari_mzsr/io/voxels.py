"""Voxel sizes of image files (ImageJ TIFF, OME-TIFF, OME-Zarr), and the metadata of a
stack whose Z axis was super-resolved (:func:`napari_mzsr.super_resolve_axial`)."""

from __future__ import annotations

from dataclasses import replace

from .image_files import ImageMeta

# Lengths in micrometres of the OME and ImageJ unit names.
_MICROMETRES = {
    "pm": 1e-6, "nm": 1e-3, "µm": 1.0, "um": 1.0, "micron": 1.0, "micrometer": 1.0,
    "\\u00B5m": 1.0, "mm": 1e3, "millimeter": 1e3, "cm": 1e4, "centimeter": 1e4,
    "m": 1e6, "meter": 1e6, "nanometer": 1e-3, "picometer": 1e-6, "angstrom": 1e-4,
}  # fmt: skip


def voxel_size(meta: ImageMeta) -> tuple[float, float, float] | None:
    """``(dz, dy, dx)`` of a stack from its file's metadata, in one unit, or None when
    the file does not give the Z step.

    Read from the OME ``PhysicalSize{Z,Y,X}`` (with their units; in µm), the ImageJ
    ``spacing`` and the TIFF resolution (pixels per unit, ImageJ's one unit), or the
    OME-Zarr scale of the axes named z, y and x: in µm where all three axes give a
    ``unit`` (each converted on its own), in the file's unit where none does. An
    unknown unit, or units on some of the three axes only, gives None, as the sizes
    could not be compared.

    Examples
    --------
    >>> meta = ImageMeta("ome", "ZYX", ome={"PhysicalSizeZ": 0.8, "PhysicalSizeY": 0.2,
    ...                                     "PhysicalSizeX": 0.2})
    >>> voxel_size(meta)
    (0.8, 0.2, 0.2)
    """
    if meta.kind == "ome":
        sizes = []
        for axis in "ZYX":
            value = meta.ome.get(f"PhysicalSize{axis}")
            if value is None:
                return None
            unit = str(meta.ome.get(f"PhysicalSize{axis}Unit", "µm"))
            if unit not in _MICROMETRES:
                return None
            sizes.append(float(value) * _MICROMETRES[unit])
        return _positive(tuple(sizes))
    if meta.kind == "imagej":
        spacing = meta.imagej.get("spacing")
        if spacing is None or meta.resolution is None or not all(meta.resolution):
            return None
        per_x, per_y = meta.resolution  # pixels per unit, TIFF order X, Y
        return _positive((float(spacing), 1.0 / per_y, 1.0 / per_x))
    if meta.kind == "ome-zarr" and meta.ngff:
        names = [str(a.get("name", "")).lower() for a in meta.ngff["axes"]]
        if not {"z", "y", "x"} <= set(names):
            return None
        axes = [meta.ngff["axes"][names.index(a)] for a in "zyx"]
        scale = [float(meta.ngff["scale"][names.index(a)]) for a in "zyx"]
        units = [a.get("unit") for a in axes]
        if all(u is None for u in units):
            return _positive(tuple(scale))
        if not all(str(u) in _MICROMETRES for u in units):
            return None
        return _positive(tuple(s * _MICROMETRES[str(u)] for s, u in zip(scale, units, strict=True)))
    return None


def _positive(sizes: tuple[float, float, float]) -> tuple[float, float, float] | None:
    return sizes if all(s > 0 for s in sizes) else None


def axial_meta(meta: ImageMeta, z_factor: float, first_z: float) -> ImageMeta:
    """Metadata of the stack with its Z axis super-resolved ``z_factor`` times: the Z
    step divided by the factor, and (OME-Zarr) the first slice moved to ``first_z``
    input slices from the input's first (:func:`napari_mzsr.core.axial.axial_positions`).
    """
    ome = dict(meta.ome)
    if "PhysicalSizeZ" in ome:
        ome["PhysicalSizeZ"] = ome["PhysicalSizeZ"] / z_factor
    imagej = dict(meta.imagej)
    if "spacing" in imagej:
        imagej["spacing"] = float(imagej["spacing"]) / z_factor
    ngff = dict(meta.ngff)
    if ngff:
        names = [str(a.get("name", "")).lower() for a in ngff["axes"]]
        if "z" in names:
            z = names.index("z")
            scale, translation = list(ngff["scale"]), list(ngff["translation"])
            translation[z] += first_z * scale[z]
            scale[z] /= z_factor
            ngff.update(scale=scale, translation=translation)
    return replace(meta, ome=ome, imagej=imagej, ngff=ngff)
