"""Where the repository lies, for tests that read its files (README, scripts, data sets):
found from this file, so a test file may sit at any depth under ``tests/``."""

from __future__ import annotations

from pathlib import Path

#: the repository's root (the folder holding ``pyproject.toml``)
ROOT = Path(__file__).resolve().parents[2]
