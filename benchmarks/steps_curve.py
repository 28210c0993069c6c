"""Figure 3 of the paper: PSNR against the number of adaptation steps (0 to N).

Each image is adapted once, step by step, and super-resolved after every step, for
theta_M and (with ``--pretrained``) for the pretrained-only weights. Default: Set5 with
g^d_2.0, x2.

    python -m benchmarks.steps_curve --data ../shared/data/bench/Set5 \\
        --pretrained pretrained.pt --device cpu --out benchmarks/results

Writes ``steps_curve_<set>_<device>.png``, ``.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from napari_mzsr.core.adaptation import adapt, infer
from napari_mzsr.core.devices import resolve_device
from napari_mzsr.core.metrics import psnr
from napari_mzsr.core.schedules import learning_rate_schedule, rate_at
from napari_mzsr.core.tensors import from_batch, to_batch
from napari_mzsr.io.model_file import MZSRModel, load_model

from .lr_inputs import (
    SETTINGS,
    Setting,
    add_image_set_options,
    hr_and_lr,
    load_hr_images,
)
from .machine import add_threads_option, apply_threads, machine_description
from .report import command_line, fmt, markdown_table, write_results


def _to_uint8(out: torch.Tensor, grey: bool) -> np.ndarray:
    return np.rint(from_batch(out, rgb=not grey) * 255.0).astype(np.uint8)


def adaptation_outputs(
    lr: np.ndarray,
    setting: Setting,
    model: MZSRModel,
    steps: int,
    device: torch.device,
    lr_schedule: list[list[float]] | None = None,
) -> Iterator[np.ndarray]:
    """SR images of ``lr`` after 0, 1, ..., ``steps`` adaptation steps of one run.

    ``lr_schedule`` overrides the model's step learning rates.
    """
    schedule = model.info.lr_schedule if lr_schedule is None else lr_schedule
    net = model.network(device)
    x = to_batch(lr / 255.0, model.info.channels).to(device)
    kernel = torch.from_numpy(setting.kernel).float().to(device)
    grey = lr.ndim == 2
    yield _to_uint8(infer(net, x, setting.scale), grey)
    for _ in adapt(
        net,
        lambda step: x,
        kernel,
        setting.scale,
        steps=steps,
        learning_rate=lambda step: rate_at(schedule, step),
        degradation=model.info.degradation,
    ):
        yield _to_uint8(infer(net, x, setting.scale), grey)


def psnr_curve(
    hr_images: dict[str, np.ndarray],
    setting: Setting,
    model: MZSRModel,
    steps: int,
    device: torch.device,
    lr_schedule: list[list[float]] | None = None,
) -> dict[str, list[float]]:
    """Per image, the PSNR (paper protocol) after 0..``steps`` steps."""
    curves = {}
    for stem, hr in hr_images.items():
        hr, lr = hr_and_lr(hr, setting)
        curves[stem] = [
            psnr(sr, hr, setting.shave)
            for sr in adaptation_outputs(lr, setting, model, steps, device, lr_schedule)
        ]
        print(f"{model.info.name} {stem}: " + " ".join(f"{p:.2f}" for p in curves[stem]))
    return curves


def plot(means: dict[str, list[float]], title: str, path: Path) -> None:
    """Mean PSNR against steps, one line per weights file, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, values in means.items():
        ax.plot(range(len(values)), values, marker="o", markersize=3, label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("adaptation steps")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> Path:
    """Command-line entry point; returns the path of the PNG."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_image_set_options(parser)
    parser.add_argument("--setting", default="g^d_2.0", choices=list(SETTINGS))
    parser.add_argument("--model", help="theta_M (default: the setting's shipped model)")
    parser.add_argument("--pretrained", help="pretrained-only weights, theta_M file format")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--lr", type=float, help="constant step learning rate (overrides)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    add_threads_option(parser)
    args = parser.parse_args(argv)
    apply_threads(args)

    device = resolve_device(args.device)
    setting = SETTINGS[args.setting]
    set_name = args.set_name or args.data.resolve().name
    hr_images = load_hr_images(args.data, args.limit)
    schedule = None if args.lr is None else learning_rate_schedule(args.lr)
    weights = {"theta_M (meta-transfer)": load_model(args.model or setting.model)}
    if args.pretrained:
        weights["pretrained only"] = load_model(args.pretrained)
    curves = {
        label: psnr_curve(hr_images, setting, model, args.steps, device, schedule)
        for label, model in weights.items()
    }
    means = {
        label: [float(np.mean(v)) for v in zip(*per_image.values(), strict=True)]
        for label, per_image in curves.items()
    }

    name = f"steps_curve_{set_name}_{device.type}"
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / f"{name}.png"
    title = f"{set_name}, {setting.name}, x{setting.scale}"
    plot(means, title, png)
    rows = [
        [str(step)] + [fmt(means[label][step]) for label in means] for step in range(args.steps + 1)
    ]
    machine = machine_description(device)
    write_results(
        args.out,
        name,
        f"PSNR against adaptation steps: {title}",
        command_line("benchmarks.steps_curve", argv),
        [
            f"![PSNR against steps]({png.name})",
            "",
            "Mean PSNR (dB, Y, shave = scale) over "
            f"{len(hr_images)} images; weights: "
            + ", ".join(f"{label} = {m.source}" for label, m in weights.items()),
            "",
            *markdown_table(["steps", *means], rows),
        ],
        {
            "set": set_name,
            "setting": setting.name,
            "machine": machine,
            "weights": {label: m.source for label, m in weights.items()},
            "lr_schedule": {label: schedule or m.info.lr_schedule for label, m in weights.items()},
            "mean_psnr": means,
            "per_image_psnr": curves,
        },
    )
    print(f"wrote {png}")
    return png


if __name__ == "__main__":
    main()
