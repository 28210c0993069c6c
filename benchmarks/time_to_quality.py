"""Time to quality: PSNR against wall time of MZSR and ZSSR, and today's main, in one run.

For Set5 and Set14 (x2, g^d_2.0) and three larger inputs (256 x 256, 512 x 512 and
1024 x 1024 RGB, degraded from mosaics of 512 x 512 blocks of the ``--large`` photos):

* MZSR with 0 to 20 steps, adapting as ``adapt_patch="auto"`` chooses and on the whole
  image. Each image is adapted once for 20 steps while the benchmark reads the network
  after every step; the result of an n-step run is exact (the first n steps of a longer
  run are an n-step run, and the check an n-step run ends with is the one step n + 1
  starts with), and its time is the time to step n plus one forward pass of that
  check, plus the measured inference of that result.
* ZSSR (:mod:`benchmarks.zssr`) read after 10, 30, 100 and 300 iterations of one run
  (its learning-rate policy looks only backwards), each with its full 8-way inference.
* MZSR(10) of an older checkout (``--base``, e.g. the commit before the redesign) and of
  this tree, each ``super_resolve`` call in a fresh process
  (:mod:`benchmarks.timing_worker`), alternating old and new so that both share the
  same load.
* The FLOPs of one adaptation step and of one inference (counted by
  ``torch.utils.flop_counter``) against their measured time and this CPU's peak
  (a large matmul and a large convolution).

    python -m benchmarks.time_to_quality --set5 ../shared/data/bench/Set5 \\
        --set14 ../shared/data/bench/Set14 --large ../shared/data/real/City100_NikonD5500 \\
        --base ../wt/base22 --threads 2 --out benchmarks/results

Writes ``time_to_quality.md``, ``.json`` and ``.png`` (PSNR against seconds per image).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from napari_mzsr.core.adaptation import StepReport, infer, prepare, prepare_net, son_loss
from napari_mzsr.core.devices import memory_format, physical_cores, resolve_precision
from napari_mzsr.core.metrics import psnr
from napari_mzsr.io.atomic import atomic_path
from napari_mzsr.io.model_file import MZSRModel, load_model
from napari_mzsr.pipeline.adapted import AdaptedModel
from napari_mzsr.pipeline.images import ImageData, image_data
from napari_mzsr.pipeline.options import AdaptOptions, ApplyOptions
from napari_mzsr.pipeline.run import adapt_image

from .lr_inputs import SETTINGS, Setting, hr_and_lr, load_hr_images, read_image
from .machine import machine_description, median_seconds
from .report import command_line, fmt, markdown_table, write_results
from .zssr import ZSSRConfig, ZSSRNet, train_zssr, zssr_infer

SETTING = SETTINGS["g^d_2.0"]
MZSR_STEPS = (0, 1, 2, 3, 5, 10, 15, 20)
ZSSR_ITERATIONS = (10, 30, 100, 300)
BLOCK = 512
# LR side -> HR mosaic of BLOCK x BLOCK photo blocks (HR side = 2 x LR side).
LARGE_SIDES = (256, 512, 1024)
HEAD_TO_HEAD_SIDES = (256, 512)
HEADLINE_STEPS = 10
REPO_ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "timing_worker.py"


class WatchedModel(MZSRModel):
    """theta_M that remembers the network it last made, so that the benchmark can read
    the weights the pipeline adapts between steps."""

    def network(
        self, device: torch.device | str = "cpu", scale: float | tuple[float, float] | None = None
    ) -> torch.nn.Module:
        self.net = super().network(device, scale)
        return self.net


def _weights(net: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def n_step_weights(
    initial: list[torch.Tensor],
    after: list[list[torch.Tensor]],
    reports: list[StepReport],
    final: list[torch.Tensor],
    n: int,
    same_pixels: bool,
) -> list[torch.Tensor]:
    """The weights an n-step run ends with, read from one longer run.

    Parameters
    ----------
    initial : weights before the first step (theta_M).
    after : weights after each report of the longer run (``after[k]`` after report k).
    reports : the longer run's reports.
    final : weights the longer run returned (after its own final check).
    n : steps of the run to reconstruct.
    same_pixels : whether every step saw the same pixels (whole image): then step k + 1
        starts by checking step k, which an n-step run does at its end instead; with
        patches drawn per step, each step checks itself.
    """
    if n == 0:
        return initial
    if n >= len(reports):
        # The longer run stopped (or planned no more steps): an n-step run ends the same.
        return final
    if same_pixels and not reports[n].accepted:
        # Report n undid step n - 1, as the n-step run's final check would have.
        return after[n]
    return after[n - 1]


def _load_weights(net: torch.nn.Module, weights: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for p, w in zip(net.parameters(), weights, strict=True):
            p.copy_(w)


def _model_for(lr: np.ndarray) -> str:
    return "direct-x2" if lr.ndim == 3 else "direct-x2-gray"


@dataclass
class WatchedRun:
    """One adaptation run, read after every step (see :func:`watched_run`)."""

    options: AdaptOptions
    patch: tuple[int, int] | None
    initial: list[torch.Tensor]
    reports: list[StepReport]
    after: list[list[torch.Tensor]]
    times: list[float]
    adapted: AdaptedModel
    final: list[torch.Tensor]

    @property
    def same_pixels(self) -> bool:
        return self.patch is None

    def weights(self, n: int) -> list[torch.Tensor]:
        """The weights an ``n``-step run ends with."""
        return n_step_weights(
            self.initial, self.after, self.reports, self.final, n, self.same_pixels
        )


def watched_run(data: ImageData, options: AdaptOptions) -> WatchedRun:
    """Adapt with the pipeline (:func:`~napari_mzsr.pipeline.run.adapt_image`), keeping
    the weights and the time (from the call) after every step."""
    watched = WatchedModel(options.model.info, options.model.state_dict, options.model.source)
    options = replace(options, model=watched)
    initial = _weights(options.model.network())
    start = time.perf_counter()
    run = adapt_image(data, options)
    reports, after, times = [], [], []
    try:
        while True:
            reports.append(next(run))
            times.append(time.perf_counter() - start)
            after.append(_weights(watched.net))
    except StopIteration as done:
        adapted = done.value
    patch = options.patch_size(data.shape)
    return WatchedRun(
        options, patch, initial, reports, after, times, adapted, _weights(adapted.net)
    )


def mzsr_curve(
    lr: np.ndarray,
    hr: np.ndarray,
    model: MZSRModel,
    patches: bool,
    precision: str,
    step_counts: Sequence[int] = MZSR_STEPS,
    *,
    setting: Setting = SETTING,
    ensembles: Sequence[str | None] = (None,),
    back_projections: Sequence[int] = (0,),
) -> dict[str, Any]:
    """PSNR and seconds of MZSR with each of ``step_counts`` steps on one image, inferred
    with each of ``ensembles`` (None: once; "mean": the geometric self-ensemble) and then
    each of ``back_projections`` iterations of back-projection (0: none)."""
    data = image_data(lr)
    options = AdaptOptions(
        scale=setting.scale,
        kernel=setting.kernel,
        steps=max(step_counts),
        model=model,
        device="cpu",
        precision=precision,
        normalization=data.intensity,
        adapt_patch="auto" if patches else None,
    )
    setup_s = _setup_seconds(lr, options)
    run = watched_run(data, options)
    net = run.adapted.net
    check_s = 0.0
    if run.same_pixels:
        # The forward pass an n-step run ends with, checking its last step.
        batch = prepare(torch.rand(1, model.info.channels, *data.shape), training=True)
        prepare_net(net, training=True)
        check_s = median_seconds(lambda: son_loss(net, batch, batch, run.options.autocast_dtype))
    points = []
    for n in step_counts:
        _load_weights(net, run.weights(n))
        for ensemble, iterations in itertools.product(ensembles, back_projections):
            begin = time.perf_counter()
            apply = ApplyOptions(np.uint8, ensemble=ensemble, back_projection=iterations)
            sr = run.adapted.render(data, apply)
            infer_s = time.perf_counter() - begin
            adapt_s = setup_s if n == 0 else run.times[min(n, len(run.times)) - 1] + check_s
            point = dict(
                steps=n,
                adapt_s=adapt_s,
                infer_s=infer_s,
                seconds=adapt_s + infer_s,
                psnr=psnr(sr, hr, shave=setting.shave),
            )
            if ensemble is not None:
                point["ensemble"] = ensemble
            if iterations:
                point["back_projection"] = iterations
            points.append(point)
    accepted = [r.accepted for r in run.reports]
    return {
        "patch": run.patch,
        "patches": options.adapt_patches,
        "accepted": accepted,
        "steps_taken": run.adapted.steps_taken,
        "points": points,
    }


def _setup_seconds(lr: np.ndarray, options: AdaptOptions) -> float:
    """Seconds of a 0-step adaptation (checks, intensity map, network, batch)."""

    def zero_steps() -> None:
        data = image_data(lr)
        run = adapt_image(data, replace(options, steps=0, normalization=data.intensity))
        for _ in run:
            pass

    return median_seconds(zero_steps)


def zssr_curve(
    lr: np.ndarray,
    hr: np.ndarray,
    counts: Sequence[int] = ZSSR_ITERATIONS,
    seed: int = 0,
    *,
    setting: Setting = SETTING,
    refinements: Sequence[bool] = (True,),
) -> dict[str, Any]:
    """PSNR and seconds of ZSSR after each of ``counts`` iterations of one run, inferred
    with its refinements (8-way ensemble and back-projection, True) and/or without."""
    unit = torch.from_numpy(lr.astype(np.float32) / 255.0)
    x = unit[None, None] if unit.ndim == 2 else unit.permute(2, 0, 1)[None].contiguous()
    kernel = torch.from_numpy(setting.kernel.astype(np.float32))
    config = ZSSRConfig(max_iters=max(counts), seed=seed)
    snapshots: dict[int, tuple[float, dict]] = {}

    def watch(net: ZSSRNet, stats) -> None:
        if stats.iterations in counts:
            state = {k: v.clone() for k, v in net.state_dict().items()}
            snapshots[stats.iterations] = (stats.train_s + stats.test_s, state)

    start = time.perf_counter()
    net, stats = train_zssr(x, kernel, setting.scale, setting.method, config, on_iteration=watch)
    # What the policy did before training stopped, per snapshot.
    overhead = time.perf_counter() - start - stats.train_s - stats.test_s
    points = []
    for iterations in counts:
        train_s, state = snapshots.get(iterations, (stats.train_s + stats.test_s, None))
        if state is not None:
            net.load_state_dict(state)
        for refined in refinements:
            plain = replace(config, ensemble=refined, back_projection_iters=10 if refined else 0)
            begin = time.perf_counter()
            sr = zssr_infer(net, x, kernel, setting.scale, setting.method, plain)[0]
            infer_s = time.perf_counter() - begin
            sr = sr[0] if lr.ndim == 2 else sr.permute(1, 2, 0)
            sr = np.rint(sr.numpy() * 255.0).astype(np.uint8)
            point = dict(
                iterations=min(iterations, stats.iterations),
                train_s=train_s,
                infer_s=infer_s,
                seconds=train_s + infer_s,
                psnr=psnr(sr, hr, shave=setting.shave),
            )
            if len(refinements) > 1:
                point["refinements"] = refined
            points.append(point)
    return {"points": points, "untimed_overhead_s": overhead}


def mosaic(photos: Sequence[np.ndarray], side: int) -> np.ndarray:
    """A ``side`` x ``side`` RGB image of :data:`BLOCK`-pixel blocks cut from ``photos``
    in order (row by row from each photo)."""
    blocks = []
    for photo in photos:
        for y in range(0, photo.shape[0] - BLOCK + 1, BLOCK):
            for x in range(0, photo.shape[1] - BLOCK + 1, BLOCK):
                blocks.append(photo[y : y + BLOCK, x : x + BLOCK])
    per_side = -(-side // BLOCK)
    if len(blocks) < per_side**2:
        raise ValueError(
            f"--large has {len(blocks)} blocks of {BLOCK} px; {side} px needs {per_side**2}"
        )
    rows = [
        np.concatenate(blocks[r * per_side : (r + 1) * per_side], axis=1) for r in range(per_side)
    ]
    return np.concatenate(rows, axis=0)[:side, :side]


def image_groups(args: argparse.Namespace) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Group name -> image name -> (HR, LR)."""
    groups: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for name, folder in (("Set5", args.set5), ("Set14", args.set14)):
        if folder is not None:
            images = load_hr_images(folder, args.limit)
            groups[name] = {stem: hr_and_lr(hr, SETTING) for stem, hr in images.items()}
    if args.large is not None:
        paths = sorted(p for p in args.large.iterdir() if p.stem.endswith("H"))
        photos = [read_image(p) for p in paths]
        photos = [p for p in photos if p.ndim == 3]
        for side in args.sides:
            hr = mosaic(photos, 2 * side)
            groups[f"{side}x{side}"] = {f"mosaic{side}": hr_and_lr(hr, SETTING)}
    return groups


