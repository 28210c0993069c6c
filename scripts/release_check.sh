#!/usr/bin/env bash
# Release readiness on a clone: build the sdist and the wheel, `twine check` them, install the
# wheel into a FRESH venv (torch pinned as in the test command) and run `napari-mzsr demo`,
# `napari-mzsr models` and `npe2 validate` from it. Prints one line per check; exits non-zero
# at the first failure. Usage: bash scripts/release_check.sh [WORK_FOLDER]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-$(mktemp -d)}"
PY="${PYTHON:-.venv/bin/python}"
mkdir -p "$WORK" && rm -rf "$WORK/dist"
"$PY" -m build --outdir "$WORK/dist" . > "$WORK/build.log"
echo "built: $(cd "$WORK/dist" && ls)"
"$PY" -m twine check --strict "$WORK"/dist/*
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q torch==2.13.0 -c .ci/constraints.txt
"$WORK/venv/bin/pip" install -q "$WORK"/dist/*.whl -c .ci/constraints.txt
(cd "$WORK" && venv/bin/napari-mzsr demo -o demo --overwrite)
"$WORK/venv/bin/napari-mzsr" models | head -3
"$WORK/venv/bin/pip" install -q npe2 -c .ci/constraints.txt
"$WORK/venv/bin/npe2" validate napari-mzsr
echo "release check passed: wheel installed in a fresh venv, demo ran, manifest valid"
