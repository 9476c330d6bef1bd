#!/usr/bin/env bash
# Set everything up on a fresh machine and run the test suite (the README's first command).
# torch is installed first, pinned to the CPU build, so pip never pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet torch==2.13.0
python3 -m pip install --quiet -e ".[dev]"
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    # headless Chromium for the HTML report's browser test (skipped cleanly where absent)
    (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
        || echo "chromium could not be installed; the browser test will be skipped"
fi
python3 -m ruff check .
python3 -m pytest -q
