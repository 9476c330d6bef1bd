"""What every figure shares: writing it (PNG or SVG, atomically), the synthetic-data label,
the colour cycle and energy axes with readable units. Used by :mod:`irene.report.plots` and
:mod:`irene.report.generation`."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import Formatter, LogLocator, MaxNLocator, NullFormatter

from irene.files import atomic_write
from irene.report import synthetic_label
from irene.report.format import format_energy
from irene.tree import Tree

FORMATS = ("png", "svg")
COLOUR_CYCLE = ("#2f6fb3", "#e67e22", "#2e9e5b", "#c0392b", "#8e44ad", "#16a085", "#7f8c8d",
          "#d4ac0d", "#34495e", "#e84393")


SYNTHETIC_COLOUR = "#c0392b"


def label_figure(figure: Figure, trees: Sequence[Tree]) -> str | None:
    """Put the synthetic-data label in red above ``figure`` when ``trees`` are not real
    measurements; returns the label written (None when there is nothing to say)."""
    label = synthetic_label(trees)
    if label:
        figure.text(0.5, 1.0, label, ha="center", va="bottom", color=SYNTHETIC_COLOUR,
                    fontsize=13, fontweight="bold")
    return label


def save_figure(figure: Figure, path: str | os.PathLike, trees: Sequence[Tree]) -> Path:
    """Label ``figure`` if ``trees`` are synthetic (:func:`label_figure`), then write it."""
    label_figure(figure, trees)
    return write_figure(figure, path)


def write_figure(figure: Figure, path: str | os.PathLike) -> Path:
    """Write ``figure`` to ``path`` (format from the suffix: .png or .svg), atomically."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ValueError(f"{path}: figures are written as {' or '.join(FORMATS)}, not {fmt!r}")
    metadata = {"Date": None} if fmt == "svg" else {}
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format=fmt, dpi=150, bbox_inches="tight", metadata=metadata)
    return path


class EnergyFormatter(Formatter):
    """Tick labels with units (``1 mJ``, ``20 µJ``) and as many significant digits as it takes
    to tell every label on the axis apart (two ticks never read the same)."""

    def __call__(self, value: float, pos: int | None = None) -> str:
        return format_energy(value, 1)

    def format_ticks(self, values) -> list[str]:
        distinct = len({v for v in values if v > 0})
        for digits in range(1, 7):
            labels = [format_energy(v, digits) if v > 0 else "" for v in values]
            if len({label for label in labels if label}) == distinct:
                break
        return labels


def energy_axis(axis, which: str = "y") -> None:
    """Make ``which`` axis logarithmic with ticks that read ``1 mJ``, ``20 µJ`` ...

    Call after the data is drawn: spans under two decades get ticks at 1, 2 and 5 × 10^k,
    spans under half a decade evenly spaced ticks; labels get the digits they need.
    """
    target = axis.yaxis if which == "y" else axis.xaxis
    (axis.set_yscale if which == "y" else axis.set_xscale)("log")
    axis.autoscale_view()
    low, high = axis.get_ylim() if which == "y" else axis.get_xlim()
    decades = math.log10(max(high, 1e-300) / max(low, 1e-300))
    if decades < 0.5:
        target.set_major_locator(MaxNLocator(nbins=5))
    else:
        subs = (1.0, 2.0, 5.0) if decades < 2 else (1.0,)
        target.set_major_locator(LogLocator(base=10, subs=subs))
    target.set_major_formatter(EnergyFormatter())
    target.set_minor_formatter(NullFormatter())


def require_data(condition: bool, message: str) -> None:
    """ValueError(``message``) unless ``condition``: a figure without the data it needs."""
    if not condition:
        raise ValueError(message)
