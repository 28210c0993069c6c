"""Real and ordinary images: the package's defaults against plain interpolation.

A user's first run is on their own image with the defaults; this benchmark asks whether
that run beats bicubic interpolation, image by image, on three kinds of data:

(a) ``photos``: HR images downscaled by the tools people use (MATLAB bicubic, PIL
    bicubic, area averaging, Lanczos) at x2, x3 and x2.5, each also saved as JPEG
    quality 75 and with mild Gaussian noise (standard deviation 2 grey levels);
(b) ``city100``: the City100 pairs of a DSLR and a phone (real optics and processing),
    the LR image read back on its native grid at the measured focal-length ratio;
(c) ``fluorescence``: synthetic widefield images (filaments, nuclei and puncta, an
    Airy-like PSF, 2 x 2 pixel binning, Poisson-Gaussian noise, uint16), scored
    against the noise-free image on the fine grid.

Columns: bicubic, Lanczos, the defaults (``super_resolve(lr, scale=s)``) and the
alternatives named with ``--methods`` (``defaults@real``: the defaults with the theta_M
``real`` in place of the package's choice). PSNR/SSIM on Y (paper protocol; real pairs at
their best integer shift within one pixel; fluorescence on intensities scaled by the
reference's maximum), the gain over bicubic per image and its minimum per set, seconds
per image, and the self-check's predicted gain next to the true one. Writes
``NAME.md``/``.json``, a scatter plot of predicted against true gain and, per set,
a before/after PNG of the image where the defaults did worst.

Keep test sets for reporting: ``--split val`` takes photos from the training images
(never Set5/Set14), City100 pairs 016-040 (the reported ones are 001-015; the others
are not in the shared data: ``benchmarks/city100_validation.sh`` extracts them from the
CameraSR repository into a folder of the same layout) and cells of other seeds; it is
what the defaults were chosen on.
"""

from __future__ import annotations

import argparse
import io
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import ndimage, special

from napari_mzsr import imresize
from napari_mzsr.core.metrics import psnr, ssim
from napari_mzsr.core.pair_checks import aligned_scores, interpolation_period, native_grid
from napari_mzsr.pipeline.run import drive, iter_adapt

from .lr_inputs import IMAGE_SUFFIXES, read_image
from .machine import add_threads_option, apply_threads, machine_description, median_seconds
from .report import command_line, fmt, markdown_table, write_results

TOOLS = ("matlab", "pil-bicubic", "area", "lanczos")
FACTORS = (2.0, 3.0, 2.5)
VARIANTS = ("clean", "jpeg75", "noise2")
CAMERAS = ("NikonD5500", "iPhoneX")
# Validation photos: training images only (never a test set), fixed by name.
VALIDATION = (
    "Kodak24/kodim03.png", "Kodak24/kodim08.png", "Kodak24/kodim13.png",
    "Kodak24/kodim19.png", "BSD200/100075.png", "BSD200/104022.png",
    "BSD200/118035.png", "BSD200/135069.png",
)  # fmt: skip
PIL_FILTERS = {"pil-bicubic": Image.BICUBIC, "area": Image.BOX, "lanczos": Image.LANCZOS}


@dataclass
class Item:
    """One LR image and its HR reference."""

    group: str  # the set it is reported in ("photos matlab x2 clean", "City100 iPhoneX", ...)
    key: str
    lr: np.ndarray
    hr: np.ndarray
    registered: bool  # True for real pairs, scored at their best shift


# --- data -----------------------------------------------------------------------------


def _to_uint8(unit: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(unit, 0, 1) * 255).astype(np.uint8)


def downscale(hr: np.ndarray, factor: float, tool: str) -> np.ndarray:
    """``hr`` (uint8) downscaled by ``factor`` with ``tool``; size ``round(n / factor)``."""
    shape = (round(hr.shape[0] / factor), round(hr.shape[1] / factor))
    if tool == "matlab":
        return _to_uint8(imresize(hr / 255.0, 1 / factor, output_shape=shape))
    return np.asarray(Image.fromarray(hr).resize(shape[::-1], PIL_FILTERS[tool]))