def head_to_head(
    args: argparse.Namespace, inputs: dict[int, tuple[np.ndarray, np.ndarray]], folder: Path
) -> list[dict[str, Any]]:
    """MZSR(10) of ``--base`` and of this tree in fresh processes, alternating."""
    trees = {"new": REPO_ROOT / "src", "old": args.base / "src"}
    paths = {}
    for side, (hr, lr) in inputs.items():
        paths[side] = folder / f"input{side}.npz"
        np.savez(paths[side], lr=lr, hr=hr)
    rows = []
    for repeat in range(args.repeats):
        for side in inputs:
            for label in ("old", "new") if repeat % 2 == 0 else ("new", "old"):
                env = dict(os.environ, PYTHONPATH=str(trees[label]))
                cmd = [
                    sys.executable,
                    str(WORKER),
                    str(paths[side]),
                    "--steps",
                    str(HEADLINE_STEPS),
                ]
                cmd += ["--threads", str(args.threads)]
                done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
                if done.returncode != 0:
                    raise RuntimeError(f"{label} worker failed: {done.stderr[-500:]}")
                row = dict(json.loads(done.stdout.strip().splitlines()[-1]), tree=label, side=side)
                row["repeat"] = repeat
                rows.append(row)
                print(row, flush=True)
    return rows


