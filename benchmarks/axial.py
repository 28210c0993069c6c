"""Isotropic Z: MZSR axial super-resolution of a synthetic anisotropic stack.

The ground truth is an isotropic volume: the rendered phantom of
:func:`benchmarks.axial_phantom.render_phantom` (filaments and blobs, an isotropic
Gaussian PSF of sigma 1 voxel, background 0.05, Gaussian noise 0.01; seeded), or any
isotropic volume given with ``--volume`` (.npy or .tif, (Z, Y, X), float in [0, 1] or
integers). For each factor ``f`` the truth is cropped to a multiple of ``f`` slices and
degraded along Z with a wider axial Gaussian (sigma ``--sigma-per-factor * f`` lateral
pixels on top of the PSF) and direct subsampling ``[0::f]``
(:func:`napari_mzsr.core.axial.degrade_axial`). Rows: linear and cubic (B-spline)
interpolation along Z at the output positions (input slice ``i`` at output ``i * f``),
MZSR axial (:func:`napari_mzsr.pipeline.axial.super_resolve_axial`) with the true and with the
estimated axial sigma. Metrics (paper protocol: uint8 rounding, shave ``f`` on every
border): PSNR and SSIM averaged over all XZ and all YZ planes, PSNR and 3-D SSIM of the
volume, and the PSNR of the output slices by their phase ``j mod f`` (equal phases: no
step artefact between slices). Time: a 64 x 256 x 256 output at factor 4 with the true
kernel. Writes ``<name>.md``/``.json`` and a PNG of one XZ plane (cubic, MZSR axial,
truth) at factor 4.

    python -m benchmarks.axial --threads 1 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from napari_mzsr.core.axial import axial_positions, degrade_axial
from napari_mzsr.core.axial_estimation import estimate_axial_sigma
from napari_mzsr.core.metrics import psnr, ssim
from napari_mzsr.pipeline.axial import super_resolve_axial
from napari_mzsr.pipeline.axial_options import DEFAULT_LR, DEFAULT_PATCH, DEFAULT_PATCHES

from .axial_phantom import render_phantom
from .machine import add_threads_option, apply_threads, machine_description
from .report import command_line, fmt, markdown_table, write_results

METHODS = ("linear", "cubic", "mzsr_true", "mzsr_estimated")
LABELS = {
    "linear": "linear along Z",
    "cubic": "cubic along Z",
    "mzsr_true": "MZSR axial, true sigma",
    "mzsr_estimated": "MZSR axial, estimated sigma",
}


def load_volume(path: Path | None, shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """The isotropic ground truth, float32 in [0, 1]."""
    if path is None:
        return render_phantom(shape, seed=seed)
    if path.suffix == ".npy":
        arr = np.load(path)
    else:
        import tifffile

        arr = tifffile.imread(path)
    if arr.ndim != 3:
        raise ValueError(f"--volume must be (Z, Y, X), got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.integer):
        return (arr / np.iinfo(arr.dtype).max).astype(np.float32)
    return np.clip(arr, 0, 1).astype(np.float32)


def interpolate_z(lr: np.ndarray, z_factor: float, length: int, order: int) -> np.ndarray:
    """Spline interpolation of order ``order`` along Z at the output positions
    (symmetric borders), float32."""
    positions = axial_positions(length, z_factor)
    flat = lr.reshape(lr.shape[0], -1).astype(np.float64)
    coords = np.stack(
        [np.repeat(positions, flat.shape[1]), np.tile(np.arange(flat.shape[1]), length)]
    )
    out = ndimage.map_coordinates(flat, coords, order=order, mode="reflect")
    return out.reshape(length, *lr.shape[1:]).astype(np.float32)


def measure(out: np.ndarray, truth: np.ndarray, shave: int) -> dict[str, float | list[float]]:
    """PSNR/SSIM over XZ and YZ planes and the volume; PSNR by output slice phase."""
    from skimage.metrics import structural_similarity

    inner = (slice(shave, -shave),) * 3 if shave else (slice(None),) * 3
    o, t = out[inner], truth[inner]
    to_u8 = lambda a: np.rint(np.clip(a, 0, 1) * 255).astype(np.uint8)  # noqa: E731
    o8, t8 = to_u8(o), to_u8(t)
    xz = [(psnr(o8[:, y], t8[:, y]), ssim(o8[:, y], t8[:, y])) for y in range(o8.shape[1])]
    yz = [
        (psnr(o8[:, :, x], t8[:, :, x]), ssim(o8[:, :, x], t8[:, :, x])) for x in range(o8.shape[2])
    ]
    flat = lambda a: a.reshape(-1, a.shape[-1])  # noqa: E731
    volume_ssim = structural_similarity(
        o8.astype(np.float64),
        t8.astype(np.float64),
        data_range=255,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    phase = []
    factor = max(1, shave)
    for p in range(factor):
        # Output slice j of the cropped volume is slice j + shave of the whole one.
        picks = [j for j in range(o8.shape[0]) if (j + shave) % factor == p]
        phase.append(psnr(flat(o8[picks]), flat(t8[picks])))
    # Slice-to-slice change by phase, against the truth's: a step artefact between output
    # slices shows as one phase changing much more (or less) than the truth does.
    steps = []
    for p in range(factor):
        picks = [j for j in range(o.shape[0] - 1) if (j + shave) % factor == p]
        change = np.mean(np.abs(o[picks + np.int64(1)] - o[picks])) if picks else np.nan
        steps.append(float(change / np.mean(np.abs(t[picks + np.int64(1)] - t[picks]))))
    return {
        "step_ratio_by_phase": steps,
        "psnr_xz": float(np.mean([v[0] for v in xz])),
        "ssim_xz": float(np.mean([v[1] for v in xz])),
        "psnr_yz": float(np.mean([v[0] for v in yz])),
        "ssim_yz": float(np.mean([v[1] for v in yz])),
        "psnr_volume": psnr(flat(o8), flat(t8)),
        "ssim_volume": float(volume_ssim),
        "psnr_by_phase": phase,
    }


def run_mzsr(lr: np.ndarray, factor: int, kernel: object, args: argparse.Namespace) -> np.ndarray:
    return super_resolve_axial(
        lr,
        z_factor=factor,
        kernel=kernel,
        steps=args.steps,
        model=args.model,
        device=args.device,
        seed=args.seed,
        optimizer=args.optimizer,
        lr=args.lr,
        adapt_patch=args.patch,
        adapt_patches=args.patches,
        max_step=args.max_step,
        precision="float32",
    )


def xz_figure(planes: Sequence[np.ndarray], labels: Sequence[str], path: Path) -> None:
    """The planes stacked vertically, each labelled, upscaled 2x (nearest)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=12)
    rows = []
    for plane, label in zip(planes, labels, strict=True):
        u8 = np.rint(np.clip(plane / max(float(planes[-1].max()), 1e-6), 0, 1) * 255)
        img = Image.fromarray(u8.astype(np.uint8)).resize(
            (plane.shape[1] * 2, plane.shape[0] * 2), Image.NEAREST
        )
        canvas = Image.new("L", (img.width, img.height + 16), 0)
        canvas.paste(img, (0, 16))
        ImageDraw.Draw(canvas).text((3, 1), label, fill=255, font=font)
        rows.append(np.asarray(canvas))
    from napari_mzsr.io.atomic import atomic_path

    with atomic_path(path, overwrite=True) as tmp:
        Image.fromarray(np.concatenate(rows, axis=0)).save(tmp, format="PNG")


