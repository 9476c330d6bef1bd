"""Numbers and names as a person reads them: energies with a unit, percents, short model names.

Every renderer (terminal, HTML page, figures) formats through these functions.
"""

from __future__ import annotations

import math

_UNITS = ((1e3, "kJ"), (1.0, "J"), (1e-3, "mJ"), (1e-6, "µJ"), (1e-9, "nJ"))


# --------------------------------------------------------------------------------------------
# formatting helpers shared by every renderer


def format_energy(joules: float | None, digits: int = 3) -> str:
    """An energy in joules as text with a readable unit: ``0.0123`` -> ``"12.3 mJ"``.

    ``digits`` significant digits; ``None`` -> ``"—"``; negative values keep their sign (used for
    differences).
    """
    if joules is None or (isinstance(joules, float) and math.isnan(joules)):
        return "—"
    rounded = float(f"{joules:.{digits}g}")  # round first: 0.9999 mJ is "1.00 mJ"
    if rounded == 0:
        return "0 J"
    magnitude = abs(rounded)
    scale, unit = next(((s, u) for s, u in _UNITS if magnitude >= s), _UNITS[-1])
    value = rounded / scale
    decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(value)) + 1e-9)))
    return f"{value:.{decimals}f} {unit}"


#: joules in one watt-hour
J_PER_WH = 3600.0
#: the smallest energy shown in watt-hours beside joules (0.01 Wh = 36 J): below it Wh says less
MIN_WH_SHOWN = 0.01


def energy_text(joules: float | None, digits: int = 3) -> str:
    """An energy as :func:`format_energy` gives it, with watt-hours (Wh, or kWh from 1 kWh on)
    beside from 0.01 Wh up: ``453.7`` -> ``"454 J (0.126 Wh)"``, ``7.2e6`` -> ``"7200 kJ (2
    kWh)"``; smaller energies are joules only. The one place energies for a person get Wh."""
    text = format_energy(joules, digits)
    if joules is None or not math.isfinite(joules) or abs(joules) / J_PER_WH < MIN_WH_SHOWN:
        return text
    wh = joules / J_PER_WH
    return f"{text} ({wh / 1000:.3g} kWh)" if abs(wh) >= 1000 else f"{text} ({wh:.3g} Wh)"


def format_percent(fraction: float | None, decimals: int = 1) -> str:
    """A fraction as percent text: ``0.613`` -> ``"61.3 %"``; ``None`` -> ``"—"``."""
    if fraction is None:
        return "—"
    return f"{100 * fraction:.{decimals}f} %"


def format_error(percent: float | None) -> str:
    """A signed percent error as text: ``-4.26`` -> ``"-4.3 %"``; ``None`` -> ``"—"``."""
    if percent is None:
        return "—"
    return f"{percent:+.1f} %"


def short_model_name(name: str) -> str:
    """The last part of a model name or path: ``"owner/gpt2"`` -> ``"gpt2"``,
    ``"/configs/tiny/config.json"`` -> ``"tiny"``."""
    parts = [p for p in name.replace("\\", "/").split("/") if p]
    if len(parts) > 1 and parts[-1].endswith(".json"):
        return parts[-2]
    return parts[-1] if parts else name
