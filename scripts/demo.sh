#!/usr/bin/env bash
# The main job on a fresh machine: create .venv with CPU PyTorch 2.13.0, install
# napari-mzsr, then super-resolve a bundled sample with the shipped weights and write
# the result and a before/after picture to mzsr_demo/ (or the folder given as $1).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${MZSR_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q torch==2.13.0
"$VENV/bin/python" -m pip install -q -e .
"$VENV/bin/napari-mzsr" demo -o "${1:-mzsr_demo}" --overwrite
