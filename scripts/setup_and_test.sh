#!/usr/bin/env bash
# Set everything up and run the test suite (the README's first command).
#
# * Installs into the active virtual environment, or creates and uses ./.venv when none is active
#   (never into the system interpreter).
# * Installs the exact versions CI tests with (constraints.txt; regenerate it with
#   scripts/lock_constraints.sh), torch first as its CPU build, so pip never pulls a CUDA build.
# * Then runs ruff and the whole test suite (GPU, RAPL and browser tests skip where absent).
#
# IRENE_VENV=DIR picks another environment folder; IRENE_NO_TESTS=1 stops after installing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CONSTRAINTS="$ROOT/constraints.txt"

if [ -n "${VIRTUAL_ENV:-}" ]; then
    VENV=$VIRTUAL_ENV
    echo "using the active virtual environment $VENV"
else
    VENV=${IRENE_VENV:-$ROOT/.venv}
    if [ ! -x "$VENV/bin/python" ]; then
        echo "creating a virtual environment in $VENV"
        python3 -m venv "$VENV"
    fi
fi
PY="$VENV/bin/python"
"$PY" -m pip install --quiet --upgrade pip
TORCH=$(grep -E '^torch==' "$CONSTRAINTS")
# torch's CPU build: from this machine's disk where it lies there, else from PyTorch's CPU index
"$PY" -m pip install --quiet "$TORCH" -c "$CONSTRAINTS" \
    || "$PY" -m pip install --quiet "$TORCH" -c "$CONSTRAINTS" \
        --index-url https://download.pytorch.org/whl/cpu
"$PY" -m pip install --quiet -c "$CONSTRAINTS" -e ".[dev]"

if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    # headless Chromium for the HTML report's browser test (skipped cleanly where absent)
    (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
        || echo "chromium could not be installed; the browser test will be skipped"
fi
if [ -z "${VIRTUAL_ENV:-}" ]; then
    echo "installed into $VENV: activate it with 'source ${VENV#"$ROOT"/}/bin/activate'"
fi
[ "${IRENE_NO_TESTS:-0}" = 1 ] && exit 0
"$PY" -m ruff check .
"$PY" -m pytest -q
