"""A simulated meter, for tests and benchmarks only (never chosen by ``open_meter("auto")``).

Deterministic formula: a window of ``d`` seconds (by the meter's clock) consumes
``energy_j = {"simulated": power_w * d + window_overhead_j}``. Trees measured with it record
``meter: "simulated"`` so nobody mistakes them for real measurements.
"""

from __future__ import annotations

import time

from irene.measure.base import Clock, Meter, WindowResult


class SimulatedMeter(Meter):
    """Energy = ``power_w`` (W) x window duration (s) + ``window_overhead_j`` (J), one domain."""

    name = "simulated"

    def __init__(self, power_w: float = 50.0, *, window_overhead_j: float = 0.0,
                 min_window_s: float = 0.0, clock: Clock = time.perf_counter) -> None:
        super().__init__(clock=clock)
        if power_w < 0 or window_overhead_j < 0:
            raise ValueError("SimulatedMeter: power_w and window_overhead_j must be >= 0")
        self.power_w = float(power_w)
        self.window_overhead_j = float(window_overhead_j)
        self.min_window_s = float(min_window_s)

    def domains(self) -> list[str]:
        return ["simulated"]

    def _begin(self) -> None:
        return None

    def _end(self, duration_s: float) -> WindowResult:
        energy = self.power_w * duration_s + self.window_overhead_j
        return WindowResult({"simulated": energy}, duration_s, self.name, trusted=True)
