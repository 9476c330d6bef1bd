#!/usr/bin/env bash
# The scheduled-style check: install the NEWEST versions pyproject.toml allows (no constraints)
# into a throw-away virtual environment, print them, and run ruff and the test suite there.
# A failure here means a new release broke irene before a user meets it: fix the code or tighten
# the range, then refresh constraints.txt (scripts/lock_constraints.sh).
# Usage: scripts/test_newest.sh [pytest args...]
# IRENE_LOCK=1: when everything passed, write constraints.txt from this environment
# (scripts/lock_constraints.sh) so CI installs exactly what was just tested.
set -euo pipefail
cd "$(dirname "$0")/.."
unset VIRTUAL_ENV
VENV=$(mktemp -d /tmp/irene-newest.XXXXXX)
trap 'rm -rf "$VENV"' EXIT
python3 -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install --quiet --upgrade pip
# the newest torch the declared range allows (its CPU build lies on this machine's disk; elsewhere
# set PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu to avoid a CUDA build)
TORCH_RANGE=$(sed -nE 's/^ *"(torch[^"]*)",.*$/\1/p' pyproject.toml | head -1 | tr -d ' ')
"$PY" -m pip install --quiet --upgrade "$TORCH_RANGE"
"$PY" -m pip install --quiet --upgrade --upgrade-strategy eager -e ".[dev]"
echo "newest allowed versions:"
"$PY" -m pip list --format=freeze 2>/dev/null \
    | grep -iE '^(torch|transformers|numpy|scipy|safetensors|tokenizers|huggingface.hub|matplotlib|rich|pyyaml|pytest|ruff|onnxruntime|onnx|ray|mlflow-skinny|fastapi|uvicorn|httpx|pydantic)=='
"$PY" -m ruff check .
"$PY" -m pytest -q "$@"
if [ "${IRENE_LOCK:-0}" = 1 ]; then
    bash scripts/lock_constraints.sh "$VENV"
fi
