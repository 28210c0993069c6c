"""Self-ensemble and back-projection: what they add to MZSR(n) in dB, what they cost in
time, and which self-ensemble is right for anisotropic kernels.

For every image and kernel, theta_M is adapted once (true kernel) and the adapted
network super-resolves the LR image in each of these ways (every variant's time is its
inference and refinement, the adaptation time is reported once):

- ``plain``: one inference (MZSR(n) as in the paper);
- ``SE mean`` / ``SE median``: the package's self-ensemble, over the flips/rotations
  that leave the kernel unchanged (all 8 for isotropic kernels, 2 for g^d_ani);
- ``SE all 8``: the mean over all 8 transforms with the same network, ignoring that a
  transformed input carries a transformed kernel;
- ``SE all 8, adapted each``: (``--adapt-per-transform``) one adaptation per transform
  with the transformed kernel, the correct but 8x dearer ensemble;
- ``BP k``: k iterations of back-projection with the kernel after ``plain``;
- ``SE mean + BP k``: both, with the largest k.

    python -m benchmarks.refinements --data ../shared/data/bench/Set5 --device cpu

Writes ``refinements_<set>_<device>.md`` and ``.json`` (every per-image value).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_mzsr.core.adaptation import infer
from napari_mzsr.core.devices import resolve_device
from napari_mzsr.core.metrics import psnr
from napari_mzsr.core.refinement import TRANSFORMS, dihedral, self_ensemble
from napari_mzsr.io.model_file import MZSRModel
from napari_mzsr.pipeline.run import AdaptedModel, iter_adapt

from .lr_inputs import (
    SETTINGS,
    Setting,
    add_image_set_options,
    hr_and_lr,
    load_hr_images,
)
from .machine import add_threads_option, apply_threads, machine_description, synchronize
from .model_choice import add_models_option, parse_models, resolve_models
from .report import command_line, fmt, markdown_table, write_results

TABLE2 = ("g^d_0.2", "g^d_2.0", "g^d_ani", "g^b_1.3")
# Comparison variants a large set may leave out: SE median is within 0.1 dB of SE mean on
# Set5, and SE all 8 equals SE mean for isotropic kernels.
OPTIONAL = ("SE median", "SE all 8")
SHARED_DATA = Path("../shared/data/bench/Set5")


def adapt(lr: np.ndarray, kernel: np.ndarray, setting: Setting, model: MZSRModel, steps: int,
          device: torch.device, seed: int) -> AdaptedModel:  # fmt: skip
    run = iter_adapt(
        lr,
        scale=setting.scale,
        kernel=kernel,
        steps=steps,
        model=model,
        device=device,
        seed=seed,
        precision="float32",
    )
    try:
        while True:
            next(run)
    except StopIteration as done:
        return done.value


def adapt_each(
    lr: np.ndarray,
    setting: Setting,
    model: MZSRModel,
    steps: int,
    device: torch.device,
    seed: int,
) -> list[torch.Tensor]:
    """The SR of every transformed input by theta_M adapted to that input with the
    transformed kernel, in :data:`TRANSFORMS` order (still transformed)."""
    x = _tensor(lr, model.info.channels, device)
    outs = []
    for index in TRANSFORMS:
        kernel = dihedral(torch.from_numpy(setting.kernel), index).numpy()
        moved = dihedral(x, index)
        net = adapt(_uint8(moved, lr.ndim == 2), kernel, setting, model, steps, device, seed).net
        outs.append(infer(net, moved, setting.scale))
    return outs


def _tensor(lr: np.ndarray, channels: int, device: torch.device) -> torch.Tensor:
    x = torch.from_numpy(lr.astype(np.float32) / 255.0)
    x = x.permute(2, 0, 1)[None] if x.ndim == 3 else x[None, None]
    return x.expand(1, channels, *x.shape[-2:]).to(device)


def _uint8(sr: torch.Tensor, grey: bool) -> np.ndarray:
    out = sr[0].mean(dim=0) if grey else sr[0].permute(1, 2, 0)
    return np.rint(out.clamp(0, 1).cpu().numpy() * 255.0).astype(np.uint8)


def variants(
    lr: np.ndarray,
    setting: Setting,
    adapted: AdaptedModel,
    bp_iters: Sequence[int],
    per_transform: Callable[[], list[torch.Tensor]] | None,
    skip: Sequence[str] = (),
) -> dict[str, Callable[[], np.ndarray]]:
    """The ways to super-resolve ``lr`` with ``adapted``, each returning uint8; the
    :data:`OPTIONAL` ones named in ``skip`` are left out."""
    grey = lr.ndim == 2
    channels = adapted.info.channels

    def upscale(t: torch.Tensor) -> torch.Tensor:
        return infer(adapted.net, t, setting.scale)

    def all_eight() -> np.ndarray:
        x = _tensor(lr, channels, adapted.device)
        sr = self_ensemble(upscale, x, setting.scale, setting.method, TRANSFORMS, "mean")
        return _uint8(sr, grey)

    out: dict[str, Callable[[], np.ndarray]] = {
        "plain": lambda: adapted.apply(lr, output_dtype=np.uint8),
        "SE mean": lambda: adapted.apply(lr, output_dtype=np.uint8, ensemble="mean"),
        "SE median": lambda: adapted.apply(lr, output_dtype=np.uint8, ensemble="median"),
        "SE all 8": all_eight,
    }
    if per_transform is not None:

        def adapted_each() -> np.ndarray:
            # self_ensemble asks for the transforms in order: hand out their results.
            results = iter(per_transform())
            x = _tensor(lr, channels, adapted.device)
            sr = self_ensemble(
                lambda _: next(results), x, setting.scale, setting.method, TRANSFORMS, "mean"
            )
            return _uint8(sr, grey)

        out["SE all 8, adapted each"] = adapted_each
    for k in bp_iters:
        out[f"BP {k}"] = lambda k=k: adapted.apply(lr, output_dtype=np.uint8, back_projection=k)
    if bp_iters:
        k = max(bp_iters)
        out[f"SE mean + BP {k}"] = lambda: adapted.apply(
            lr, output_dtype=np.uint8, ensemble="mean", back_projection=k
        )
    return {name: run for name, run in out.items() if name not in skip}


def evaluate(
    hr_images: Mapping[str, np.ndarray],
    settings: Sequence[Setting],
    models: Mapping[str, MZSRModel],
    steps: int,
    bp_iters: Sequence[int],
    adapt_per_transform: bool,
    device: torch.device,
    seed: int,
    log: Callable[[str], None] = print,
    skip: Sequence[str] = (),
) -> dict[str, Any]:
    """``results[setting]["per_image"][image][variant] = {"psnr", "seconds"}`` plus the
    adaptation seconds; settings whose theta_M is missing are skipped."""
    results: dict[str, Any] = {}
    for setting in settings:
        model = models.get(setting.model)
        if model is None:
            results[setting.name] = {"unavailable": f"no theta_M {setting.model!r}"}
            continue
        per_image: dict[str, dict[str, Any]] = {}
        for stem, hr in hr_images.items():
            hr, lr = hr_and_lr(hr, setting)
            synchronize(device)
            start = time.perf_counter()
            adapted = adapt(lr, setting.kernel, setting, model, steps, device, seed)
            synchronize(device)
            cells: dict[str, Any] = {"adaptation_seconds": time.perf_counter() - start}

            each = partial(adapt_each, lr, setting, model, steps, device, seed)
            runs = variants(
                lr, setting, adapted, bp_iters, each if adapt_per_transform else None, skip
            )
            for name, run in runs.items():
                synchronize(device)
                start = time.perf_counter()
                sr = run()
                synchronize(device)
                seconds = time.perf_counter() - start
                cells[name] = {"psnr": psnr(sr, hr, setting.shave), "seconds": seconds}
            per_image[stem] = cells
            log(
                f"{setting.name:<8} {stem:<11} "
                + " ".join(f"{n} {c['psnr']:.2f}" for n, c in cells.items() if n in runs)
            )
        results[setting.name] = {"per_image": per_image}
    return results


def summary_rows(results: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for setting, entry in results.items():
        if "unavailable" in entry:
            rows.append([setting, f"n/a: {entry['unavailable']}", "—", "—", "—"])
            continue
        images = list(entry["per_image"].values())
        names = [n for n in images[0] if n != "adaptation_seconds"]
        plain = float(np.mean([c["plain"]["psnr"] for c in images]))
        for name in names:
            mean = float(np.mean([c[name]["psnr"] for c in images]))
            seconds = statistics.median(c[name]["seconds"] for c in images)
            rows.append([setting, name, fmt(mean), f"{mean - plain:+.2f}", fmt(seconds)])
        adapt_s = statistics.median(c["adaptation_seconds"] for c in images)
        rows.append([setting, "(adaptation)", "—", "—", fmt(adapt_s)])
    return rows


def main(argv: list[str] | None = None) -> Path:
    """Command-line entry point; returns the path of the Markdown report."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_image_set_options(parser, SHARED_DATA)
    parser.add_argument("--settings", nargs="+", default=list(TABLE2), choices=list(SETTINGS))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--bp-iters", type=int, nargs="*", default=[1, 3, 10, 20])
    parser.add_argument(
        "--adapt-per-transform", action="store_true",
        help="also the self-ensemble with one adaptation per transform (8x adaptation)",
    )  # fmt: skip
    add_models_option(parser)
    parser.add_argument(
        "--skip", nargs="+", default=[], choices=OPTIONAL, help="leave these variants out"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", help="output file stem")
    add_threads_option(parser)
    args = parser.parse_args(argv)
    apply_threads(args)

    device = resolve_device(args.device)
    set_name = args.set_name or args.data.resolve().name
    settings = [SETTINGS[name] for name in args.settings]
    needed = sorted({s.model for s in settings})
    models, missing = resolve_models(needed, None, parse_models(args.models))
    for name, why in missing.items():
        print(f"warning: {name} settings skipped: {why}", file=sys.stderr)
    hr_images = load_hr_images(args.data, args.limit)
    results = evaluate(
        hr_images, settings, models, args.steps, args.bp_iters, args.adapt_per_transform,
        device, args.seed, skip=args.skip,
    )  # fmt: skip

    machine = machine_description(device)
    command = command_line("benchmarks.refinements", argv)
    name = args.name or f"refinements_{set_name}_{device.type}"
    header = ["kernel", "variant", "PSNR (mean)", "gain over plain (dB)", "s/image (median)"]
    intro = [
        "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()),
        "",
        f"Images: {len(hr_images)} ({', '.join(hr_images)}). MZSR({args.steps}) with the "
        f"true kernel, float32, adapted once per image; models: "
        f"{', '.join(f'{n} = {m.source}' for n, m in models.items())}. PSNR on Y, shave = "
        "scale. Seconds: the variant's inference and refinement only; the adaptation "
        "row is the time of one adaptation.",
        "",
        *markdown_table(header, summary_rows(results)),
        "",
    ]
    write_results(
        args.out,
        name,
        f"Self-ensemble and back-projection on {set_name} ({machine.get('gpu', machine['cpu'])})",
        command,
        intro,
        {
            "set": set_name,
            "machine": machine,
            "images": list(hr_images),
            "steps": args.steps,
            "results": results,
        },
    )
    md_path = args.out / f"{name}.md"
    print(f"wrote {md_path} and {md_path.with_suffix('.json')}")
    return md_path


if __name__ == "__main__":
    main()
