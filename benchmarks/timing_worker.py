"""Time one ``super_resolve`` call in a fresh process, for whichever napari_mzsr is first
on ``PYTHONPATH``: this tree's or an older checkout's (run as a script, not with ``-m``,
so that it imports nothing of this tree's ``benchmarks`` package).

    PYTHONPATH=/path/to/old/src python benchmarks/timing_worker.py in.npz --steps 10 --threads 2

``in.npz`` holds ``lr`` (uint8 input) and ``hr`` (uint8 ground truth of the scaled size).
Prints one JSON line: seconds (wall and process CPU), PSNR (Y channel, shave 2), the
load average before and after, and which napari_mzsr ran. The keyword call used here is
accepted by the API before and after its redesign.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch


def _commit(path: Path) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kernel", type=float, default=2.0, help="isotropic variance")
    parser.add_argument("--model", default="direct-x2")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import napari_mzsr
    from napari_mzsr import psnr, super_resolve

    with np.load(args.data) as data:
        lr, hr = data["lr"], data["hr"]
    options = dict(scale=2, kernel=args.kernel, model=args.model, device="cpu")
    super_resolve(lr[:48, :48], steps=1, **options)  # warm-up: imports, oneDNN kernels
    load_before = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    sr = super_resolve(lr, steps=args.steps, **options)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    source = Path(napari_mzsr.__file__).resolve().parent
    record = {
        "seconds": wall,
        "cpu_seconds": cpu,
        "psnr": float(psnr(sr, hr, shave=2)),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "threads": torch.get_num_threads(),
        "napari_mzsr": str(source),
        "commit": _commit(source),
    }
    print(json.dumps(record))


if __name__ == "__main__":
    sys.exit(main())
