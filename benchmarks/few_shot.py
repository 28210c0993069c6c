"""Few-shot real-image SR: calibrate theta_M on a few real (LR, HR) pairs, score on others.

For one camera (a folder of support pairs and one of test pairs, e.g. City100 pairs
1-5 and 6-15) it scores, on Y after registration (best integer shift within one
pixel, ``ceil(scale)`` border shaved; :func:`napari_mzsr.core.pair_checks.aligned_scores`):
bicubic interpolation; zero-shot MZSR(n) with the kernel estimated from each LR image;
plain fine-tuning, DRTL and DRTL-meta (:mod:`napari_mzsr.core.calibration`) on the first
1, 3 and 5 support pairs; and the 5-shot DRTL profile adapted further zero-shot.

Pairs: files ``<key>L``/``<key>H`` (City100), ``<key>_LR``/``<key>_HR`` or
``<key>_lr``/``<key>_hr`` (PNG or TIFF), matched by key and sorted. An LR image stored at
the HR size (City100) is read back at the spacing of its interpolation grid
(:func:`~napari_mzsr.core.pair_checks.interpolation_period`, median over the support
pairs; :func:`~napari_mzsr.core.pair_checks.native_grid`) and rounded to uint8, as a
camera's LR image; that spacing is the scale. Otherwise the scale is the median HR/LR
size ratio of the support pairs.

    python -m benchmarks.few_shot --support ../shared/data/real/City100_NikonD5500 \\
        --support-pairs 1-5 --test ../shared/data/real/City100_NikonD5500 \\
        --test-pairs 6-15 --threads 1

Writes ``few_shot_<name>_cpu.md`` and ``.json`` (every per-image value) and
``few_shot_<name>_cpu.png`` (one test crop: bicubic, zero-shot MZSR, fine-tune and DRTL
with the most pairs, HR).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_mzsr.core import calibration
from napari_mzsr.core.adaptation import adapt
from napari_mzsr.core.kernel_estimation import estimate_kernel
from napari_mzsr.core.pair_checks import (
    aligned_scores,
    interpolation_period,
    measure_pair,
    native_grid,
)
from napari_mzsr.core.resize import imresize_tensor
from napari_mzsr.core.schedules import rate_at
from napari_mzsr.core.tensors import to_batch
from napari_mzsr.io.atomic import atomic_path
from napari_mzsr.io.model_file import MZSRModel, load_model
from napari_mzsr.io.pair_files import ImagePair as Pair
from napari_mzsr.io.pair_files import find_pairs
from napari_mzsr.pipeline.calibrate import calibrate_profile

from .lr_inputs import IMAGE_SUFFIXES, read_image
from .machine import add_threads_option, apply_threads, machine_description
from .report import command_line, fmt, markdown_table, write_results

CALIBRATIONS = ("finetune", "drtl", "drtl-meta")
LABELS = {"finetune": "fine-tune", "drtl": "DRTL", "drtl-meta": "DRTL-meta"}


def select(items: Sequence[Any], spec: str | None) -> list[Any]:
    """Items by 1-based positions ``"1-5"`` or ``"1,3,6-8"`` (all when ``spec`` is None)."""
    if spec is None:
        return list(items)
    chosen = []
    for part in spec.split(","):
        first, _, last = part.partition("-")
        chosen += list(range(int(first), int(last or first) + 1))
    if not chosen or min(chosen) < 1 or max(chosen) > len(items):
        raise SystemExit(f"pair selection {spec!r} is outside 1-{len(items)}")
    return [items[i - 1] for i in chosen]


def load_pairs(
    support: Sequence[tuple[str, Path, Path]], test: Sequence[tuple[str, Path, Path]]
) -> tuple[list[Pair], list[Pair], float, dict[str, Any]]:
    """Read the pairs and bring every LR image onto its native grid; returns the support
    and test pairs, the scale and how it was measured."""
    raw = {key: (read_image(lr), read_image(hr)) for key, lr, hr in [*support, *test]}
    keys = [key for key, _, _ in support]
    stored_upsampled = all(raw[k][0].shape == raw[k][1].shape for k in raw)
    if stored_upsampled:
        periods = [p for k in keys for p in interpolation_period(raw[k][0])]
        scale = float(statistics.median(periods))
        how = {"method": "interpolation period of the support LR images (median)"}
        how["periods"] = [round(p, 4) for p in periods]

        def native(image: np.ndarray) -> np.ndarray:
            lr = native_grid(image.astype(np.float32) / 255, scale)
            return np.rint(np.clip(lr, 0, 1) * 255).astype(np.uint8)

    else:
        ratios = [raw[k][1].shape[i] / raw[k][0].shape[i] for k in keys for i in (0, 1)]
        scale = float(statistics.median(ratios))
        how = {"method": "HR/LR size ratio of the support pairs (median)"}

        def native(image: np.ndarray) -> np.ndarray:
            return image

    def pairs(entries: Sequence[tuple[str, Path, Path]]) -> list[Pair]:
        return [Pair(k, native(raw[k][0]), raw[k][1]) for k, _, _ in entries]

    support_pairs, test_pairs = pairs(support), pairs(test)
    how["pairs"] = {}
    for pair in [*support_pairs, *test_pairs]:
        reg = measure_pair(pair.lr, pair.hr, scale)
        how["pairs"][pair.key] = {
            "period": [round(p, 4) for p in interpolation_period(raw[pair.key][0])]
            if stored_upsampled
            else None,
            "shift": [round(v, 3) for v in reg.shift],
            "ratio": round(reg.ratio, 4),
            "misplacement": round(reg.error, 3),
            "correlation": round(reg.correlation, 4),
        }
    return support_pairs, test_pairs, scale, how


def central_crop(pair: Pair, side: int, scale: float) -> Pair:
    """A ``side`` x ``side`` crop of ``pair``'s LR image near its centre and the HR crop it
    covers (``floor(side * scale)`` px). The LR origin, per axis, is the one within 80 px of
    the centre whose position on the HR grid (origin x scale) is closest to an integer, so
    that the HR crop starts on a pixel (within 0.05 px at City100's scales)."""
    h, w = pair.lr.shape[:2]
    if side > min(h, w):
        raise SystemExit(f"--support-crop {side} is larger than pair {pair.key}'s LR image")

    def origin(room: int) -> int:
        near = range(max(0, room // 2 - 80), min(room, room // 2 + 80) + 1)
        return min(near, key=lambda i: abs(i * scale - round(i * scale)))

    r0, c0 = origin(h - side), origin(w - side)
    top, left, size = round(r0 * scale), round(c0 * scale), math.floor(side * scale)
    lr = pair.lr[r0 : r0 + side, c0 : c0 + side]
    return Pair(pair.key, lr, pair.hr[top : top + size, left : left + size])


def network_input(lr: np.ndarray, shape: tuple[int, int], scale: float) -> torch.Tensor:
    """(1, C, H, W) float32: the LR image upsampled onto the HR grid (MATLAB bicubic)."""
    t = torch.from_numpy(lr.astype(np.float32) / 255)
    t = t.permute(2, 0, 1)[None] if t.ndim == 3 else t[None, None]
    return imresize_tensor(t, scale, output_shape=shape).clamp_(0, 1)


def crop_box(shape: tuple[int, int], crop: int) -> tuple[slice, slice]:
    """Central ``crop`` x ``crop`` box of an HR image (the whole image for crop 0)."""
    h, w = shape
    ch, cw = (h, w) if crop <= 0 else (min(crop, h), min(crop, w))
    top, left = (h - ch) // 2, (w - cw) // 2
    return slice(top, top + ch), slice(left, left + cw)


def run_net(net: torch.nn.Module | None, x: torch.Tensor, box: tuple[slice, slice]) -> np.ndarray:
    """The network's output on ``box`` of the HR grid, computed with its context."""
    m = 0 if net is None else calibration.network_context(net)
    top, left = max(0, box[0].start - m), max(0, box[1].start - m)
    window = x[..., top : box[0].stop + m, left : box[1].stop + m]
    out = window if net is None else calibration.predict(net, window)
    out = out[..., box[0].start - top : box[0].stop - top, box[1].start - left :]
    out = out[..., : box[1].stop - box[1].start]
    return out[0].permute(1, 2, 0).numpy()


def zero_shot(
    model: MZSRModel, lr: np.ndarray, scale: float, steps: int, degradation: str
) -> torch.nn.Module:
    """``model`` adapted to ``lr`` by the MZSR meta-test, kernel estimated from ``lr``."""
    estimate = estimate_kernel(lr, scale, degradation)
    net = model.network()
    x = to_batch(lr.astype(np.float32) / 255, model.info.channels)
    kernel = torch.from_numpy(estimate.kernel).float()
    schedule = model.info.lr_schedule
    run = adapt(
        net,
        lambda step: x,
        kernel,
        scale,
        steps=steps,
        learning_rate=lambda step: rate_at(schedule, step),
        degradation=degradation,
    )
    for _ in run:
        pass
    return net


def score(
    name: str,
    make_net: Callable[[Pair], torch.nn.Module | None],
    test: Sequence[Pair],
    scale: float,
    crop: int,
    keep: dict[str, np.ndarray],
) -> dict[str, Any]:
    """Per-image PSNR/SSIM of one column; the first test crop's output goes to ``keep``."""
    rows = []
    for i, pair in enumerate(test):
        start = time.perf_counter()
        net = make_net(pair)
        x = network_input(pair.lr, pair.hr.shape[:2], scale)
        box = crop_box(pair.hr.shape[:2], crop)
        out = run_net(net, x, box)
        seconds = time.perf_counter() - start
        result = aligned_scores(out, pair.hr[box], shave=math.ceil(scale))
        rows.append(
            {"pair": pair.key, "psnr": result.psnr, "ssim": result.ssim, "shift": result.shift}
        )
        rows[-1]["seconds"] = seconds
        if i == 0:
            keep[name] = out
    print(f"  {name}: {statistics.mean(r['psnr'] for r in rows):.2f} dB", file=sys.stderr)
    return {
        "psnr": statistics.mean(r["psnr"] for r in rows),
        "ssim": statistics.mean(r["ssim"] for r in rows),
        "images": rows,
    }


def write_figure(path: Path, keep: dict[str, np.ndarray], hr: np.ndarray, size: int) -> Path:
    """One row of labelled central crops (``size`` px, magnified x2): each kept output
    (float, [0, 1]), then the HR image (uint8); all of one shape."""
    from PIL import Image, ImageDraw

    h, w = hr.shape[:2]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    box = (slice(top, top + size), slice(left, left + size))
    tiles = []
    for label, image in [*keep.items(), ("HR", hr.astype(np.float32) / 255)]:
        u8 = np.rint(np.clip(image[box], 0, 1) * 255).astype(np.uint8)
        tile = Image.fromarray(u8).resize((2 * u8.shape[1], 2 * u8.shape[0]), Image.NEAREST)
        ImageDraw.Draw(tile).text((6, 4), label, fill=(255, 255, 0))
        tiles.append(tile)
    canvas = Image.new("RGB", (sum(t.width + 4 for t in tiles) - 4, tiles[0].height))
    x = 0
    for tile in tiles:
        canvas.paste(tile, (x, 0))
        x += tile.width + 4
    with atomic_path(path, overwrite=True) as tmp:
        canvas.save(tmp, format="PNG")
    return path


def target_lines(
    columns: dict[str, dict[str, Any]], zero_shot_label: str, most: int, fewest: int
) -> list[str]:
    """The issue's targets as lines: ``most``-shot DRTL (each variant) at least 1.0 dB
    above zero-shot MZSR and 0.3 dB above the fine-tune with the same pairs;
    ``fewest``-shot DRTL above zero-shot."""
    lines = []
    zs = columns[zero_shot_label]["psnr"]
    for variant in ("DRTL", "DRTL-meta"):
        label = f"{variant} {most}-shot"
        if label not in columns:
            continue
        value = columns[label]["psnr"]
        checks = [(zero_shot_label, zs, 1.0)]
        finetune = columns.get(f"fine-tune {most}-shot")
        if finetune is not None:
            checks.append((f"fine-tune {most}-shot", finetune["psnr"], 0.3))
        for other, reference, need in checks:
            margin = value - reference - need
            verdict = "met" if margin >= 0 else "missed"
            lines.append(
                f"- {label} >= {other} + {need:.1f} dB: {value:.2f} vs {reference:.2f}, "
                f"{verdict} (margin {margin:+.2f} dB)"
            )
        low = columns.get(f"{variant} {fewest}-shot")
        if low is not None and fewest != most:
            margin = low["psnr"] - zs
            verdict = "met" if margin > 0 else "missed"
            lines.append(
                f"- {variant} {fewest}-shot > {zero_shot_label}: {low['psnr']:.2f} vs {zs:.2f}, "
                f"{verdict} (margin {margin:+.2f} dB)"
            )
    return lines or ["- no DRTL column was run"]


def main(argv: list[str] | None = None) -> Path:
    """Command-line entry point; returns the path of the Markdown report."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--support", type=Path, required=True, help="folder of support pairs")
    parser.add_argument("--test", type=Path, required=True, help="folder of test pairs")
    parser.add_argument("--support-pairs", help='1-based positions, e.g. "1-5" (default all)')
    parser.add_argument("--test-pairs", help='1-based positions, e.g. "6-15" (default all)')
    parser.add_argument("--shots", default="1,3,5", help="numbers of support pairs")
    parser.add_argument(
        "--skip",
        nargs="+",
        default=[],
        metavar="METHOD=K",
        help='calibrations left out to save time, e.g. "drtl-meta=3" (reported as cut)',
    )
    parser.add_argument("--methods", nargs="+", default=list(CALIBRATIONS), choices=CALIBRATIONS)
    parser.add_argument("--model", default="direct-x2", help="starting theta_M")
    parser.add_argument("--zero-shot-steps", type=int, default=10)
    parser.add_argument("--steps", type=int, default=calibration.CalibrationOptions.steps)
    parser.add_argument("--lr", type=float, default=calibration.CalibrationOptions.lr)
    parser.add_argument("--external", type=Path, help="folder of external HR images")
    parser.add_argument("--external-count", type=int, default=0, help="external images used")
    parser.add_argument("--crop", type=int, default=512, help="central HR crop scored (0: all)")
    parser.add_argument(
        "--support-crop",
        type=int,
        default=0,
        help="calibrate on a central N x N px crop of each support LR image (0: whole pairs)",
    )
    parser.add_argument(
        "--max-misplacement",
        type=float,
        default=calibration.CalibrationOptions.max_error,
        help="registration tolerance of the support pairs, HR px (a small crop measures less well)",
    )
    parser.add_argument("--figure-size", type=int, default=160)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", help="output file stem (default: the support folder's name)")
    parser.add_argument("--save-profile", type=Path, help="write the last DRTL profile here")
    add_threads_option(parser)
    args = parser.parse_args(argv)
    apply_threads(args)
    shots = sorted({int(s) for s in args.shots.split(",")})
    skipped = set()
    for item in args.skip:
        method, _, k = item.partition("=")
        if method not in CALIBRATIONS or not k.isdigit():
            raise SystemExit(f"--skip takes METHOD=K with METHOD in {CALIBRATIONS}, got {item!r}")
        skipped.add((method, int(k)))

    support_all = select(find_pairs(args.support), args.support_pairs)
    test_all = select(find_pairs(args.test), args.test_pairs)
    if max(shots) > len(support_all):
        raise SystemExit(f"--shots {max(shots)} needs that many support pairs")
    support, test, scale, how = load_pairs(support_all, test_all)
    name = args.name or args.support.resolve().name
    base = load_model(args.model)
    external: list[np.ndarray] = []
    if args.external is not None and args.external_count > 0:
        paths = sorted(p for p in args.external.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        rng = np.random.default_rng(args.seed)
        for i in sorted(rng.choice(len(paths), min(args.external_count, len(paths)), False)):
            image = read_image(paths[i])
            external.append(np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image)
    if args.support_crop > 0:
        support = [central_crop(p, args.support_crop, scale) for p in support]
    options = calibration.CalibrationOptions(
        steps=args.steps, lr=args.lr, max_error=args.max_misplacement
    )
    degradation = "direct" if float(scale).is_integer() else "bicubic"
    print(f"{name}: scale {scale:.4f}, {len(support)} support, {len(test)} test", file=sys.stderr)

    columns: dict[str, dict[str, Any]] = {}
    keep: dict[str, np.ndarray] = {}
    calibrations: dict[str, dict[str, Any]] = {}
    columns["bicubic"] = score("bicubic", lambda p: None, test, scale, args.crop, keep)
    zs = f"MZSR({args.zero_shot_steps}) zero-shot"

    def adapted(pair: Pair) -> torch.nn.Module:
        return zero_shot(base, pair.lr, scale, args.zero_shot_steps, degradation)

    columns[zs] = score(zs, adapted, test, scale, args.crop, keep)
    profile: MZSRModel | None = None
    for k in shots:
        for method in args.methods:
            label = f"{LABELS[method]} {k}-shot"
            if (method, k) in skipped:
                continue
            print(f"{label} ...", file=sys.stderr)
            result = calibrate_profile(
                [(p.lr, p.hr) for p in support[:k]],
                scale,
                model=base,
                method=method,
                options=options,
                auxiliary_images=external,
                names=[p.key for p in support[:k]],
                name=f"{name}-{method}-{k}",
                seed=args.seed,
            )
            training = result.model.info.training
            calibrations[label] = {
                "seconds": result.seconds,
                "held_out_psnr": result.held_out,
                "relation_weights": training["relation_weights"],
                "pairs": [p["name"] for p in training["pairs"]],
            }
            net = result.model.network()
            show = k == max(shots) and method in ("finetune", "drtl")
            columns[label] = score(label, lambda p, n=net: n, test, scale, args.crop, keep)
            if not show:
                keep.pop(label, None)
            if method == "drtl":
                profile = result.model
    if profile is not None:
        label = f"DRTL {max(shots)}-shot + MZSR({args.zero_shot_steps})"

        def refined(pair: Pair) -> torch.nn.Module:
            return zero_shot(profile, pair.lr, scale, args.zero_shot_steps, degradation)

        columns[label] = score(label, refined, test, scale, args.crop, keep)
        keep.pop(label, None)
        if args.save_profile is not None:
            from napari_mzsr.io.model_file import save_model

            save_model(args.save_profile, profile.state_dict, profile.info, overwrite=True)

    device = torch.device("cpu")
    machine = machine_description(device)
    stem = f"few_shot_{name}_cpu"
    figure = write_figure(
        args.out / f"{stem}.png",
        keep,
        test[0].hr[crop_box(test[0].hr.shape[:2], args.crop)],
        args.figure_size,
    )
    header = ["method", "PSNR (dB)", "SSIM", "vs bicubic", "vs zero-shot", "calibration (s)"]
    rows = []
    for label, col in columns.items():
        seconds = calibrations.get(label, {}).get("seconds")
        rows.append(
            [
                label,
                fmt(col["psnr"]),
                fmt(col["ssim"], 4),
                f"{col['psnr'] - columns['bicubic']['psnr']:+.2f}",
                f"{col['psnr'] - columns[zs]['psnr']:+.2f}",
                fmt(seconds, 0),
            ]
        )
    scored = f"the central {args.crop} px" if args.crop else "the whole"
    targets = target_lines(columns, zs, max(shots), min(shots))
    cut = [f"{LABELS[m]} {k}-shot" for m, k in sorted(skipped) if k in shots and m in args.methods]
    cropped = ""
    if args.support_crop > 0:
        cropped = (
            f" (central {args.support_crop} x {args.support_crop} px crops of their LR images "
            f"and the HR crops they cover; registration tolerance {args.max_misplacement:g} px)"
        )
    markdown = [
        f"Support pairs: {', '.join(p.key for p in support)} of `{args.support}`{cropped}; "
        f"test pairs: {', '.join(p.key for p in test)} of `{args.test}`.",
        f"Scale {scale:.4f} ({how['method']}); starting theta_M `{args.model}`; "
        f"{args.steps} updates per calibration (lr {args.lr:g}); scored on "
        f"{scored} of each test HR image, Y, best integer shift within 1 px, "
        f"shave {math.ceil(scale)}.",
        "",
        *markdown_table(header, rows),
        *([f"Left out to save time: {', '.join(cut)}."] if cut else []),
        "",
        "Targets (mean PSNR over the test pairs; margin = measured minus required):",
        "",
        *targets,
        "",
        "Final relation weights (top 3) and held-back PSNR (bottom rows of the support "
        "pairs: bicubic / start / profile):",
        "",
        *markdown_table(
            ["calibration", "top auxiliary tasks", "held-back PSNR (dB)"],
            [
                [
                    label,
                    ", ".join(
                        f"{task} {w:.2f}"
                        for task, w in sorted(c["relation_weights"].items(), key=lambda t: -t[1])[
                            :3
                        ]
                    )
                    or "—",
                    " / ".join(
                        fmt(c["held_out_psnr"].get(k)) for k in ("bicubic", "base", "profile")
                    ),
                ]
                for label, c in calibrations.items()
            ],
        ),
        "",
        "Pairs as measured (the LR image on its native grid against the HR image: "
        "`napari_mzsr.core.pair_checks.measure_pair`; period: interpolation grid of the "
        "stored LR image, rows x columns):",
        "",
        *markdown_table(
            ["pair", "period", "shift (HR px)", "ratio", "misplacement (px)"],
            [
                [
                    key,
                    "x".join(f"{p:.3f}" for p in m["period"]) if m["period"] else "—",
                    f"({m['shift'][0]:+.2f}, {m['shift'][1]:+.2f})",
                    f"{m['ratio']:.3f}",
                    f"{m['misplacement']:.2f}",
                ]
                for key, m in how["pairs"].items()
            ],
        ),
        "",
        f"Machine: {machine['cpu']}, {machine['torch_threads']} torch thread(s), "
        f"load {machine.get('load_average_1min', '?')} (1 min) at the end.",
        f"Figure: `{figure.name}` (first test pair, central {args.figure_size} px, x2).",
    ]
    payload = {
        "scale": scale,
        "scale_measurement": how,
        "support": [p.key for p in support],
        "test": [p.key for p in test],
        "options": {k: getattr(options, k) for k in options.__dataclass_fields__},
        "left_out": cut,
        "model": args.model,
        "crop": args.crop,
        "columns": columns,
        "calibrations": calibrations,
        "machine": machine,
    }
    md, _ = write_results(
        args.out,
        stem,
        f"Few-shot calibration: {name}",
        command_line("benchmarks.few_shot", argv),
        markdown,
        payload,
    )
    return md


if __name__ == "__main__":
    main()
