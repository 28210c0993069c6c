"""Meta-transfer learning over scale pairs: one theta_M for any factor ``(sy, sx)``.

Each task draws a factor pair: a symmetric factor from the recipe's ``scales`` (ArbSR:
1.1, 1.2, ..., 4.0) or a pair from ``scale_tasks.pairs`` (ArbSR: the 30 ordered
asymmetric pairs of {1.5, 2, ..., 4}; here also pairs with 1 on one axis, as an
anisotropic Z stack needs), each entry equally likely. Its kernel follows the factors
(:func:`sample_pair_kernel`); its support and query sets are external HR patches
degraded with that kernel at that pair, and the inner loop runs at that pair. The
network is the plain MZSR one (``architecture = "mzsr"``, the ``multiscale`` model)
or the scale-aware one (``"scale-aware"``, :mod:`napari_mzsr.core.scale_aware`), which
is given the pair. Otherwise as :mod:`training.meta`: second-order MAML through
``torch.func.functional_call``, MAML++ multi-step query loss, Adam on theta_M.

The start is a trained single-scale theta_M (``--init``, e.g. the shipped
``bicubic-x2``): its weights fill the body; the scale-aware modules start at zero
effect (their experts are zero) and learn at ``scale_tasks.module_lr``. With
``scale_tasks.freeze_body`` the meta-optimizer updates the modules only: the inner
loop still adapts every weight, so the body keeps the single-scale model's
adaptability. (On this project's CPU budget, meta-training the whole network over
all the pairs lost it within 100 iterations: the validation PSNR after 10 steps fell
0.4-0.5 dB below the starting point, the gain from adaptation steps vanished.)
The start may also be a scale-aware theta_M with the recipe's adaptation layers, every
weight kept: a one-channel run from the RGB ``arbitrary`` (colour filters folded,
:func:`training.transfer.convert_channels`) starts where that model stands on grey data.

Run from the repository root::

    python -m training.scale_tasks --recipe training/recipes/arbitrary.toml --init bicubic-x2
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_mzsr.core.kernels import gaussian_kernel
from napari_mzsr.core.network import MZSRNet
from napari_mzsr.core.resize import parse_scale
from napari_mzsr.core.scale_aware import ScaleAwareNet, check_adaptation_layers
from napari_mzsr.io.model_file import ModelInfo, load_model, save_model

from . import checkpoint, distributed, meta
from .export import model_info
from .recipe import RecipeError, load_recipe
from .session import Session, open_session, restore, run_loop
from .tasks import make_pairs, multi_step_weights
from .transfer import convert_channels

Pair = tuple[float, float]
TaskFn = Callable[["Session", torch.nn.Module, torch.Tensor], tuple[torch.Tensor, float, Pair]]
# The paper's kernel distribution at x2 (REFERENCE section 3): variances up to 2.5 s.
REFERENCE_SCALE = 2.0
MAX_VARIANCE_AT_X2 = 2.5 * REFERENCE_SCALE


def task_pairs(recipe: dict[str, Any]) -> list[Pair]:
    """The factor pairs tasks are drawn from: ``(s, s)`` for each of ``scales``, then
    ``scale_tasks.pairs``."""
    pairs = [(float(s), float(s)) for s in recipe["scales"]]
    return pairs + [parse_scale(p, "scale_tasks.pairs") for p in recipe["scale_tasks"]["pairs"]]


def check_recipe(recipe: dict[str, Any]) -> None:
    """The scale-task keys of a recipe (on top of :func:`training.recipe.load_recipe`).

    Raises
    ------
    RecipeError
        Unknown architecture, bad pairs or adaptation layers.
    """
    if recipe["architecture"] not in ("mzsr", "scale-aware"):
        raise RecipeError(f"architecture must be mzsr or scale-aware, got {recipe['architecture']}")
    try:
        pairs = task_pairs(recipe)
        check_adaptation_layers(
            recipe["scale_tasks"]["adaptation_layers"], recipe["network"]["layers"]
        )
    except ValueError as exc:
        raise RecipeError(str(exc)) from None
    if any(s < 1 for pair in pairs for s in pair) or (1.0, 1.0) in pairs:
        raise RecipeError("scale pairs need factors >= 1, not both 1")
    share = recipe["scale_tasks"]["plain_share"]
    if not 0 <= share < 1:
        raise RecipeError(f"scale_tasks.plain_share must be in [0, 1), got {share}")


def served_scales(recipe: dict[str, Any]) -> list[float]:
    """Every factor the tasks use on either axis, sorted (the model file's ``scales``)."""
    return sorted({s for pair in task_pairs(recipe) for s in pair})


def pair_kernel_size(scale: Pair) -> int:
    """Odd grid covering +-3 sigma of the widest kernel of :func:`sample_pair_kernel`
    (15 at x2, the paper's size; 29 at x4)."""
    widest = MAX_VARIANCE_AT_X2 * (max(scale) / REFERENCE_SCALE) ** 2
    return 2 * math.ceil(3 * math.sqrt(widest)) + 1


def sample_pair_kernel(
    rng: np.random.Generator, scale: Pair, variance_min: float = 1.0, plain_share: float = 0.0
) -> np.ndarray:
    """A task kernel for the factors ``(sy, sx)``.

    With probability ``plain_share`` no blur at all (a 1x1 kernel: plain MATLAB
    bicubic, ArbSR's protocol). Otherwise the paper's x2 distribution (theta ~ U[0, pi),
    l1 ~ U[m, 5], l2 ~ U[m, l1], variances, ``m = variance_min``), stretched per axis by
    ``s / 2``: ``Sigma = D Sigma_2 D`` with ``D = diag(sx / 2, sy / 2)`` in (x, y)
    order. So a kernel is the same blur in LR pixels whatever the factors (the paper's
    x2 kernels at x2, the benchmark's variance ``1.3 (s / 2)^2`` per axis is in range),
    and an axis of factor 1 is blurred little.
    """
    if rng.random() < plain_share:
        return np.ones((1, 1))
    theta = rng.uniform(0.0, math.pi)
    l1 = rng.uniform(variance_min, MAX_VARIANCE_AT_X2)
    l2 = rng.uniform(variance_min, l1)
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    stretch = np.diag([scale[1], scale[0]]) / REFERENCE_SCALE
    sigma = stretch @ rotation @ np.diag([l1, l2]) @ rotation.T @ stretch
    values, vectors = np.linalg.eigh(sigma)
    angle = math.atan2(vectors[1, 1], vectors[0, 1])
    return gaussian_kernel(values[1], values[0], angle, size=pair_kernel_size(scale))


def initial_network(recipe: dict[str, Any], init: str | Path) -> torch.nn.Module:
    """The recipe's network with the weights of the theta_M ``init`` (converted to the
    recipe's channels). A plain ``init`` fills the body and the scale-aware modules
    start fresh, seeded; a scale-aware ``init`` with the recipe's adaptation layers
    (e.g. the RGB ``arbitrary`` for a one-channel run) gives every weight."""
    model = load_model(init)
    info = model.info
    shape = recipe["network"]
    layers = recipe["scale_tasks"]["adaptation_layers"]
    aware = recipe["architecture"] == "scale-aware"
    fits = (info.features, info.layers) == (shape["features"], shape["layers"]) and (
        info.architecture == "mzsr" or (aware and list(info.adaptation_layers) == list(layers))
    )
    if not fits:
        also = f", or a scale-aware one with adaptation layers {layers}" if aware else ""
        raise ValueError(f"init {init}: the recipe needs a plain network of shape {shape}{also}")
    state = convert_channels(model.state_dict, recipe["channels"])
    generator = torch.Generator().manual_seed(int(recipe["seed"]))
    if not aware:
        net = MZSRNet(recipe["channels"], **shape)
        net.load_state_dict(state)
        return net
    net = ScaleAwareNet(recipe["channels"], **shape, adaptation_layers=layers, generator=generator)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or not all(k.startswith("adaptations.") for k in missing):
        raise ValueError(f"{init}: weights do not fit the scale-aware body")
    return net


def task_loss(
    session: Session, net: torch.nn.Module, weights: torch.Tensor
) -> tuple[torch.Tensor, float, Pair]:
    """Draw one task (pair, kernel, patches) and return its weighted multi-step query
    loss (differentiable with respect to ``net``'s parameters), its query loss after
    the last inner step and its pair."""
    cfg, recipe, rng = session.settings, session.recipe, session.rng
    pairs = task_pairs(recipe)
    pair = pairs[int(rng.integers(len(pairs)))]
    tasks = recipe["scale_tasks"]
    kernel = sample_pair_kernel(rng, pair, cfg["kernel_variance_min"], tasks["plain_share"])
    kernel = torch.from_numpy(kernel).float().to(session.device)
    count = cfg["support"] + cfg["query"]
    hr = torch.from_numpy(session.bank.sample(rng, count, cfg["patch"])).to(session.device)
    x = session.prepare(make_pairs(hr, pair, kernel, recipe["degradation"]))
    n = cfg["support"]
    task = meta.Task(x[:n], hr[:n], x[n:], hr[n:])
    extra = {"scale": pair} if isinstance(net, ScaleAwareNet) else None
    total, last = meta.task_loss(net, task, weights, cfg, session.autocast, extra)
    return total, last.item(), pair


def scale_model_info(payload: dict[str, Any]) -> ModelInfo:
    """Metadata of the theta_M file of a scale-task checkpoint: every served factor,
    the architecture and its adaptation layers."""
    recipe = payload["recipe"]
    info = model_info(payload)
    aware = recipe["architecture"] == "scale-aware"
    layers = list(recipe["scale_tasks"]["adaptation_layers"]) if aware else []
    return replace(
        info,
        scales=served_scales(recipe),
        architecture=recipe["architecture"],
        adaptation_layers=layers,
    )


def recipe_model_info(recipe: dict[str, Any]) -> ModelInfo:
    """Metadata of a network trained by ``recipe`` before any training record (for
    validating weights in memory)."""
    payload = {"recipe": recipe, "stage": "meta", "step": 0, "elapsed_s": 0.0}
    return scale_model_info({**payload, "validation": [], "provenance": {}})


def write(payload: dict[str, Any], path: str | Path) -> Path:
    """Write the theta_M file of a checkpoint's contents (replacing ``path``)."""
    return save_model(path, payload["model"], scale_model_info(payload), overwrite=True)


def run(
    recipe: dict[str, Any],
    init: str | Path,
    data_dir: str | Path | None = None,
    val_dir: str | Path | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    device: str | None = None,
    task: TaskFn = task_loss,
) -> Path | None:
    """Meta-train over scale pairs from ``init`` and write ``<out>/<name>.pt``.

    Parameters as :func:`training.meta.run` (``init`` in place of ``pretrained``);
    ``task`` draws a task and returns its loss as :func:`task_loss` (e.g.
    :func:`training.real_tasks.task_loss`).
    """
    check_recipe(recipe)
    session = open_session(recipe, "meta", data_dir, val_dir, out, device)
    cfg, ctx = session.settings, session.ctx
    net = initial_network(recipe, init)
    session.provenance["init"] = {"file": str(init), "training": load_model(init).info.training}
    net = session.prepare_net(net)
    modules = [p for n, p in net.named_parameters() if n.startswith("adaptations.")]
    body = [p for n, p in net.named_parameters() if not n.startswith("adaptations.")]
    frozen = recipe["scale_tasks"]["freeze_body"]
    if frozen and not modules:
        raise RecipeError("scale_tasks.freeze_body needs the scale-aware network")
    groups = [] if frozen else [{"params": body, "lr": cfg["meta_lr"]}]
    if modules:
        groups.append({"params": modules, "lr": recipe["scale_tasks"]["module_lr"]})
    optimizer = torch.optim.Adam(groups)
    resumed = restore(session, resume, net, optimizer) if resume else None
    distributed.broadcast_parameters(net, ctx)
    my_tasks = len(range(ctx.rank, cfg["tasks"], ctx.world))
    if resumed is not None and "cpu_s" not in resumed:
        # Checkpoints written before run_loop kept CPU time: their steps' time is logged.
        resumed["cpu_s"] = _logged_cpu_seconds(session.out, resumed["step"])

    def step(index: int) -> dict[str, float]:
        w = multi_step_weights(index, cfg["inner_steps"], cfg["anneal_iterations"])
        weights = torch.tensor(w, dtype=torch.float32, device=session.device)
        optimizer.zero_grad(set_to_none=True)
        meta_loss = last_loss = 0.0
        for _ in range(my_tasks):
            loss, last, _pair = task(session, net, weights)
            (loss / cfg["tasks"]).backward()
            meta_loss += loss.item()
            last_loss += last
        distributed.all_reduce_gradients(net, ctx, average=False)
        optimizer.step()
        return {
            "loss": distributed.all_reduce_mean(last_loss / max(my_tasks, 1), ctx, session.device),
            "meta_loss": distributed.all_reduce_mean(
                meta_loss / max(my_tasks, 1), ctx, session.device
            ),
            "last_weight": float(w[-1]),
        }

    payload = run_loop(session, net, optimizer, step, cfg["iterations"], resumed)
    return write(payload, session.out / f"{recipe['name']}.pt") if ctx.main else None


def export(
    checkpoint_path: str | Path,
    path: str | Path,
    data_dir: str | Path | None = None,
    val_dir: str | Path | None = None,
) -> Path:
    """Write the theta_M file of a checkpoint (a run stopped before its ``iterations``):
    with the validation PSNR of these weights, computed now where the run's last
    validation was at an earlier step (the validation set as in training: ``data_dir``
    and ``val_dir`` as :func:`run`)."""
    payload = checkpoint.load(checkpoint_path)
    if "cpu_s" not in payload:  # written before run_loop kept CPU time: from the log
        payload["cpu_s"] = _logged_cpu_seconds(Path(checkpoint_path).parent, payload["step"])
    history = list(payload["validation"])
    if history and history[-1]["step"] == payload["step"]:
        return write(payload, path)
    written = write(payload, path)
    recipe = payload["recipe"]
    session = open_session(recipe, "meta", data_dir, val_dir, Path(path).parent, "cpu")
    net = load_model(written).network("cpu")
    start = time.process_time()
    result = session.evaluate(net, session.val_items, recipe, session.device, None)
    record = {
        "step": payload["step"],
        "val": result,
        "cpu_s": round(float(payload["cpu_s"]), 3),
        "wall_s": round(float(payload["elapsed_s"]), 3),
        "val_cpu_s": round(time.process_time() - start, 3),
    }
    payload["validation"] = [*history, record]
    return write(payload, path)


def _logged_cpu_seconds(folder: Path, step: int) -> float:
    """CPU seconds of the steps up to ``step``, from the run's log (0 if not logged)."""
    path = Path(folder) / "log.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    logged = [r["cpu_s"] for r in records if "cpu_s" in r and r["step"] <= step]
    return float(logged[-1]) if logged else 0.0


def main(
    argv: list[str] | None = None,
    *,
    task: TaskFn = task_loss,
    check: Callable[[dict[str, Any]], None] = check_recipe,
    prog: str = "python -m training.scale_tasks",
) -> int:
    """The command line of this stage, or of one with its own ``task`` and recipe
    ``check`` (:mod:`training.real_tasks`)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Meta-transfer learning over scale pairs (see the module docstring).",
    )
    parser.add_argument("--recipe", help="TOML recipe (training/recipes/)")
    parser.add_argument(
        "--init", help="theta_M to start from (shipped name or file; plain or scale-aware)"
    )
    parser.add_argument("--data", help="folder of HR training images (overrides the recipe)")
    parser.add_argument("--val-data", help="folder of validation images (default: held out)")
    parser.add_argument(
        "--out", help="output folder (default runs/<name>/meta); with --export the file"
    )
    parser.add_argument("--resume", help="checkpoint of this run to continue exactly")
    parser.add_argument("--device", help="cpu, cuda, ... (overrides the recipe)")
    parser.add_argument(
        "--export",
        metavar="CHECKPOINT",
        help="only write the theta_M file of a checkpoint to --out (validated at its step; "
        "--data/--val-data as in training)",
    )
    args = parser.parse_args(argv)
    if args.export:
        if not args.out:
            parser.error("--export needs --out FILE")
        print(export(args.export, args.out, args.data, args.val_data))
        return 0
    if not (args.recipe and args.init):
        parser.error("--recipe and --init are required (or --export CHECKPOINT --out FILE)")
    recipe = load_recipe(args.recipe)
    check(recipe)
    try:
        path = run(
            recipe,
            args.init,
            args.data,
            args.val_data,
            args.out,
            args.resume,
            args.device,
            task,
        )
    finally:
        distributed.shutdown()
    if path is not None:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
