"""Measuring ground-truth energy: meters (NVML, RAPL, wattmeter log), sampler and protocol.

Public interface::

    meter = open_meter("auto")            # or "none", "nvml", "rapl", "wattmeter:log.csv"
    with meter.window() as w: ...         # w.result: WindowResult(energy_j, duration_s, meter,..)
    m = measure_callable(fn, meter=meter, protocol=Protocol(runs=5), sync=None, sampler=None)
    m.time_s, m.energy_j, m.features
"""

from irene.measure.base import Meter, MeterUnavailable, Window, WindowResult
from irene.measure.meters import open_meter
from irene.measure.protocol import (
    FEATURE_NAMES,
    Measurement,
    MeasurementCache,
    Protocol,
    measure_callable,
)
from irene.measure.simulated import SimulatedMeter

__all__ = [
    "FEATURE_NAMES",
    "Measurement",
    "MeasurementCache",
    "Meter",
    "MeterUnavailable",
    "Protocol",
    "SimulatedMeter",
    "Window",
    "WindowResult",
    "measure_callable",
    "open_meter",
]