def timing(args: argparse.Namespace, truth: np.ndarray) -> dict[str, object]:
    """Seconds for a 64 x 256 x 256 output at factor 4, true kernel (crop of the truth,
    tiled if the truth is smaller)."""
    target = (64, 256, 256)
    reps = [-(-t // s) for t, s in zip(target, truth.shape, strict=True)]
    volume = np.tile(truth, reps)[: target[0], : target[1], : target[2]]
    lr = degrade_axial(volume, args.sigma_per_factor * 4, 4).astype(np.float32)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    phases: dict[str, float] = {}
    last = {"t": start}

    def progress(report: object) -> None:
        now = time.perf_counter()
        phases[report.phase] = phases.get(report.phase, 0.0) + now - last["t"]
        last["t"] = now

    super_resolve_axial(
        lr, z_factor=4, kernel=args.sigma_per_factor * 4, steps=args.steps, model=args.model,
        device=args.device, seed=args.seed, optimizer=args.optimizer, lr=args.lr,
        adapt_patch=args.patch,
        adapt_patches=args.patches, max_step=args.max_step, precision="float32",
        progress=progress,
    )  # fmt: skip
    total = time.perf_counter() - start
    return {
        "input_shape": list(lr.shape),
        "output_shape": list(target),
        "seconds": total,
        "seconds_adapt": phases.get("adapt", 0.0),
        "seconds_apply": phases.get("apply", 0.0),
        "load_1min_before": load_before,
        "load_1min_after": os.getloadavg()[0],
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--volume", type=Path, help="isotropic ground truth (.npy/.tif)")
    parser.add_argument("--shape", default="72x256x256", help="phantom shape ZxYxX")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--factors", type=int, nargs="+", default=[3, 4, 6])
    parser.add_argument("--sigma-per-factor", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    parser.add_argument(
        "--lr", type=float, help=f"default: {DEFAULT_LR} for Adam, the model's schedule for SGD"
    )
    parser.add_argument(
        "--methods", nargs="+", choices=METHODS, default=list(METHODS), help="rows to run"
    )
    parser.add_argument("--patch", type=int, default=DEFAULT_PATCH)
    parser.add_argument("--patches", type=int, default=DEFAULT_PATCHES)
    parser.add_argument("--max-step", type=float, default=6.0)
    parser.add_argument("--model", default="direct-x2-gray")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument(
        "--timing-only", action="store_true", help="only the 64 x 256 x 256 timing (no table)"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default="axial_cpu")
    add_threads_option(parser)
    args = parser.parse_args(argv)
    apply_threads(args)
    import torch

    shape = tuple(int(s) for s in args.shape.split("x"))
    truth_full = load_volume(args.volume, shape, args.seed)
    results: dict[str, dict[str, object]] = {}
    figure: tuple[int, list[np.ndarray]] | None = None
    timing_result = None
    command = command_line("benchmarks.axial", argv)

    def report() -> None:
        # Written after every factor too, so that a killed run leaves what it measured.
        md = _markdown(args, results, timing_result, torch.device(args.device))
        png = args.out / f"{args.name}_xz.png"
        if figure is not None:
            factor, planes = figure
            labels = [
                f"input as acquired, x{factor} coarser along Z (each slice shown {factor} times)",
                f"cubic along Z, x{factor}",
                f"MZSR axial, x{factor}, true sigma",
                "ground truth (isotropic)",
            ]
            xz_figure(planes, labels, png)
            md += ["", f"![XZ plane at x{factor}]({png.name})"]
        payload = {
            "machine": machine_description(torch.device(args.device)),
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "factors": results,
            "timing_64x256x256": timing_result,
        }
        title = "MZSR axial (isotropic Z) on a synthetic stack"
        write_results(args.out, args.name, title, command, md, payload)

    for factor in [] if args.timing_only else args.factors:
        truth = truth_full[: truth_full.shape[0] // factor * factor]
        sigma = args.sigma_per_factor * factor
        lr = degrade_axial(truth, sigma, factor).astype(np.float32)
        t0 = time.perf_counter()
        estimate = estimate_axial_sigma(lr, factor)
        estimate_seconds = time.perf_counter() - t0
        outputs, seconds = {}, {}
        methods = [m for m in METHODS if m in args.methods or m == "cubic"]
        for method in methods:
            t0 = time.perf_counter()
            if method == "linear":
                outputs[method] = interpolate_z(lr, factor, truth.shape[0], 1)
            elif method == "cubic":
                outputs[method] = interpolate_z(lr, factor, truth.shape[0], 3)
            else:
                kernel = sigma if method == "mzsr_true" else estimate.sigma
                outputs[method] = run_mzsr(lr, factor, kernel, args)
            seconds[method] = time.perf_counter() - t0
            print(f"x{factor} {method}: {seconds[method]:.1f} s", flush=True)
        scores = {m: measure(outputs[m], truth, factor) for m in methods}
        for m in methods:
            scores[m]["seconds"] = seconds[m]
        results[str(factor)] = {
            "sigma": sigma,
            "sigma_estimated": estimate.sigma,
            "estimate_residual": estimate.residual,
            "estimate_seconds": estimate_seconds,
            "input_shape": list(lr.shape),
            "output_shape": list(truth.shape),
            "methods": scores,
        }
        print(factor, {m: round(scores[m]["psnr_volume"], 2) for m in methods}, flush=True)
        if "mzsr_true" in outputs and (factor == 4 or figure is None):
            y = truth.shape[1] // 2
            acquired = np.repeat(lr[:, y], factor, axis=0)[: truth.shape[0]]
            planes = [acquired, outputs["cubic"][:, y], outputs["mzsr_true"][:, y], truth[:, y]]
            figure = (factor, planes)
        report()
    if not args.no_timing:
        timing_result = timing(args, truth_full)
    report()
    return 0


def _markdown(
    args: argparse.Namespace,
    results: dict[str, dict[str, object]],
    timing_result: dict[str, object] | None,
    device: object,
) -> list[str]:
    machine = machine_description(device)
    lines = [
        f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}, "
        f"{machine['torch_threads']} thread(s), device {machine['device']}.",
        "",
        "Ground truth: "
        + (
            f"`{args.volume}`"
            if args.volume
            else f"rendered phantom {args.shape} (filaments and blobs, isotropic Gaussian PSF "
            "sigma 1 voxel, background 0.05, Gaussian noise sigma 0.01; seed "
            f"{args.seed})"
        )
        + f". Degradation: axial Gaussian sigma = {args.sigma_per_factor} x factor "
        "(lateral pixels, on top of the PSF), then `[0::f]` along Z. MZSR axial "
        f"(gradual stages up to x{args.max_step:g}): "
        f"`{args.model}`, {args.optimizer} lr {args.lr or 'default'}, {args.steps} steps of "
        f"{args.patches} "
        f"patches of {args.patch} px, both lateral axes as Z; XZ and YZ planes averaged.",
        "PSNR/SSIM: uint8, shave f on every border; planes: mean over all XZ (YZ) planes; "
        "volume: PSNR of all voxels, 3-D SSIM (Gaussian window sigma 1.5).",
        "",
    ]
    header = ["factor", "method", "PSNR XZ", "PSNR YZ", "PSNR vol", "SSIM XZ", "SSIM YZ",
              "SSIM vol", "vs cubic (vol)", "s"]  # fmt: skip
    rows = []
    for factor, res in results.items():
        methods = res["methods"]
        cubic = methods["cubic"]["psnr_volume"]
        for m in [m for m in METHODS if m in methods]:
            s = methods[m]
            rows.append(
                [f"x{factor}", LABELS[m], fmt(s["psnr_xz"]), fmt(s["psnr_yz"]),
                 fmt(s["psnr_volume"]), fmt(s["ssim_xz"], 4), fmt(s["ssim_yz"], 4),
                 fmt(s["ssim_volume"], 4), f"{s['psnr_volume'] - cubic:+.2f}",
                 fmt(s["seconds"], 1)]
            )  # fmt: skip
    lines += markdown_table(header, rows)
    lines += ["", "Axial kernel estimate (from the degraded stack's side planes):", ""]
    lines += markdown_table(
        ["factor", "true sigma", "estimated", "error", "residual", "s"],
        [
            [f"x{f}", fmt(r["sigma"]), fmt(r["sigma_estimated"]),
             f"{(r['sigma_estimated'] / r['sigma'] - 1) * 100:+.1f}%",
             fmt(r["estimate_residual"], 3), fmt(r["estimate_seconds"], 2)]
            for f, r in results.items()
        ],
    )  # fmt: skip
    lines += ["", "Volume PSNR by output slice phase (j mod f; j = 0: slices of the input):", ""]
    phase_rows = []
    for factor, res in results.items():
        for m in [m for m in ("cubic", "mzsr_true") if m in res["methods"]]:
            phases = res["methods"][m]["psnr_by_phase"]
            phase_rows.append(
                [f"x{factor}", LABELS[m], " / ".join(fmt(p) for p in phases),
                 fmt(max(phases) - min(phases))]
            )  # fmt: skip
    lines += markdown_table(["factor", "method", "PSNR by phase", "spread"], phase_rows)
    lines += [
        "",
        "Step artefacts: mean |slice j+1 - slice j| by phase j mod f, divided by the same for "
        "the truth (1 everywhere: changes between slices as in the truth; a step shows as one "
        "phase far from the others):",
        "",
    ]
    step_rows = []
    for factor, res in results.items():
        for m in [m for m in ("linear", "cubic", "mzsr_true") if m in res["methods"]]:
            ratios = res["methods"][m]["step_ratio_by_phase"]
            step_rows.append(
                [f"x{factor}", LABELS[m], " / ".join(fmt(r) for r in ratios),
                 fmt(max(ratios) / min(ratios) if min(ratios) > 0 else float("inf"))]
            )  # fmt: skip
    lines += markdown_table(["factor", "method", "ratio by phase", "max / min"], step_rows)
    if timing_result:
        t = timing_result
        lines += [
            "",
            f"Time for a 64 x 256 x 256 output at x4 (input {t['input_shape']}), true kernel: "
            f"{t['seconds']:.1f} s ({t['seconds_adapt']:.1f} s adaptation, "
            f"{t['seconds_apply']:.1f} s inference), load average {t['load_1min_before']:.2f} "
            f"before, {t['load_1min_after']:.2f} after (other jobs share the 2 cores).",
        ]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
