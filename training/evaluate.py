"""Validation of finished theta_M files on a recipe's held-out training images, so that
a new file and the shipped one are compared on the same images
(``python -m training validate --recipe R --models A.pt B.pt``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from napari_mzsr.io.model_file import load_model

from . import data, validate
from .recipe import resolve_data


def compare(
    recipe: dict[str, Any],
    models: list[str | Path],
    data_dir: str | Path | None = None,
    val_dir: str | Path | None = None,
) -> dict[str, dict[str, float]]:
    """Mean validation PSNR (dB) of each file in ``models`` after the recipe's numbers
    of adaptation steps, on the images the recipe holds out (see
    :func:`training.session.open_session`), on the CPU in float32.

    Returns
    -------
    dict
        ``{str(path): {steps: psnr}}`` in the order of ``models``.
    """
    cfg = recipe["data"]
    if val_dir or cfg["val"]:
        paths = data.list_images(resolve_data(val_dir or cfg["val"]))[: cfg["val_images"]]
    else:
        _, paths = data.split_validation(
            data.list_images(resolve_data(data_dir or cfg["train"])), cfg["val_images"]
        )
    items = validate.build(
        data.validation_crops(paths, recipe["channels"], cfg["val_crop"]), recipe
    )
    results = {}
    for path in models:
        model = load_model(path)
        if model.info.channels != recipe["channels"]:
            raise ValueError(
                f"{path} has {model.info.channels} channels, the recipe {recipe['channels']}"
            )
        results[str(path)] = validate.evaluate(
            model.network(), items, recipe, torch.device("cpu"), None
        )
    return results
