#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine and run it:
# system packages for a virtual X display (napari's GUI tests), a virtual environment
# with CPU PyTorch 2.13.0, the package with its testing extra, then ruff and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null && ! command -v xvfb-run >/dev/null; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 \
        libxkbcommon-x11-0 libxcb-randr0 libxcb-render-util0 libxcb-image0 libxcb-shape0 \
        libgl1 libegl1 >/dev/null
fi

VENV="${MZSR_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip
# Pinned here (not in pyproject.toml): this project's CI machines carry a CPU build of
# exactly this version, which pip takes; an unpinned torch would pull a newer multi-GB
# CUDA build there. On an ordinary Linux machine this pin is PyPI's CUDA build too; add
# --index-url https://download.pytorch.org/whl/cpu for the CPU one (see docs/install.md).
# Every other package at the exact version of .ci/constraints.txt (see that file).
CONSTRAINTS="${MZSR_CONSTRAINTS:-.ci/constraints.txt}"
"$PY" -m pip install -q -c "$CONSTRAINTS" torch==2.13.0
"$PY" -m pip install -q -c "$CONSTRAINTS" -e ".[testing]"

"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
export QT_QPA_PLATFORM=xcb
if command -v xvfb-run >/dev/null; then
    xvfb-run -a "$VENV/bin/pytest" "$@"
else
    "$VENV/bin/pytest" "$@"
fi