def peak_gflops(size: int = 4096) -> dict[str, float]:
    """This CPU's float32 GFLOP/s on a ``size`` matmul and on a 64 -> 64 3x3
    convolution of ``size / 8`` pixels a side (channels-last, its fastest layout)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    matmul = 2 * size**3 / median_seconds(lambda: a @ b) / 1e9
    side = size // 8
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(1, 64, side, side).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        conv(x)
        seconds = median_seconds(lambda: conv(x))
    return {"matmul": matmul, "conv": 2 * 9 * 64 * 64 * side * side / seconds / 1e9}


def flops_and_speed(model: MZSRModel, side: int, patch: tuple[int, int] | None, count: int) -> dict:
    """FLOPs (counted) and measured seconds of one adaptation step (on a whole
    ``side`` x ``side`` image or ``count`` patches) and of one inference of it."""
    net = model.network()
    channels = model.info.channels
    image = torch.rand(1, channels, side, side)
    batch = image if patch is None else torch.rand(count, channels, *patch)
    params = list(net.parameters())

    def step() -> None:
        x = prepare(batch, training=True)
        loss = (net(x) - x).abs().mean()
        torch.autograd.grad(loss, params)

    prepare_net(net, training=True)
    with FlopCounterMode(display=False) as counter:
        step()
    step_flops = counter.get_total_flops()
    step_s = median_seconds(step)
    with FlopCounterMode(display=False) as counter:
        infer(net, image, SETTING.scale)
    infer_flops = counter.get_total_flops()
    infer_s = median_seconds(lambda: infer(net, image, SETTING.scale))
    return {
        "side": side,
        "patch": patch,
        "count": count if patch else 1,
        "step_gflop": step_flops / 1e9,
        "step_s": step_s,
        "step_layout": str(memory_format(torch.device("cpu"), training=True)),
        "infer_gflop": infer_flops / 1e9,
        "infer_s": infer_s,
    }


def _mean_curve(records: list[dict], key: str, x_key: str) -> list[dict[str, float]]:
    """Mean PSNR and mean seconds per image at each point of the curves ``key``."""
    curves = [r[key]["points"] for r in records if r.get(key)]
    out = []
    for i, point in enumerate(curves[0]):
        out.append(
            {
                x_key: point[x_key],
                "psnr": float(np.mean([c[i]["psnr"] for c in curves])),
                "seconds": float(np.mean([c[i]["seconds"] for c in curves])),
            }
        )
    return out


def zssr_time_to(psnr_target: float, curve: list[dict[str, float]]) -> float | None:
    """Seconds ZSSR's mean curve needs to reach ``psnr_target`` (linear between its
    points in log time), None if it never does."""
    previous = None
    for point in curve:
        if point["psnr"] >= psnr_target:
            if previous is None:
                return point["seconds"]
            f = (psnr_target - previous["psnr"]) / (point["psnr"] - previous["psnr"])
            log_t = np.log(previous["seconds"]) + f * (
                np.log(point["seconds"]) - np.log(previous["seconds"])
            )
            return float(np.exp(log_t))
        previous = point
    return None


def plot(summary: dict[str, dict], old: dict[int, dict], path: Path) -> None:
    """One panel per group: mean PSNR against mean seconds per image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    names = list(summary)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        group = summary[name]
        styles = [
            ("mzsr_auto", "MZSR, patches (auto)", "o-"),
            ("mzsr_whole", "MZSR, whole image", "s--"),
            ("zssr", "ZSSR", "^-"),
        ]
        if group.get("zssr_subset"):
            images = ", ".join(group["zssr_images"])
            styles[2] = ("zssr", f"ZSSR ({images})", "^-")
            styles.append(("mzsr_auto_zssr_images", f"MZSR, patches ({images})", "o:"))
        for key, label, style in styles:
            curve = group.get(key)
            if not curve:
                continue
            x_key = "iterations" if key == "zssr" else "steps"
            curve = [p for p in curve if not (key != "zssr" and p[x_key] == 0)]
            ax.plot(
                [p["seconds"] for p in curve], [p["psnr"] for p in curve], style, ms=4, label=label
            )
            for p in curve:
                if p[x_key] in (1, 10, 20, 30, 300):
                    ax.annotate(
                        str(p[x_key]),
                        (p["seconds"], p["psnr"]),
                        fontsize=7,
                        textcoords="offset points",
                        xytext=(3, -9),
                    )
        side = group.get("side")
        if side in old:
            ax.plot(
                [old[side]["seconds"]],
                [old[side]["psnr"]],
                "k*",
                ms=10,
                label="MZSR(10), today's main",
            )
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("seconds per image (adaptation + inference)")
        ax.set_ylabel("PSNR (dB, Y)")
        ax.set_title(f"{name}, x2, g^d_2.0")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> Path:
    """Command-line entry point; returns the Markdown path."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set5", type=Path, help="folder of the Set5 HR images")
    parser.add_argument("--set14", type=Path, help="folder of the Set14 HR images")
    parser.add_argument("--large", type=Path, help="folder of HR photos (*H.png) for the mosaics")
    parser.add_argument("--sides", type=int, nargs="+", default=list(LARGE_SIDES))
    parser.add_argument(
        "--large-steps", type=int, nargs="+", default=list(MZSR_STEPS),
        help="MZSR step counts read on the mosaics (each read costs one inference)",
    )  # fmt: skip
    parser.add_argument(
        "--head-to-head-sides", type=int, nargs="+", default=list(HEAD_TO_HEAD_SIDES),
        help="mosaic sides of the MZSR(10) comparison with --base",
    )  # fmt: skip
    parser.add_argument(
        "--zssr-max-pixels", type=int,
        help="ZSSR only on LR images of at most this many pixels (default: every image)",
    )  # fmt: skip
    parser.add_argument("--preview-side", type=int, default=160, help="0: no preview timing")
    parser.add_argument("--base", type=Path, help="older checkout to time MZSR(10) against")
    parser.add_argument("--repeats", type=int, default=3, help="old/new pairs per input")
    parser.add_argument("--limit", type=int, help="first N images of each set")
    parser.add_argument("--no-zssr", action="store_true")
    parser.add_argument(
        "--zssr-iterations", type=int, nargs="+", default=list(ZSSR_ITERATIONS),
        help="iteration counts ZSSR is read at (one run of the largest)",
    )  # fmt: skip
    parser.add_argument(
        "--speed-sides",
        type=int,
        nargs="+",
        default=[256, 512],
        help="image sides of the FLOP/time measurements",
    )
    parser.add_argument("--peak-size", type=int, default=4096, help="matmul side of the peak")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default="time_to_quality")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.time()
    load_start = os.getloadavg()

    groups = image_groups(args)
    models = {name: load_model(name) for name in ("direct-x2", "direct-x2-gray")}
    old_rows: list[dict] = []
    if args.base is not None:
        inputs = {
            s: groups[f"{s}x{s}"][f"mosaic{s}"]
            for s in args.head_to_head_sides
            if f"{s}x{s}" in groups
        }
        with tempfile.TemporaryDirectory() as folder:
            old_rows = head_to_head(args, inputs, Path(folder))

    peak = peak_gflops(args.peak_size)
    auto = AdaptOptions(kernel=SETTING.kernel, device="cpu")
    speed = []
    for side in args.speed_sides:
        speed.append(flops_and_speed(models["direct-x2"], side, None, 1))
        patch = auto.patch_size((side, side))
        if patch is not None:
            speed.append(flops_and_speed(models["direct-x2"], side, patch, auto.adapt_patches))

    preview = None
    if args.preview_side:
        pool = [lr for images in groups.values() for _, lr in images.values() if lr.ndim == 3]
        big = [lr for lr in pool if min(lr.shape[:2]) >= args.preview_side]
        if big:
            preview = preview_seconds(big[-1], args.preview_side)
            print(f"preview {preview}", flush=True)

    records: dict[str, list[dict]] = {}
    for group, images in groups.items():
        records[group] = []
        counts = MZSR_STEPS if group in ("Set5", "Set14") else tuple(args.large_steps)
        for stem, (hr, lr) in images.items():
            model = models[_model_for(lr)]
            record: dict[str, Any] = {"image": stem, "lr_shape": list(lr.shape)}
            record["mzsr_auto"] = mzsr_curve(lr, hr, model, True, args.precision, counts)
            if record["mzsr_auto"]["patch"] is not None:
                record["mzsr_whole"] = mzsr_curve(lr, hr, model, False, args.precision, counts)
            else:
                record["mzsr_whole"] = record["mzsr_auto"]
            pixels = lr.shape[0] * lr.shape[1]
            if not args.no_zssr and (
                args.zssr_max_pixels is None or pixels <= args.zssr_max_pixels
            ):
                record["zssr"] = zssr_curve(lr, hr, args.zssr_iterations)
            records[group].append(record)
            auto10 = at_steps(record["mzsr_auto"]["points"], HEADLINE_STEPS)
            whole10 = at_steps(record["mzsr_whole"]["points"], HEADLINE_STEPS)
            print(
                f"{group} {stem}: MZSR(10) auto {auto10['psnr']:.2f} dB {auto10['seconds']:.1f} s, "
                f"whole {whole10['psnr']:.2f} dB {whole10['seconds']:.1f} s",
                flush=True,
            )

    summary = {}
    for group, recs in records.items():
        entry: dict[str, Any] = {
            "mzsr_auto": _mean_curve(recs, "mzsr_auto", "steps"),
            "mzsr_whole": _mean_curve(recs, "mzsr_whole", "steps"),
        }
        if any(r.get("zssr") for r in recs):
            entry["zssr"] = _mean_curve(recs, "zssr", "iterations")
            entry["zssr_images"] = [r["image"] for r in recs if r.get("zssr")]
            # MZSR on the same images, for the time ZSSR takes to reach it.
            with_zssr = [r for r in recs if r.get("zssr")]
            entry["mzsr_auto_zssr_images"] = _mean_curve(with_zssr, "mzsr_auto", "steps")
            entry["zssr_subset"] = len(with_zssr) < len(recs)
        if group.endswith(tuple(f"{s}x{s}" for s in LARGE_SIDES)):
            entry["side"] = int(group.split("x")[0])
        summary[group] = entry
    old = _old_summary(old_rows)
    plot(summary, old, args.out / f"{args.name}.png")

    machine = machine_description(torch.device("cpu"))
    machine["physical_cores"] = physical_cores()
    machine["precision"] = str(resolve_precision(args.precision, torch.device("cpu")) or "float32")
    load = {"start": load_start, "end": os.getloadavg(), "minutes": (time.time() - started) / 60}
    lines = _markdown(args, summary, old, old_rows, peak, speed, machine, load, records, preview)
    payload = {
        "machine": machine,
        "load": load,
        "peak_gflops": peak,
        "speed": speed,
        "head_to_head": old_rows,
        "preview": preview,
        "summary": summary,
        "records": records,
    }
    md, _ = write_results(
        args.out,
        args.name,
        "Time to quality: MZSR and ZSSR, PSNR against wall time (x2, g^d_2.0)",
        command_line("benchmarks.time_to_quality", argv),
        lines,
        payload,
    )
    print(f"wrote {md}")
    return md


def at_steps(points: list[dict], n: int) -> dict:
    """The point of an MZSR curve with ``n`` steps."""
    return next(p for p in points if p["steps"] == n)


def preview_seconds(lr: np.ndarray, side: int, repeats: int = 3) -> dict[str, Any]:
    """Seconds of the widget's preview (MZSR(1) on the whole of a ``side`` x ``side``
    crop, no self-ensemble, no back-projection, the model read from its file as each
    click does), median of ``repeats`` calls in this warm process."""
    from napari_mzsr import super_resolve

    crop = np.ascontiguousarray(lr[:side, :side])
    model = _model_for(crop)

    def click() -> None:
        super_resolve(
            crop, scale=2, kernel=SETTING.kernel, steps=1, model=model, device="cpu",
            adapt_patch=None, ensemble=None, back_projection=0,
        )  # fmt: skip

    load_before = os.getloadavg()[0]
    return {
        "side": side,
        "seconds": median_seconds(click, repeats),
        "load_before": load_before,
    }


def _old_summary(rows: list[dict]) -> dict[int, dict]:
    out = {}
    for side in sorted({r["side"] for r in rows}):
        by = {t: [r for r in rows if r["side"] == side and r["tree"] == t] for t in ("old", "new")}
        out[side] = {
            "seconds": statistics.median(r["seconds"] for r in by["old"]),
            "new_seconds": statistics.median(r["seconds"] for r in by["new"]),
            "psnr": by["old"][0]["psnr"],
            "new_psnr": by["new"][0]["psnr"],
            "commit": by["old"][0]["commit"],
            "new_commit": by["new"][0]["commit"],
            "loads": [r["load_before"] for r in by["old"] + by["new"]],
        }
        out[side]["speedup"] = out[side]["seconds"] / out[side]["new_seconds"]
    return out


def _markdown(args, summary, old, old_rows, peak, speed, machine, load, records, preview):
    lines = ["Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()), ""]
    lines += [
        f"Load average (1, 5, 15 min) at the start {', '.join(f'{v:.2f}' for v in load['start'])}, "
        f"at the end {', '.join(f'{v:.2f}' for v in load['end'])}; the run took "
        f"{load['minutes']:.0f} min with {args.threads} torch threads.",
        "",
    ]
    if old:
        lines += ["## MZSR(10) against today's main (same run, fresh processes, alternating)", ""]
        header = ["input", "old s", "new s", "speed-up", "target", "old PSNR", "new PSNR", "loads"]
        targets = {256: 2.5, 512: 4.0}
        rows = []
        for side, o in old.items():
            rows.append(
                [
                    f"{side}x{side} RGB",
                    fmt(o["seconds"]),
                    fmt(o["new_seconds"]),
                    f"{o['speedup']:.2f}x",
                    f"{targets.get(side, 0):g}x",
                    fmt(o["psnr"]),
                    fmt(o["new_psnr"]),
                    " ".join(f"{v:.1f}" for v in o["loads"]),
                ]
            )
        lines += markdown_table(header, rows)
        lines += [
            "",
            f"old = {next(iter(old.values()))['commit']}, new = "
            f"{next(iter(old.values()))['new_commit']}; median of {args.repeats} runs each; "
            "loads: 1-min load average before each run.",
            "",
        ]
    if preview:
        lines += [
            "## Preview",
            "",
            f"The widget's preview (MZSR(1) on the whole {preview['side']} x {preview['side']} "
            f"RGB crop, no ensemble or back-projection, model read from its file): "
            f"{preview['seconds']:.2f} s (median of 3, warm process, 1-min load "
            f"{preview['load_before']:.1f} before).",
            "",
        ]
    lines += ["## Mean PSNR (dB) and seconds per image", ""]
    if list(args.large_steps) != list(MZSR_STEPS):
        lines += [
            f"On the mosaics MZSR was read at {', '.join(map(str, args.large_steps))} steps "
            f"only (--large-steps; each read is one inference); on Set5/Set14 at "
            f"{', '.join(map(str, MZSR_STEPS))}.",
            "",
        ]
    for group, entry in summary.items():
        lines += [f"### {group}", ""]
        header = ["steps"] + [str(p["steps"]) for p in entry["mzsr_auto"]]
        rows = []
        for key, label in (("mzsr_auto", "MZSR auto"), ("mzsr_whole", "MZSR whole image")):
            rows.append([f"{label} PSNR"] + [fmt(p["psnr"]) for p in entry[key]])
            rows.append([f"{label} s"] + [fmt(p["seconds"]) for p in entry[key]])
        lines += markdown_table(header, rows)
        if entry.get("zssr"):
            z = entry["zssr"]
            lines += [
                "",
                *markdown_table(
                    ["ZSSR iterations"] + [str(p["iterations"]) for p in z],
                    [
                        ["PSNR"] + [fmt(p["psnr"]) for p in z],
                        ["s"] + [fmt(p["seconds"]) for p in z],
                    ],
                ),
            ]
        m10 = at_steps(entry["mzsr_auto"], HEADLINE_STEPS)
        w10 = at_steps(entry["mzsr_whole"], HEADLINE_STEPS)
        diffs = [
            at_steps(r["mzsr_auto"]["points"], HEADLINE_STEPS)["psnr"]
            - at_steps(r["mzsr_whole"]["points"], HEADLINE_STEPS)["psnr"]
            for r in records[group]
        ]
        lines += [
            "",
            f"MZSR(10) auto - whole image: {m10['psnr'] - w10['psnr']:+.3f} dB mean "
            f"(per image {min(diffs):+.3f} to {max(diffs):+.3f}), {m10['seconds']:.2f} s vs "
            f"{w10['seconds']:.2f} s per image.",
        ]
        if entry.get("zssr"):
            m10 = at_steps(entry["mzsr_auto_zssr_images"], HEADLINE_STEPS)
            if entry["zssr_subset"]:
                lines.append(
                    f"ZSSR ran on {', '.join(entry['zssr_images'])} only (--zssr-max-pixels); "
                    f"MZSR(10) on those: {m10['psnr']:.2f} dB, {m10['seconds']:.2f} s."
                )
            reach = zssr_time_to(m10["psnr"], entry["zssr"])
            if reach is None:
                last = entry["zssr"][-1]
                lines.append(
                    f"ZSSR does not reach MZSR(10)'s {m10['psnr']:.2f} dB in "
                    f"{last['iterations']} iterations ({last['psnr']:.2f} dB, "
                    f"{last['seconds']:.1f} s: more than {last['seconds'] / m10['seconds']:.0f}x "
                    "MZSR(10)'s time)."
                )
            else:
                lines.append(
                    f"ZSSR reaches MZSR(10)'s {m10['psnr']:.2f} dB after {reach:.1f} s: "
                    f"{reach / m10['seconds']:.1f}x MZSR(10)'s time."
                )
        lines.append("")
    lines += ["## FLOPs against time", ""]
    side = args.peak_size // 8
    lines.append(
        f"Peak of this CPU, {args.threads} threads, float32: matmul {args.peak_size} "
        f"{peak['matmul']:.0f} GFLOP/s, 64->64 3x3 convolution (channels-last, {side}x{side})"
        f" {peak['conv']:.0f} GFLOP/s."
    )
    lines.append("")
    header = ["what", "GFLOP", "s", "GFLOP/s", "% of matmul peak"]
    rows = []
    for s in speed:
        where = (
            f"{s['side']}x{s['side']} image"
            if s["patch"] is None
            else f"{s['count']} patches of {s['patch'][0]}"
        )
        for kind in ("step", "infer"):
            if kind == "infer" and s["patch"] is not None:
                continue
            g, sec = s[f"{kind}_gflop"], s[f"{kind}_s"]
            label = (
                f"adaptation step, {where} ({s['step_layout'].split('.')[-1]})"
                if kind == "step"
                else f"inference, {s['side']}x{s['side']} -> x2"
            )
            rows.append(
                [
                    label,
                    fmt(g, 1),
                    fmt(sec, 3),
                    fmt(g / sec, 0),
                    fmt(100 * g / sec / peak["matmul"], 0),
                ]
            )
    lines += markdown_table(header, rows)
    return lines


if __name__ == "__main__":
    main()
