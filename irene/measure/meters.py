"""``open_meter(spec)``: turn a ``--meter`` value into a :class:`~irene.measure.base.Meter`.

Specs: ``"none"`` -> None (record features and times only), ``"auto"`` (every real meter that
works here, combined), ``"nvml"``, ``"rapl"``, ``"wattmeter:PATH.csv"``, ``"simulated"`` (tests
only). A real meter that cannot be opened raises :class:`MeterUnavailable` listing each meter tried
and why it failed.
"""

from __future__ import annotations

from irene.measure.base import Meter, MeterUnavailable
from irene.measure.simulated import SimulatedMeter

NO_METER_HINT = "to record features and times only, use --meter none"


def open_meter(spec: str | None) -> Meter | None:
    """Open the meter named by ``spec`` (see the module docstring)."""
    spec = (spec or "none").strip()
    if spec.lower() == "none":
        return None
    if spec.lower() == "simulated":
        return SimulatedMeter()
    raise MeterUnavailable(f"meter {spec!r} is not available yet; {NO_METER_HINT}")
