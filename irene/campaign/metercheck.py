"""Check a meter before a campaign spends its time: is it there, how often does it update,
what does it read at idle.

For NVML: whether every GPU has the total-energy counter (Volta and newer; else the meter falls
back to integrating power samples), the counter's observed update period (the counter of the
first GPU polled for ``poll_seconds``; the median interval between changes), and the idle power
over ``idle_seconds``. For other meters: the idle power. ``irene run PLAN --check-meter`` prints
it; ``scripts/collect_reference.sh`` runs it first and stops when the meter is missing.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from irene.measure.base import Meter


@dataclass
class MeterCheck:
    """``meter`` and ``domains``; ``energy_counter``: NVML's total-energy counter present
    (None: not NVML); ``update_period_s``: observed counter update period (s);
    ``min_window_s``: the meter's shortest trusted window (s); ``idle_power_w``: W per
    domain; ``notes``: anything doubtful."""

    meter: str
    domains: list[str]
    min_window_s: float
    energy_counter: bool | None = None
    update_period_s: float | None = None
    idle_power_w: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [f"meter: {self.meter} (domains: {', '.join(self.domains)}); shortest trusted "
               f"window {self.min_window_s:.2f} s"]
        if self.energy_counter is not None:
            out.append(f"NVML total-energy counter: {'present' if self.energy_counter else 'ABSENT (power samples are integrated instead)'}")  # noqa: E501
        if self.update_period_s is not None:
            out.append(f"observed counter update period: {1000 * self.update_period_s:.1f} ms")
        idle = ", ".join(f"{d} {w:.1f} W" for d, w in self.idle_power_w.items())
        out.append(f"idle power: {idle or '-'}")
        out.extend(f"note: {n}" for n in self.notes)
        return out


def _nvml_meters(meter: Meter) -> list[Any]:
    from irene.measure.meters import CombinedMeter
    from irene.measure.nvml import NvmlMeter

    parts = meter.meters if isinstance(meter, CombinedMeter) else [meter]
    return [m for m in parts if isinstance(m, NvmlMeter)]


def counter_period(read: Any, seconds: float, *, clock: Any = time.perf_counter,
                   sleep: Any = time.sleep) -> float | None:
    """Median interval (s) between changes of ``read()`` polled every 0.5 ms for ``seconds``
    of ``clock`` (None if it changed fewer than twice)."""
    changes: list[float] = []
    last = read()
    end = clock() + seconds
    while clock() < end:
        value = read()
        if value != last:
            changes.append(clock())
            last = value
        sleep(0.0005)
    if len(changes) < 2:
        return None
    return statistics.median(b - a for a, b in zip(changes, changes[1:], strict=False))


def check_meter(meter: Meter, *, idle_seconds: float = 2.0,
                poll_seconds: float = 1.0, clock: Any = time.perf_counter,
                sleep: Any = time.sleep) -> MeterCheck:
    """Check an opened meter (see the module docstring). ``clock`` (s) and ``sleep`` time the
    counter polling and the idle reading's sleep (injectable for tests; the meter keeps its
    own clock for its windows)."""
    result = MeterCheck(meter=meter.name, domains=meter.domains(),
                        min_window_s=meter.min_window_s)
    for nvml in _nvml_meters(meter):
        result.energy_counter = bool(nvml.uses_counter)
        if nvml.uses_counter:
            result.update_period_s = counter_period(lambda n=nvml: n.gpus.energy_mj()[0],
                                                    poll_seconds, clock=clock, sleep=sleep)
            if result.update_period_s is None:
                result.notes.append(f"the energy counter changed less than twice in "
                                    f"{poll_seconds:.1f} s")
            elif 5 * result.update_period_s > nvml.min_window_s:
                result.notes.append(
                    f"the counter updates every {1000 * result.update_period_s:.0f} ms: the "
                    f"{nvml.min_window_s:.2f} s minimum window holds fewer than 5 updates; "
                    "raise protocol.min_run_seconds")
    result.idle_power_w = meter.idle_power_w(idle_seconds, sleep=sleep)
    if any(w <= 0 for w in result.idle_power_w.values()):
        result.notes.append("an idle reading is zero or negative: the meter may not be "
                            "measuring this device")
    return result
