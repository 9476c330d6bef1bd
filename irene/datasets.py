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
    """True if any tree's energies are not real measurements: its root metadata says
    ``synthetic: true`` (the formula of irene/synthetic.py), its meter (or ground-truth meter)
    is, or includes, ``"simulated"`` (irene.measure's SimulatedMeter), or its predictions come
    from a predictor trained or calibrated on such data (``predictor.trained_on.synthetic``,
    ``predictor.calibrated_on.synthetic``)."""
    return any(bool(t.meta.get("synthetic")) or _simulated_meter(t.meta.get("meter"))
               or _simulated_meter(t.meta.get("ground_truth_meter"))
               or _trained_on_synthetic(t.meta.get("predictor")) for t in trees)


def _trained_on_synthetic(predictor: object) -> bool:
    """Whether a predictions stamp says the predictor was trained or calibrated on synthetic
    data."""
    if not isinstance(predictor, dict):
        return False
    return any(isinstance(predictor.get(key), dict) and bool(predictor[key].get("synthetic"))
               for key in ("trained_on", "calibrated_on"))


def _simulated_meter(name: object) -> bool:
    """Whether a meter name (``"simulated"``, ``"nvml+simulated"``) includes the simulated one."""
    return isinstance(name, str) and "simulated" in name.split("+")


SYNTHETIC_NOTE = ("NOTE: this data set is SYNTHETIC (energies follow a documented formula, "
                  "not measurements); its figures say nothing about real hardware.")
