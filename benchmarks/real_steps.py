"""What the adaptation steps earn on real degradations, and how to make them earn more.

On a training recipe's real-degradation validation set (:mod:`training.validate_real`:
held-out training crops, one drawn chain per crop and factor, super-resolved through
:func:`napari_mzsr.super_resolve` with the defaults but the self-check), for each model:

- the step curve (0, 1, 3, 10, 20 steps) at each inner learning rate of ``--lrs``;
- the patch policy at 10 steps: ``auto`` (the default), the whole image, small patches;
- which layers adapt at 10 steps: all (the default), the first half of the body, the
  second half, the last two convolutions.

Reports mean PSNR and gain over bicubic. Never run on test sets: the items come from the
recipe's held-out training images. Example::

    PYTHONPATH=src:. python -m benchmarks.real_steps --recipe training/recipes/real.toml \\
        --models real=runs/real/real.pt,arbitrary=arbitrary --name real_steps_cpu
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_mzsr.io.model_file import MZSRModel, load_model
from training import data, validate_real
from training.recipe import load_recipe
from training.session import split_images

from .machine import add_threads_option, apply_threads, machine_description
from .report import command_line, markdown_table, write_results

STEPS = (0, 1, 3, 10, 20)
PATCHES = {"auto": "auto", "whole image": None, "patches of 32": 32}


@dataclass
class FrozenLayers(MZSRModel):
    """A theta_M whose networks adapt only the body convolutions in ``adapted``
    (indices among the body's convolutions; the scale-aware modules never adapt then)."""

    adapted: tuple[int, ...] = ()

    def network(self, device="cpu", scale=None) -> torch.nn.Module:
        net = super().network(device, scale)
        convs = [m for m in net.body if isinstance(m, torch.nn.Conv2d)]
        for p in net.parameters():
            p.requires_grad_(False)
        for index in self.adapted:
            for p in convs[index].parameters():
                p.requires_grad_(True)
        return net


def layer_choices(layers: int) -> dict[str, tuple[int, ...] | None]:
    half = layers // 2
    return {
        "all": None,
        "first half": tuple(range(half)),
        "second half": tuple(range(half, layers)),
        "last two": (layers - 2, layers - 1),
    }


def mean_scores(
    model: MZSRModel, items: list[validate_real.Item], steps: int, **options: Any
) -> tuple[float, float]:
    """Mean PSNR and mean gain over bicubic of ``model`` after ``steps`` steps."""
    values = validate_real.scores(model, items, steps, device="cpu", precision="float32", **options)
    bicubic = [item.bicubic for item in items]
    return float(np.mean(values)), float(np.mean(values) - np.mean(bicubic))


def study(
    model: MZSRModel, items: list[validate_real.Item], lrs: list[float], steps: tuple[int, ...]
) -> dict[str, Any]:
    """Every measurement of the module docstring for one model."""
    curves = {}
    for lr in lrs:
        curves[f"{lr:g}"] = {
            str(n): mean_scores(model, items, n, lr=lr) for n in steps
        }  # fmt: skip
        print(f"{model.info.name} lr {lr:g}: {curves[f'{lr:g}']}", file=sys.stderr)
    patches = {name: mean_scores(model, items, 10, adapt_patch=p) for name, p in PATCHES.items()}
    layers = {}
    for name, adapted in layer_choices(model.info.layers).items():
        chosen = (
            model
            if adapted is None
            else FrozenLayers(model.info, model.state_dict, adapted=adapted)
        )
        layers[name] = mean_scores(chosen, items, 10)
    return {"curves": curves, "patches": patches, "layers": layers}


def report(results: dict[str, dict[str, Any]], items: list[validate_real.Item]) -> list[str]:
    """Markdown tables: step curves per learning rate, patch policies, adapted layers."""
    lines = [f"{len(items)} validation images: " + "; ".join(i.label for i in items), ""]
    for name, result in results.items():
        lines += [f"## {name}", "", "PSNR (gain over bicubic) after n steps, per inner rate:", ""]
        steps = list(next(iter(result["curves"].values())))
        rows = [
            [lr, *(f"{p:.2f} ({g:+.2f})" for p, g in curve.values())]
            for lr, curve in result["curves"].items()
        ]
        lines += [*markdown_table(["lr", *(f"{n} steps" for n in steps)], rows), ""]
        for table in ("patches", "layers"):
            rows = [[k, f"{p:.2f}", f"{g:+.2f}"] for k, (p, g) in result[table].items()]
            lines += [*markdown_table([f"10 steps, {table}", "PSNR", "gain"], rows), ""]
    return lines


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--recipe", required=True, type=Path, help="recipe with validation.set real"
    )
    parser.add_argument("--models", required=True, help="NAME=MODEL,... (shipped name or file)")
    parser.add_argument("--lrs", default="0.005,0.01,0.02,0.04", help="inner learning rates")
    parser.add_argument("--steps", default=",".join(map(str, STEPS)))
    parser.add_argument("--data", help="training folder (default: the recipe's)")
    parser.add_argument("--name", default="real_steps_cpu")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    add_threads_option(parser)
    args = parser.parse_args(argv)
    apply_threads(args)
    recipe = load_recipe(args.recipe)
    _, val_paths = split_images(recipe, args.data)
    crops = data.validation_crops(val_paths, recipe["channels"], recipe["data"]["val_crop"])
    items = validate_real.build(crops, recipe)
    models = dict(entry.split("=", 1) for entry in args.models.split(","))
    lrs = [float(v) for v in args.lrs.split(",")]
    steps = tuple(int(v) for v in args.steps.split(","))
    results = {name: study(load_model(m), items, lrs, steps) for name, m in models.items()}
    command = command_line("benchmarks.real_steps", sys.argv[1:] if argv is None else argv)
    machine = machine_description(torch.device("cpu"))
    markdown = [
        f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}.",
        "",
        *report(results, items),
    ]
    payload = {"machine": machine, "models": models, "results": results}
    md, _ = write_results(args.out, args.name, "Adaptation steps on real degradations", command,
                          markdown, payload)  # fmt: skip
    print(md)
    return md


if __name__ == "__main__":
    main()
