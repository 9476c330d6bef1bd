"""Data sets that ship with the package, by name, and resolving a DATA argument to a file."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from irene.tree import Tree

#: name -> (file under irene/data, description)
BUILTIN_DATASETS: dict[str, tuple[str, str]] = {
    "synthetic-demo": (
        "synthetic_demo_trees.jsonl.gz",
        "SYNTHETIC: 36 small transformer-shaped trees whose energies follow the formula in "
        "irene/synthetic.py (not measured); regenerate with scripts/make_synthetic_dataset.py",
    ),
}


def resolve_dataset(name_or_path: str) -> Path:
    """A path to an existing file, or the packaged file of a built-in data set name."""
    path = Path(name_or_path)
    if path.exists():
        return path
    if name_or_path in BUILTIN_DATASETS:
        return Path(str(resources.files("irene") / "data" / BUILTIN_DATASETS[name_or_path][0]))
    raise FileNotFoundError(
        f"{name_or_path}: no such file, and not a built-in data set "
        f"(built-in: {', '.join(BUILTIN_DATASETS)})")


def is_synthetic(trees: Sequence[Tree]) -> bool:
    """True if any tree is marked synthetic in its metadata."""
    return any(bool(t.meta.get("synthetic")) for t in trees)


SYNTHETIC_NOTE = ("NOTE: this data set is SYNTHETIC (energies follow a documented formula, "
                  "not measurements); its figures say nothing about real hardware.")
