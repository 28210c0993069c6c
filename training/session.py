"""What both stages share: setting up a run, resuming it, and the training loop with
logging, validation, checkpoints and a progress bar."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from napari_mzsr.core.devices import resolve_device, resolve_precision

from . import checkpoint, data, distributed, validate, validate_real
from .recipe import ROOT, resolve_data
from .runlog import RunLog

StepFn = Callable[[int], dict[str, float]]


@dataclass
class Session:
    """Everything a stage needs besides its network and optimizer."""

    recipe: dict[str, Any]
    stage: str
    out: Path
    device: torch.device
    autocast_dtype: torch.dtype | None
    ctx: distributed.Context
    bank: data.ImageBank
    val_items: list[Any]
    rng: np.random.Generator
    provenance: dict[str, Any] = field(default_factory=dict)
    # validate.evaluate, or validate_real.evaluate for a recipe's validation.set = "real".
    evaluate: Callable[..., dict[str, float]] = validate.evaluate

    @property
    def settings(self) -> dict[str, Any]:
        """The recipe's table for this stage."""
        return self.recipe[self.stage]

    @property
    def channels_last(self) -> bool:
        """Whether to use channels-last layout (CPU only, where the recipe asks)."""
        return self.device.type == "cpu" and bool(self.recipe["channels_last"])

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Move a batch to the device, channels-last if :attr:`channels_last`."""
        x = x.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def prepare_net(self, net: torch.nn.Module) -> torch.nn.Module:
        net = net.to(self.device)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        return net

    def autocast(self):
        """Autocast context for forward passes (a no-op in float32)."""
        return torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=self.autocast_dtype is not None,
        )


def split_images(
    recipe: dict[str, Any], data_dir: str | Path | None = None, val_dir: str | Path | None = None
) -> tuple[list[Path], list[Path]]:
    """The training and the validation images of a run (see :func:`open_session`):
    the training folder less ``data.exclude``, less the held-out images."""
    cfg = recipe["data"]
    train_dir = resolve_data(data_dir or cfg["train"])
    if "bench" in train_dir.parts:
        raise ValueError(f"{train_dir} is a benchmark set; never train on it")
    excluded = {train_dir / name for name in cfg["exclude"]}
    if missing := sorted(str(p) for p in excluded if not p.is_file()):
        raise FileNotFoundError(f"data.exclude names images that are not there: {missing}")
    paths = [p for p in data.list_images(train_dir) if p not in excluded]
    if val_dir or cfg["val"]:
        return paths, data.list_images(resolve_data(val_dir or cfg["val"]))[: cfg["val_images"]]
    return data.split_validation(paths, cfg["val_images"])


def open_session(
    recipe: dict[str, Any],
    stage: str,
    data_dir: str | Path | None = None,
    val_dir: str | Path | None = None,
    out: str | Path | None = None,
    device: str | None = None,
) -> Session:
    """Set up devices, process group, seeds, training images and the validation set.

    Parameters
    ----------
    recipe : dict
        From :func:`training.recipe.load_recipe`.
    stage : {"pretrain", "meta"}
    data_dir, val_dir : path, optional
        Override the recipe's training and validation folders. Without a validation
        folder, ``data.val_images`` images are held out of the training folder.
    out : path, optional
        Output folder (default ``runs/<name>/<stage>`` in the repository).
    device : str, optional
        Overrides the recipe's device.
    """
    dev = distributed.local_device(resolve_device(device or recipe["device"]))
    ctx = distributed.init(dev)
    seed = int(recipe["seed"])
    torch.manual_seed(seed)
    random.seed(seed)
    rng = np.random.default_rng([seed, ctx.rank])

    cfg = recipe["data"]
    train_dir = resolve_data(data_dir or cfg["train"])
    paths, val_paths = split_images(recipe, data_dir, val_dir)
    bank = data.load_bank(paths, recipe["channels"], cfg["texture_threshold"])
    items = []
    real = recipe["validation"]["set"] == "real"
    if ctx.main:
        crops = data.validation_crops(val_paths, recipe["channels"], cfg["val_crop"])
        items = (validate_real if real else validate).build(crops, recipe)
    out_dir = Path(out) if out else ROOT / "runs" / recipe["name"] / stage
    provenance = {
        "data": str(train_dir),
        "train_images": len(paths),
        "excluded_images": sorted(cfg["exclude"]),
        "val_images": [p.name for p in val_paths],
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "world_size": ctx.world,
        "torch": str(torch.__version__),
    }
    return Session(
        recipe,
        stage,
        out_dir,
        dev,
        resolve_precision(recipe["precision"], dev),
        ctx,
        bank,
        items,
        rng,
        provenance,
        validate_real.evaluate if real else validate.evaluate,
    )


def restore(
    session: Session, path: str | Path, net: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Load a checkpoint of this stage into ``net``, ``optimizer`` and the RNGs.

    Returns the checkpoint (its ``step``, ``elapsed_s`` and ``validation`` continue).
    """
    ck = checkpoint.load(path)
    if ck["stage"] != session.stage:
        raise ValueError(f"{path} is a {ck['stage']} checkpoint, not {session.stage}")
    if len(ck["rng"]) != session.ctx.world:
        raise ValueError(
            f"{path} was written by {len(ck['rng'])} processes; resume with as many "
            f"(not {session.ctx.world}) to continue exactly"
        )
    net.load_state_dict(ck["model"])
    optimizer.load_state_dict(ck["optimizer"])
    checkpoint.restore_rng(ck["rng"][session.ctx.rank], session.rng)
    return ck