def corrupt(lr: np.ndarray, variant: str, rng: np.random.Generator) -> np.ndarray:
    """``lr`` as saved by JPEG quality 75, with noise of 2 grey levels, or unchanged."""
    if variant == "jpeg75":
        buffer = io.BytesIO()
        Image.fromarray(lr).save(buffer, format="JPEG", quality=75)
        return np.asarray(Image.open(buffer))
    if variant == "noise2":
        return np.clip(np.rint(lr + rng.normal(0, 2.0, lr.shape)), 0, 255).astype(np.uint8)
    return lr


def photo_items(
    paths: list[Path], factors: tuple[float, ...], tools: tuple[str, ...], variants: tuple[str, ...]
) -> Iterator[Item]:
    """Set (a): every photo downscaled by every tool and factor, in every variant."""
    for factor in factors:
        for tool in tools:
            for variant in variants:
                rng = np.random.default_rng(0)
                for path in paths:
                    hr = read_image(path)
                    if hr.ndim == 2:
                        hr = np.repeat(hr[..., None], 3, axis=-1)
                    # A size the factor divides, so that the LR grid covers the HR exactly.
                    step = {2.0: 2, 3.0: 3, 2.5: 5}[factor]
                    hr = hr[: hr.shape[0] // step * step, : hr.shape[1] // step * step]
                    lr = corrupt(downscale(hr, factor, tool), variant, rng)
                    group = f"photos {tool} x{factor:g} {variant}"
                    yield Item(group, path.stem, lr, hr, registered=False)


def city100_items(folder: Path, camera: str, keys: list[str]) -> Iterator[Item]:
    """Set (b): the pairs of one camera, LR read back on its native grid at the ratio
    measured on these LR images (median interpolation period)."""
    raw = [(k, read_image(folder / f"{k}L.png"), read_image(folder / f"{k}H.png")) for k in keys]
    ratio = statistics.median(p for _, lr, _ in raw for p in interpolation_period(lr))
    for key, lr, hr in raw:
        native = _to_uint8(native_grid(lr.astype(np.float32) / 255, ratio))
        yield Item(f"City100 {camera} (ratio {ratio:.3f})", key, native, hr, registered=True)


def airy_psf(first_zero: float, size: int = 25) -> np.ndarray:
    """Airy pattern ``(2 J1(v) / v)^2`` with its first dark ring at ``first_zero`` px."""
    r = np.hypot(*np.mgrid[-(size // 2) : size // 2 + 1, -(size // 2) : size // 2 + 1])
    v = 3.8317 * np.maximum(r, 1e-9) / first_zero
    psf = (2 * special.j1(v) / v) ** 2
    return psf / psf.sum()


def fluorescence_scene(rng: np.random.Generator, side: int) -> np.ndarray:
    """Fluorophore density (float, peak about 1): filaments, nuclei and puncta."""
    scene = np.zeros((side, side))
    yy, xx = np.mgrid[:side, :side]
    for _ in range(rng.integers(2, 5)):  # nuclei: soft ellipses
        cy, cx, ry, rx = rng.uniform(0, side, 2).tolist() + rng.uniform(15, 40, 2).tolist()
        scene += 0.35 / (1 + np.exp((((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 - 1) * 8))
    for _ in range(rng.integers(15, 30)):  # filaments: smooth random walks
        point, heading = rng.uniform(0, side, 2), rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(80, 300))):
            heading += rng.normal(0, 0.08)
            point = point + np.array([np.sin(heading), np.cos(heading)])
            y, x = int(point[0]), int(point[1])
            if 0 <= y < side and 0 <= x < side:
                scene[y, x] += 0.5
    for y, x in rng.integers(0, side, (40, 2)):  # puncta
        scene[y, x] += rng.uniform(1, 3)
    return scene


def fluorescence_items(count: int, side: int = 256, first_seed: int = 100) -> Iterator[Item]:
    """Set (c): widefield-like uint16 images: the scene blurred by an Airy PSF (first
    dark ring at 3 fine pixels, about Nyquist for a fine pixel of 65 nm), binned 2 x 2 by
    the camera, 50-1000 photons at the peak, read noise 2 e-, offset 100. Seeds from
    ``first_seed`` (the validation split draws from 200, the reported set from 100)."""
    psf = airy_psf(3.0)
    for index in range(count):
        rng = np.random.default_rng(first_seed + index)
        blurred = ndimage.convolve(fluorescence_scene(rng, side), psf, mode="reflect")
        photons = blurred / blurred.max() * rng.uniform(50, 1000)
        binned = photons.reshape(side // 2, 2, side // 2, 2).sum(axis=(1, 3))
        counts = rng.poisson(binned) + rng.normal(100, 2.0, binned.shape)
        lr = np.clip(np.rint(counts), 0, 65535).astype(np.uint16)
        # The reference: the same optics with a camera of half the pixel pitch, no noise,
        # in the same counts per unit area (four times fewer per fine pixel).
        hr = np.clip(np.rint(photons * 4 + 100), 0, 65535).astype(np.uint16)
        yield Item("fluorescence x2 (uint16)", f"cells{index:02d}", lr, hr, registered=False)


# --- methods --------------------------------------------------------------------------

Method = Callable[[np.ndarray, tuple[int, int]], tuple[np.ndarray, dict[str, Any]]]


def _fit(sr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return sr[: shape[0], : shape[1]]


def _factors(lr: np.ndarray, shape: tuple[int, int]) -> tuple[float, float]:
    return shape[0] / lr.shape[0], shape[1] / lr.shape[1]


def _interpolate(lr: np.ndarray, shape: tuple[int, int], kernel: str) -> np.ndarray:
    unit = imresize(lr.astype(np.float64), _factors(lr, shape), output_shape=shape,
                    kernel=kernel)  # fmt: skip
    info = np.iinfo(lr.dtype)
    return np.clip(np.rint(unit), info.min, info.max).astype(lr.dtype)


def bicubic(lr: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, dict[str, Any]]:
    return _interpolate(lr, shape, "cubic"), {}


def lanczos(lr: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, dict[str, Any]]:
    """Lanczos-3 as the self-check's fallback computes it (PIL's within 1e-5 inside
    the borders, mirrored at them)."""
    return _interpolate(lr, shape, "lanczos3"), {}


def mzsr(**options: Any) -> Method:
    """The package's run with ``options`` (none: the defaults), at the exact factors
    that give the reference's shape; returns the result and its self-check."""

    def run(lr: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, dict[str, Any]]:
        adapted = drive(iter_adapt(lr, scale=_factors(lr, shape), **options))
        sr = adapted.apply(lr)
        check = adapted.self_check
        return _fit(sr, shape), check.as_dict() if check is not None else {}

    return run


def x2_then(rest: Method = bicubic, **options: Any) -> Method:
    """x2 with the package, the rest of the factor by interpolation (``rest``)."""

    def run(lr: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, dict[str, Any]]:
        adapted = drive(iter_adapt(lr, scale=2, **options))
        rest_of_it, _ = rest(adapted.apply(lr), shape)
        check = adapted.self_check
        return rest_of_it, check.as_dict() if check is not None else {}

    return run


def bicubic_then_x2(**options: Any) -> Method:
    """The factor less 2 by bicubic interpolation, then x2 with the package."""

    def run(lr: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, dict[str, Any]]:
        half = (math.ceil(shape[0] / 2), math.ceil(shape[1] / 2))
        middle, _ = bicubic(lr, half)
        adapted = drive(iter_adapt(middle, scale=2, **options))
        check = adapted.self_check
        return _fit(adapted.apply(middle), shape), check.as_dict() if check is not None else {}

    return run


# The package's runs compared, by their options; "NAME@MODEL" in --methods runs NAME
# with the theta_M MODEL (a shipped name or a file) in place of the package's choice.
MZSR_OPTIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "no self-check": {"self_check": False},
    "no noise matching": {"noise": "off"},
    "microscope preset (0.1 default)": {
        "kernel": "microscope", "noise": "off", "self_check": False,
    },
    "estimated kernel": {"kernel": "estimate"},
}  # fmt: skip
METHODS: dict[str, Method] = {
    "bicubic": bicubic,
    "lanczos": lanczos,
    **{name: mzsr(**options) for name, options in MZSR_OPTIONS.items()},
    "x2 then bicubic": x2_then(),
    "x2 then lanczos": x2_then(lanczos),
    "bicubic then x2": bicubic_then_x2(),
    "x2 g0.5 then bicubic": x2_then(kernel=0.5, model="bicubic-x2"),
}


def method(name: str) -> Method:
    """The method of a ``--methods`` entry: a key of :data:`METHODS`, or
    ``"NAME@MODEL"`` with NAME a key of :data:`MZSR_OPTIONS`.

    Raises
    ------
    KeyError
        An unknown name.
    """
    if name in METHODS:
        return METHODS[name]
    base, at, model = name.rpartition("@")
    if not at or base not in MZSR_OPTIONS or not model:
        raise KeyError(name)
    return mzsr(**MZSR_OPTIONS[base], model=model)


# --- scoring --------------------------------------------------------------------------


def score(sr: np.ndarray, item: Item) -> tuple[float, float]:
    """PSNR and SSIM of ``sr`` against the item's reference (see the module docstring)."""
    shave = math.ceil(item.hr.shape[0] / item.lr.shape[0])
    if item.hr.dtype == np.uint16:
        low, peak = 100.0, float(item.hr.max())
        a, b = ((np.asarray(x, np.float64) - low) / (peak - low) for x in (sr, item.hr))
        return psnr(np.clip(a, 0, 1), np.clip(b, 0, 1), shave), ssim(np.clip(a, 0, 1), b, shave)
    if item.registered:
        result = aligned_scores(sr, item.hr, shave=shave, search=1)
        return result.psnr, result.ssim
    return psnr(sr, item.hr, shave), ssim(sr, item.hr, shave)


def family(group: str) -> str:
    """The set a group belongs to: photos, one camera of City100, fluorescence."""
    return " ".join(group.split()[:2]) if group.startswith("City100") else group.split()[0]


def evaluate(
    items: Iterator[Item], methods: list[str], worst: dict[str, dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    """Score every method on every item, a row at a time; ``worst`` keeps, per set, the
    outputs of the image where the defaults gained least."""
    chosen = {name: method(name) for name in methods}
    for item in items:
        row: dict[str, Any] = {"group": item.group, "key": item.key, "lr_shape": item.lr.shape}
        outputs = {}
        for name in methods:
            start = time.perf_counter()
            sr, check = chosen[name](item.lr, item.hr.shape[:2])
            seconds = time.perf_counter() - start
            value, similarity = score(sr, item)
            row[name] = {"psnr": value, "ssim": similarity, "seconds": seconds, **check}
            outputs[name] = sr
        base = row["bicubic"]["psnr"]
        for name in methods:
            row[name]["gain"] = row[name]["psnr"] - base
        shown = "defaults" if "defaults" in methods else methods[-1]
        kept = worst.get(family(item.group))
        if kept is None or row[shown]["gain"] < kept["row"][shown]["gain"]:
            worst[family(item.group)] = {"row": row, "item": item, "outputs": outputs}
        gains = " ".join(f"{m}={row[m]['gain']:+.2f}" for m in methods if m != "bicubic")
        if "gain_adapted_db" in row.get("defaults", {}):
            gains += f" (predicted {row['defaults']['gain_adapted_db']:+.2f})"
        print(f"{item.group} {item.key}: bicubic {base:.2f} dB, {gains}", file=sys.stderr)
        yield row


def summary(rows: list[dict[str, Any]], methods: list[str]) -> list[str]:
    """Markdown: per set, each method's mean PSNR/SSIM, mean and minimum gain, seconds."""
    lines: list[str] = []
    for group in dict.fromkeys(r["group"] for r in rows):
        chosen = [r for r in rows if r["group"] == group]
        table = []
        for name in methods:
            cells = [r[name] for r in chosen]
            worst = min(chosen, key=lambda r: r[name]["gain"])
            table.append([
                name,
                fmt(statistics.mean(c["psnr"] for c in cells)),
                fmt(statistics.mean(c["ssim"] for c in cells), 4),
                f"{statistics.mean(c['gain'] for c in cells):+.2f}",
                f"{worst[name]['gain']:+.2f} ({worst['key']})",
                fmt(statistics.mean(c["seconds"] for c in cells), 1),
                _choices(cells),
            ])  # fmt: skip
        lines += [f"### {group} ({len(chosen)} images)", ""]
        header = ["method", "PSNR", "SSIM", "gain", "min gain", "s", "self-check chose"]
        lines += [*markdown_table(header, table), ""]
    return lines


def _choices(cells: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for cell in cells:
        if "choice" in cell:
            counts[cell["choice"]] = counts.get(cell["choice"], 0) + 1
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "—"


def tracking(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How the defaults' predicted gain of the adapted network follows its true gain:
    the true gain is the ``"no self-check"`` column's (the same network, never
    replaced), or else the defaults' own where they kept a network."""
    truth = "no self-check" if all("no self-check" in r for r in rows) else "defaults"
    pairs = [
        (r["defaults"]["gain_adapted_db"], r[truth]["gain"])
        for r in rows
        if "gain_adapted_db" in r.get("defaults", {})
        and (truth != "defaults" or r["defaults"]["choice"] == "adapted")
    ]
    if len(pairs) < 3:
        return {"pairs": len(pairs)}
    predicted, true = (np.array(v) for v in zip(*pairs, strict=True))
    return {
        "true_gain_from": truth,
        "pairs": len(pairs),
        "pearson_r": round(float(np.corrcoef(predicted, true)[0, 1]), 3),
        "sign_agreement": round(float(np.mean(np.sign(predicted) == np.sign(true))), 3),
    }


def _display(image: np.ndarray, low: float, high: float) -> np.ndarray:
    unit = np.clip((image.astype(np.float64) - low) / (high - low), 0, 1)
    rgb = unit if unit.ndim == 3 else np.repeat(unit[..., None], 3, axis=-1)
    return np.rint(rgb * 255).astype(np.uint8)


def write_worst(path: Path, kept: dict[str, Any], method: str, side: int = 160) -> Path:
    """Before/after PNG of one image: bicubic, ``method`` and the reference, on the
    window of ``side`` HR pixels where ``method`` differs most from bicubic."""
    from PIL import ImageDraw

    item, row, outputs = kept["item"], kept["row"], kept["outputs"]
    hr = item.hr.astype(np.float64)
    change = np.abs(outputs[method].astype(np.float64) - outputs["bicubic"])
    change = change.sum(-1) if change.ndim == 3 else change
    side = min(side, *hr.shape[:2])
    energy = ndimage.uniform_filter(change, side, mode="constant")
    top, left = np.unravel_index(np.argmax(energy), energy.shape)
    top = int(np.clip(top - side // 2, 0, hr.shape[0] - side))
    left = int(np.clip(left - side // 2, 0, hr.shape[1] - side))
    window = (slice(top, top + side), slice(left, left + side))
    low, high = (0, 255) if item.hr.dtype == np.uint8 else np.percentile(hr, (0.1, 99.9))
    names = ["bicubic", method]
    panels = [_display(outputs[n][window], low, high) for n in names]
    panels.append(_display(item.hr[window], low, high))
    picture = Image.fromarray(np.concatenate(panels, axis=1)).resize((side * 6, side * 2))
    draw = ImageDraw.Draw(picture)
    labels = [f"{n} {row[n]['psnr']:.2f} dB" for n in names] + ["reference"]
    captions = [((i * side * 2 + 6, 6), label) for i, label in enumerate(labels)]
    captions.append(((6, side * 2 - 18), f"{item.group} {item.key}"))
    for corner, text in captions:
        draw.rectangle(draw.textbbox(corner, text), fill=(0, 0, 0))
        draw.text(corner, text, fill=(255, 255, 0))
    picture.save(path)
    return path


def write_scatter(path: Path, rows: list[dict[str, Any]], truth: str) -> Path:
    """Predicted gain (self-check, adapted network) against the true gain, per set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    for name in dict.fromkeys(family(r["group"]) for r in rows):
        chosen = [
            r for r in rows if family(r["group"]) == name and "gain_adapted_db" in r["defaults"]
        ]
        ax.scatter([r["defaults"]["gain_adapted_db"] for r in chosen],
                   [r[truth]["gain"] for r in chosen], s=12, label=name)  # fmt: skip
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel("predicted gain over bicubic (dB, the image's son)")
    ax.set_ylabel(f"true gain over bicubic (dB, {truth})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def self_check_cost(image: np.ndarray, repeats: int = 3) -> dict[str, float]:
    """Median seconds of MZSR(10) on ``image`` with the defaults and with their image
    analysis turned off (no noise or JPEG matching, no self-check): what they add."""
    with_check = median_seconds(
        lambda: mzsr()(image, (image.shape[0] * 2, image.shape[1] * 2)), repeats
    )
    without = mzsr(noise="off", self_check=False)
    plain = median_seconds(
        lambda: without(image, (image.shape[0] * 2, image.shape[1] * 2)), repeats
    )
    return {"defaults_s": with_check, "without_s": plain, "added": with_check / plain - 1}


def _known(name: str) -> bool:
    try:
        method(name)
    except KeyError:
        return False
    return True


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the shared data folder")
    parser.add_argument("--sets", default="photos,city100,fluorescence")
    parser.add_argument(
        "--split", choices=("test", "val"), default="test",
        help="photos from Set14 (test) or the training images (val); City100 pairs 001-015 "
        "(test) or 016-040 (val)",
    )  # fmt: skip
    parser.add_argument("--limit", type=int, help="first N photos / pairs / cells only")
    parser.add_argument("--factors", default="2,3,2.5")
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--cameras", default=",".join(CAMERAS))
    parser.add_argument("--methods", default="bicubic,lanczos,defaults")
    parser.add_argument("--name", default="real_images_cpu", help="results file name")
    parser.add_argument(
        "--timing", action="store_true",
        help="also time what the self-check and the noise/JPEG matching add to MZSR(10) on "
        "a 256 x 256 RGB image (the centre of Set14's flowers)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    add_threads_option(parser)
    args = parser.parse_args(argv)
    apply_threads(args)
    methods = list(dict.fromkeys(["bicubic", *args.methods.split(",")]))
    unknown = [m for m in methods if not _known(m)]
    if unknown:
        parser.error(
            f"unknown --methods {unknown}; choose from {', '.join(METHODS)}, or NAME@MODEL "
            f"with NAME one of {', '.join(MZSR_OPTIONS)}"
        )
    sets = args.sets.split(",")
    worst: dict[str, dict[str, Any]] = {}
    runs: list[Iterator[dict[str, Any]]] = []
    if "photos" in sets:
        if args.split == "val":
            paths = [args.data / "train" / name for name in VALIDATION]
        else:
            folder = args.data / "bench" / "Set14"
            paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        factors = tuple(float(f) for f in args.factors.split(","))
        tools, variants = tuple(args.tools.split(",")), tuple(args.variants.split(","))
        runs.append(evaluate(photo_items(paths[: args.limit], factors, tools, variants),
                             methods, worst))  # fmt: skip
    if "city100" in sets:
        first, last = (16, 40) if args.split == "val" else (1, 15)
        keys = [f"{i:03d}" for i in range(first, last + 1)][: args.limit]
        for camera in args.cameras.split(","):
            folder = args.data / "real" / f"City100_{camera}"
            runs.append(evaluate(city100_items(folder, camera, keys), methods, worst))
    if "fluorescence" in sets:
        # Validation cells are drawn from other seeds than the reported ones.
        first_seed = 200 if args.split == "val" else 100
        cells = fluorescence_items(args.limit or 8, first_seed=first_seed)
        runs.append(evaluate(cells, methods, worst))

    command = command_line("benchmarks.real_images", sys.argv[1:] if argv is None else argv)
    rows: list[dict[str, Any]] = []
    for run in runs:
        for row in run:
            rows.append(row)
            # Written after every image: a run stopped part way keeps what it measured.
            report(args, command, rows, methods, {}, {}, final=False)
    cost: dict[str, float] = {}
    if args.timing:
        # An image the network is kept on: a fallback to bicubic would time less work.
        hr = read_image(args.data / "bench" / "Set14" / "flowers.png")
        top, left = (hr.shape[0] - 256) // 2, (hr.shape[1] - 256) // 2
        cost = self_check_cost(hr[top : top + 256, left : left + 256])
    md_path = report(args, command, rows, methods, worst, cost, final=True)
    print(md_path)
    return md_path


def report(
    args: argparse.Namespace,
    command: str,
    rows: list[dict[str, Any]],
    methods: list[str],
    worst: dict[str, dict[str, Any]],
    cost: dict[str, float],
    *,
    final: bool,
) -> Path:
    """Write the results so far (``final``: with the pictures)."""
    machine = machine_description(torch.device("cpu"))
    tracked = tracking(rows) if "defaults" in methods else {}
    markdown = [
        *([] if final else [f"**Partial: {len(rows)} images so far.**", ""]),
        f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}, "
        f"{machine['torch_threads']} thread(s), load {machine.get('load_average_1min', '?')}.",
        "",
        "Gain: PSNR (Y) over bicubic interpolation of the same LR image, per image; "
        "min gain names the image. Self-check: what the defaults gave (adapted network, "
        "theta_M unadapted, or the fallback: Lanczos, bicubic before it).",
        "",
        f"Self-check prediction against the true gain where a network was used: {tracked}.",
        "",
        *(
            [
                f"Cost of the image analysis (noise and JPEG matching, self-check) in "
                f"MZSR(10) at 256 x 256 RGB, x2: {cost['defaults_s']:.2f} s against "
                f"{cost['without_s']:.2f} s without it (+{100 * cost['added']:.0f}%; median "
                "of 3).",
                "",
            ]
            if cost
            else []
        ),
        *summary(rows, methods),
    ]
    payload = {
        "machine": machine, "methods": methods, "tracking": tracked, "self_check_cost": cost,
        "complete": final, "rows": rows,
    }  # fmt: skip
    if final:
        shown = "defaults" if "defaults" in methods else methods[-1]
        pictures = []
        for name, kept in worst.items():
            slug = name.replace(" ", "_")
            path = write_worst(args.out / f"{args.name}_worst_{slug}.png", kept, shown)
            pictures.append(f"- {name}: worst image `{path.name}`")
        if "defaults" in methods:
            scatter = write_scatter(args.out / f"{args.name}_prediction.png", rows,
                                    tracked.get("true_gain_from", "defaults"))  # fmt: skip
            pictures.append(f"- predicted against true gain: `{scatter.name}`")
        markdown += ["## Pictures", "", *pictures, ""]
    md_path, _ = write_results(args.out, args.name, "Real and ordinary images", command,
                               markdown, payload)  # fmt: skip
    return md_path


if __name__ == "__main__":
    main()
