#!/usr/bin/env bash
# Write constraints.txt: the exact versions of every package in an environment where the whole
# suite passed (default: the active one, else ./.venv). CI and scripts/setup_and_test.sh install
# exactly these. Usage: scripts/lock_constraints.sh [VENV]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-${VIRTUAL_ENV:-$PWD/.venv}}
PY="$VENV/bin/python"
TMP=$(mktemp constraints.XXXXXX)
trap 'rm -f "$TMP"' EXIT
{
    echo "# Exact versions the test suite passed with (CI installs these): regenerate with"
    echo "# scripts/lock_constraints.sh after a green run of scripts/test_newest.sh or CI."
    echo "# Python $("$PY" -c 'import platform; print(platform.python_version())'), $(uname -m), $(date -u +%Y-%m-%d)"
    "$PY" -m pip freeze --exclude-editable --all | grep -vE '^(pip|setuptools|wheel)==' \
        | sed -E 's/^torch==([0-9.]+)\+cpu$/torch==\1/' | LC_ALL=C sort -f
} > "$TMP"
mv "$TMP" constraints.txt
echo "wrote constraints.txt ($(grep -vc '^#' constraints.txt) packages)"
