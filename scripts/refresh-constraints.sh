#!/usr/bin/env bash
# Refresh .ci/constraints.txt: install the package's open version ranges (pyproject.toml) into
# a fresh environment, run the whole test command there (so the refresh proves that the
# unpinned range still installs and passes), then write what was installed as the new pins.
# Review `git diff .ci/constraints.txt` and commit it with the test result.
set -euo pipefail
cd "$(dirname "$0")/.."
FRESH="$(mktemp -d)/venv"
EMPTY="$(mktemp)"
MZSR_VENV="$FRESH" MZSR_CONSTRAINTS="$EMPTY" bash scripts/test.sh "$@"
{
    sed -n '/^#/p' .ci/constraints.txt
    "$FRESH/bin/pip" freeze --exclude-editable | grep -v '^napari-mzsr' |
        sed 's/^torch==\([0-9.]*\)+cpu$/torch==\1/'
} > .ci/constraints.txt.new
mv .ci/constraints.txt.new .ci/constraints.txt
rm -rf "$(dirname "$FRESH")" "$EMPTY"
echo "rewrote .ci/constraints.txt from $FRESH"
