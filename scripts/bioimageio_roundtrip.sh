#!/usr/bin/env bash
# A user's run exported as a BioImage.IO package and re-applied WITHOUT napari-mzsr: the
# demo's input (a Landsat crop blurred and downscaled x2) adapted and exported with
# .venv's napari-mzsr, then run by bioimageio.core in a separate venv that has only torch
# and bioimageio.core. Writes docs/bioimageio_before_after.png. Run from a clone after
# `bash scripts/demo.sh` (which makes .venv; the export needs `pip install -e ".[bioimageio]"`).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-bioimageio_roundtrip}"
mkdir -p "$OUT"
.venv/bin/napari-mzsr demo -o "$OUT/demo" --overwrite
.venv/bin/napari-mzsr export "$OUT/demo/landsat_input.tif" -o "$OUT/landsat_x2.zip" \
    --scale 2 --kernel iso:2.0 --model direct-x2 --steps 10 --overwrite
[ -x "$OUT/venv/bin/python" ] || python3 -m venv "$OUT/venv"
"$OUT/venv/bin/python" -m pip install -q torch==2.13.0 "bioimageio.core==0.11.0" "pydantic>=2.10,<2.11"
"$OUT/venv/bin/python" docs/bioimageio_apply.py "$OUT/landsat_x2.zip" \
    "$OUT/demo/landsat_input.tif" "$OUT/demo/landsat_original.tif" docs/bioimageio_before_after.png
