"""The self-check one scale down, on the validation split: what the kept network scores on
the son pair, one scale further down, and its true gain over bicubic (issue 36).

Images: synthetic fluorescence cells of seeds from ``--first-seed`` (the reported set uses
100-107) and BSD200 training photos downscaled x2 by area averaging and MATLAB bicubic;
never Set5, Set14 or City100. The network is adapted with the defaults, without the
self-check and the noise, so that every image has a network result to score.

    python -m benchmarks.coarser_check_validation --data ../shared/data --cells 16 \
        --first-seed 209 --photos 8 --out benchmarks/results/validation
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from napari_mzsr import iter_adapt
from napari_mzsr.core.degradation import degrade_tensor
from napari_mzsr.core.self_check import son_gain
from napari_mzsr.io.image_files import read_image
from napari_mzsr.pipeline.auto import check_pixels
from napari_mzsr.pipeline.images import image_data
from napari_mzsr.pipeline.run import drive

from .real_images import Item, bicubic, fluorescence_items, score
from .report import command_line, markdown_table, write_results

SCALE = (2.0, 2.0)


def downscaled(hr: np.ndarray, tool: str) -> np.ndarray:
    """``hr`` (uint8, even sides) at half size by area averaging or MATLAB bicubic."""
    from napari_mzsr import imresize

    hr = hr.astype(np.float64)
    if tool == "area":
        h, w = hr.shape[0] // 2, hr.shape[1] // 2
        lr = hr[: 2 * h, : 2 * w].reshape(h, 2, w, 2, -1).mean(axis=(1, 3))
    else:
        lr = imresize(hr, 0.5)
    return np.clip(np.rint(lr), 0, 255).astype(np.uint8)


def gains(item: Item) -> dict[str, float]:
    """True gain over bicubic of the default network, and its predicted gains on the
    son pair and one scale further down."""
    lr, hr = item.lr, item.hr
    adapted = drive(iter_adapt(lr, scale=SCALE, self_check=False, noise="off"))
    sr = adapted.apply(lr)[: hr.shape[0], : hr.shape[1]]
    base, _ = bicubic(lr, hr.shape[:2])
    data = image_data(lr)
    window = check_pixels(data, adapted.info.channels, torch.device("cpu"))
    kernel = torch.from_numpy(adapted.kernel).float()
    clamp = data.intensity.unit_range
    son = {"kernel": kernel, "scale": SCALE, "degradation": "area", "clamp": clamp}
    son_window = degrade_tensor(window, kernel, SCALE, "area").clamp(*clamp)
    return {
        "true": score(sr, item)[0] - score(base, item)[0],
        "son_pair": son_gain(adapted.net, window, **son),
        "one_scale_down": son_gain(adapted.net, son_window, **son),
    }


def main(argv: list[str] | None = None) -> Path:
    """Command-line entry point; returns the Markdown path."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the shared data folder")
    parser.add_argument("--cells", type=int, default=16)
    parser.add_argument("--first-seed", type=int, default=209)
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--first-photo", type=int, default=6, help="BSD200 index to start at")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/validation"))
    parser.add_argument("--name", default="coarser_check")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    rows = []
    for item in fluorescence_items(args.cells, first_seed=args.first_seed):
        rows.append({"image": f"cell seed {args.first_seed + len(rows)}", **gains(item)})
        print(rows[-1], flush=True)
    photos = sorted((args.data / "train" / "BSD200").glob("*.png"))
    for path in photos[args.first_photo : args.first_photo + args.photos]:
        hr = read_image(path)[0][:256, :256, :3]
        for tool in ("area", "matlab"):
            item = Item("validation", path.name, downscaled(hr, tool), hr, registered=False)
            rows.append({"image": f"{tool} {path.name}", **gains(item)})
            print(rows[-1], flush=True)
    table = [
        [r["image"], f"{r['true']:+.2f}", f"{r['son_pair']:+.2f}", f"{r['one_scale_down']:+.2f}"]
        for r in rows
    ]
    md_path, _ = write_results(
        args.out,
        args.name,
        "The self-check one scale down: validation (x2, defaults without self-check or noise)",
        command_line("benchmarks.coarser_check_validation", argv),
        [
            "Gains in dB over bicubic: true (against the reference), predicted on the son "
            "pair, and one scale further down (the son's son pair).",
            "",
            *markdown_table(["image", "true", "son pair", "one scale down"], table),
        ],
        {"rows": rows},
    )
    return md_path


if __name__ == "__main__":
    main()
