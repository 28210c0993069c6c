"""theta_M files from training checkpoints, with the run's provenance as metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_mzsr.io.model_file import ModelInfo, save_model

from . import checkpoint


def model_info(payload: dict[str, Any]) -> ModelInfo:
    """Metadata of the theta_M file for a checkpoint's contents.

    A pretraining checkpoint is named ``<name>-pretrained``: it is the baseline that
    meta-learning must beat with the same adaptation steps.
    """
    recipe = {k: v for k, v in payload["recipe"].items() if k != "source"}
    stage = payload["stage"]
    history = payload["validation"]
    training = {
        "stage": stage,
        "recipe": recipe,
        "recipe_toml": payload["recipe"].get("source", ""),
        "iterations": payload["step"],
        "wall_time_s": round(float(payload["elapsed_s"]), 1),
        "cpu_time_s": round(float(payload.get("cpu_s", 0.0)), 3),
        "validation_psnr": history[-1]["val"] if history else {},
        "validation_history": history,
        **payload["provenance"],
    }
    name = recipe["name"] if stage == "meta" else f"{recipe['name']}-pretrained"
    return ModelInfo(
        name=name,
        scales=recipe["scales"],
        degradation=recipe["degradation"],
        channels=recipe["channels"],
        lr_schedule=recipe["meta_test"]["lr_schedule"],
        features=recipe["network"]["features"],
        layers=recipe["network"]["layers"],
        training=training,
    )


def write(payload: dict[str, Any], path: str | Path) -> Path:
    """Write the theta_M file of a checkpoint's contents (replacing ``path``)."""
    return save_model(path, payload["model"], model_info(payload), overwrite=True)


def export_checkpoint(checkpoint_path: str | Path, path: str | Path) -> Path:
    """Write the theta_M file of a checkpoint file."""
    return write(checkpoint.load(checkpoint_path), path)
