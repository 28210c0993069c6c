"""Benchmark settings and deterministic LR inputs made from a folder of HR images.

A *setting* is one column group of the paper's tables: a blur kernel, a subsampling
method, a scale and the shipped theta_M that matches it (REFERENCE sections 4 and 8).
LR inputs are made like the official ones: ``round(clip(degrade(HR / 255), 0, 1) * 255)``
on the HR image cropped to a multiple of the scale.

    python -m benchmarks.lr_inputs --data ../shared/data/bench/Set5 --out /tmp/lr
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_mzsr.core.degradation import degrade
from napari_mzsr.core.kernels import PRESETS

IMAGE_SUFFIXES = (".png", ".tif", ".tiff")

# A 1x1 kernel turns the "bicubic" degradation into plain MATLAB-bicubic downscaling.
IDENTITY_KERNEL = np.ones((1, 1))


@dataclass(frozen=True)
class Setting:
    """One degradation of the benchmark.

    Attributes
    ----------
    name : str
        Label used in the tables (``"g^d_2.0"``, ``"bicubic"``, ``"g^d_2.0 x4"``).
    table : str
        The paper's table it belongs to (``"Table 2"``, ``"Table 1"``, ``"x4"``).
    kernel : ndarray
        Blur kernel in the project's convention (1x1 identity for plain bicubic).
    method : {"direct", "bicubic"}
        Subsampling after the blur.
    scale : int
        Super-resolution factor.
    model : str
        Name of the shipped theta_M meant for this setting.
    """

    name: str
    table: str
    kernel: np.ndarray
    method: str
    scale: int
    model: str

    @property
    def shave(self) -> int:
        """Border pixels ignored by the metrics (paper protocol: ``int(scale)``)."""
        return int(self.scale)


def _preset(name: str, scale: int = 2, label: str | None = None, table: str = "Table 2"):
    preset = PRESETS[name]
    model = f"{preset.degradation}-x{scale}"
    return Setting(label or name, table, preset.kernel(), preset.degradation, scale, model)


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        _preset("g^d_0.2"),
        _preset("g^d_2.0"),
        _preset("g^d_ani"),
        _preset("g^b_1.3"),
        Setting("bicubic", "Table 1", IDENTITY_KERNEL, "bicubic", 2, "bicubic-x2"),
        _preset("g^d_2.0", 4, "g^d_2.0 x4", "x4"),
    )
}


def _to_uint8(image: np.ndarray, path: Path) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        # The paper's protocol is 8-bit; map 16-bit files onto it.
        return np.rint(image / 257.0).astype(np.uint8)
    raise ValueError(f"{path}: expected an 8- or 16-bit image, got dtype {image.dtype}")


def read_image(path: Path) -> np.ndarray:
    """Read a PNG or TIFF as uint8 (H, W) grayscale or (H, W, 3) RGB; alpha is dropped."""
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        image = np.asarray(tifffile.imread(path))
    else:
        from PIL import Image

        with Image.open(path) as im:
            if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("RGB")
            elif im.mode == "LA":
                im = im.convert("L")
            image = np.asarray(im)
    if image.ndim == 3 and image.shape[-1] in (2, 4):
        image = image[..., :-1]
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
        raise ValueError(f"{path}: expected a 2D grayscale or RGB image, got {image.shape}")
    return _to_uint8(image, path)


def add_image_set_options(parser: argparse.ArgumentParser, default: Path | None = None) -> None:
    """``--data`` (required unless ``default`` exists), ``--set-name`` and ``--limit``."""
    shared = default if default is not None and default.is_dir() else None
    where = f" (default: {default} when it exists)" if default else ""
    parser.add_argument(
        "--data", type=Path, default=shared, required=shared is None,
        help=f"folder of HR PNG/TIFF{where}",
    )  # fmt: skip
    parser.add_argument("--set-name", help="name of the set (default: the folder's name)")
    parser.add_argument("--limit", type=int, help="use the first N images only")


def load_hr_images(folder: Path, limit: int | None = None) -> dict[str, np.ndarray]:
    """HR images of ``folder`` (PNG/TIFF, sorted by name; the first ``limit`` if given)."""
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if limit is not None:
        paths = paths[:limit]
    if not paths:
        raise FileNotFoundError(f"no PNG or TIFF images in {folder}")
    return {p.stem: read_image(p) for p in paths}


def crop_to_multiple(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom and right borders so that both sides are multiples of ``scale``."""
    h, w = image.shape[:2]
    return image[: h - h % scale, : w - w % scale]


def make_lr(hr: np.ndarray, setting: Setting) -> np.ndarray:
    """The uint8 LR input of ``hr`` (uint8, already cropped) for ``setting``."""
    unit = hr.astype(np.float64) / 255.0
    lr = degrade(unit, setting.kernel, setting.scale, setting.method)
    return np.rint(np.clip(lr, 0.0, 1.0) * 255.0).astype(np.uint8)


def hr_and_lr(hr: np.ndarray, setting: Setting) -> tuple[np.ndarray, np.ndarray]:
    """``hr`` (uint8) cropped to a multiple of the setting's scale, and its LR input: the
    pair every benchmark scores against."""
    hr = crop_to_multiple(hr, setting.scale)
    return hr, make_lr(hr, setting)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the benchmark's LR inputs as PNGs.")
    parser.add_argument("--data", type=Path, required=True, help="folder of HR PNG/TIFF")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--limit", type=int)
    args = parser.parse_args(argv)

    from PIL import Image

    hr_images = load_hr_images(args.data, args.limit)
    for name in args.settings:
        setting = SETTINGS[name]
        folder = args.out / setting.name.replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        for stem, hr in hr_images.items():
            _, lr = hr_and_lr(hr, setting)
            Image.fromarray(lr).save(folder / f"{stem}.png")
        print(f"{setting.name}: {len(hr_images)} images -> {folder}")


if __name__ == "__main__":
    main()
