"""Explaining energy trees: breakdowns (pure data), terminal tables, one HTML page, figures.

- :mod:`irene.report.breakdown` — shares, top-N, per-primitive-type aggregates, errors, comparisons
- :mod:`irene.report.terminal` — rich rendering of a breakdown or a comparison
- :mod:`irene.report.html` — one self-contained HTML report (no network needed to open it)
- :mod:`irene.report.plots` — matplotlib figures (PNG or SVG), including
  :func:`~irene.report.plots.plot_crossvalidation` for the cross-validation folds

Submodules are imported on use, so ``import irene.report`` stays cheap (no matplotlib).

Trees that are not real measurements (the built-in ``synthetic-demo`` data set, a simulated
meter) are labelled in every output: :func:`synthetic_label` decides, each renderer shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from irene.tree import Tree

#: colours of the three node types (model / module / ML primitive), shared by page and figures
NODE_TYPE_COLOURS = {"model": "#8e44ad", "module": "#2f6fb3", "ml": "#2e9e5b"}

#: the one line every output made from trees that are not real measurements carries
SYNTHETIC_LABEL = "SYNTHETIC DATA — energies from a formula, not measured"


def synthetic_label(trees: Sequence[Tree]) -> str | None:
    """:data:`SYNTHETIC_LABEL` when any of ``trees`` is not a real measurement (see
    :func:`irene.datasets.is_synthetic`: the synthetic data set or a simulated meter), else None.
    """
    from irene.datasets import is_synthetic

    return SYNTHETIC_LABEL if is_synthetic(trees) else None


def measured_word(trees: Sequence[Tree]) -> str:
    """How to call ground-truth energy in labels: ``"measured"``, or ``"synthetic 'measured'"``
    for trees whose "measured" energy is a formula's output."""
    return "synthetic 'measured'" if synthetic_label(trees) else "measured"


def energy_for(tree: Tree, source: str) -> str | None:
    """Which hardware (and energy scope) the explained energy of ``tree`` speaks for: for
    predictions, the hardware the predictor's training trees were measured on; for
    measurements, the machine and meter that took them. None when the tree does not say."""
    if source == "predicted":
        from irene.model.state import TrainingData

        stamp = tree.meta.get("predictor")
        if not isinstance(stamp, dict) or not isinstance(stamp.get("trained_on"), dict):
            return None
        try:
            trained_on = TrainingData.from_dict(stamp["trained_on"])
            calibrated_on = TrainingData.from_dict(stamp["calibrated_on"]) \
                if isinstance(stamp.get("calibrated_on"), dict) else None
        except ValueError:
            return None
        if calibrated_on is not None:
            return (f"{calibrated_on.hardware_text()} (a predictor trained on "
                    f"{trained_on.hardware_text()}, calibrated to it)")
        return f"{trained_on.hardware_text()} (what the predictor was trained on)"
    where = tree.meta.get("device_name") or tree.meta.get("device")
    meter = tree.meta.get("meter")
    if not where and not meter:
        return None
    return f"{where or 'unrecorded hardware'}" + (f" (meter: {meter})" if meter else "")


def per_call_text(tree: Tree) -> str:
    """What one tree's energy is for: "per inference call", "per prefill", "per decode step",
    "per training step", or "for all N decode steps" (a decode phase summed by
    :mod:`irene.generation`)."""
    summed = tree.meta.get("decode_sum")
    if isinstance(summed, dict) and isinstance(summed.get("steps"), int):
        return f"for all {summed['steps']} decode steps"
    return {"prefill": "per prefill", "decode": "per decode step",
            "train": "per training step"}.get(tree.key.phase, "per inference call")