def _validate(
    session: Session,
    net: torch.nn.Module,
    step: int,
    log: RunLog,
    history: list,
    clocks: dict[str, float],
):
    start = time.process_time()
    result = session.evaluate(
        net, session.val_items, session.recipe, session.device, session.autocast_dtype
    )
    record = {
        "step": step,
        "val": result,
        **clocks,
        "val_cpu_s": round(time.process_time() - start, 3),
    }
    history.append(record)
    log.write(record)
    log.plot(f"{session.recipe['name']} {session.stage}")
    return result


def run_loop(
    session: Session,
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step_fn: StepFn,
    total: int,
    resumed: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``step_fn(step)`` for the remaining steps up to ``total``.

    Stops early once the stage's ``max_minutes`` (wall time of the whole stage,
    resumed parts included; 0 means no limit) or ``max_cpu_minutes`` (CPU time of
    this process, all threads, spent in ``step_fn`` during the stage, resumed parts
    included: validation, logging and checkpoints do not count, so that runs sharing
    a CPU with other jobs still get equal budgets) are spent. Logs the mean of the step
    records every ``log_every`` steps, validates every
    ``val_every`` steps (and once before the first meta-learning step, to measure the
    pretrained weights the same way), checkpoints every ``checkpoint_every`` steps,
    and always does both after the last step.

    Returns
    -------
    dict
        The final checkpoint's contents (see :func:`training.export.model_info`).
    """
    cfg, ctx = session.settings, session.ctx
    start = int(resumed["step"]) if resumed else 0
    if start >= total:
        raise ValueError(f"the checkpoint is at step {start}; raise the recipe's steps above it")
    elapsed = float(resumed["elapsed_s"]) if resumed else 0.0
    # Checkpoints written before CPU time was recorded count from their resumption.
    cpu = float(resumed.get("cpu_s", 0.0)) if resumed else 0.0
    history = list(resumed["validation"]) if resumed else []
    log = RunLog(session.out, resume_step=start if resumed else None) if ctx.main else None
    t0 = time.perf_counter()

    def clocks() -> dict[str, float]:
        return {"cpu_s": round(cpu, 3), "wall_s": round(elapsed + time.perf_counter() - t0, 3)}

    if ctx.main and start == 0 and session.stage == "meta":
        _validate(session, net, 0, log, history, clocks())
    window: list[dict[str, float]] = []
    payload: dict[str, Any] = {}
    with tqdm(
        total=total,
        initial=start,
        desc=f"{session.recipe['name']} {session.stage}",
        disable=not ctx.main,
        dynamic_ncols=True,
    ) as bar:
        for step in range(start, total):
            started = time.process_time()
            window.append(step_fn(step))
            cpu += time.process_time() - started
            done = step + 1
            bar.update()
            over = _out_of_time(cfg, elapsed + time.perf_counter() - t0, cpu, session)
            last = done == total or over
            if over:
                bar.write(f"time budget spent after step {done}: {clocks()}")
            if ctx.main and (done % cfg["log_every"] == 0 or last):
                record = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
                log.write({"step": done, **record, **clocks()})
                bar.set_postfix(loss=f"{record['loss']:.4f}")
                window = []
            if ctx.main and (done % cfg["val_every"] == 0 or last):
                result = _validate(session, net, done, log, history, clocks())
                bar.write(f"step {done}: validation PSNR {result}")
            if done % cfg["checkpoint_every"] == 0 or last:
                payload = _checkpoint(session, net, optimizer, done, clocks(), history)
            if last:
                break
    return payload


def _out_of_time(cfg: dict[str, Any], elapsed: float, cpu: float, session: Session) -> bool:
    wall_limit, cpu_limit = cfg["max_minutes"], cfg["max_cpu_minutes"]
    if not (wall_limit or cpu_limit):
        return False
    over = bool(wall_limit and elapsed > 60.0 * wall_limit)
    over = over or bool(cpu_limit and cpu > 60.0 * cpu_limit)
    # Rank 0's clock decides, so that every rank stops after the same step.
    return bool(distributed.gather(over, session.ctx)[0])


def _checkpoint(session, net, optimizer, step, clocks, history) -> dict[str, Any]:
    # Collective: every rank contributes its RNG state and a digest of its weights.
    rngs = distributed.gather(checkpoint.rng_state(session.rng), session.ctx)
    digests = distributed.gather(distributed.digest(net), session.ctx)
    if len(set(digests)) != 1:
        raise RuntimeError(f"ranks hold different weights at step {step}: {digests}")
    payload = {
        "stage": session.stage,
        "step": step,
        "model": {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "rng": rngs,
        "rank_digests": digests,
        "recipe": {k: v for k, v in session.recipe.items()},
        "provenance": session.provenance,
        "elapsed_s": clocks["wall_s"],
        "cpu_s": clocks["cpu_s"],
        "validation": history,
    }
    if session.ctx.main:
        checkpoint.save(session.out / "checkpoint.pt", payload)
    return payload
