"""Measuring ground-truth energy: meters (NVML, RAPL, wattmeter log), sampler and protocol.

Public interface::

    meter = open_meter("auto")            # or "none", "nvml", "rapl", "wattmeter:log.csv"
    with meter.window() as w: ...         # w.result: WindowResult(energy_j, duration_s, meter,..)
    m = measure_callable(fn, meter=meter, protocol=Protocol(runs=5), sync=None, sampler=None)
    m.time_s, m.energy_j, m.features
    leaky_features(m.meter)               # features a predictor must drop for this ground truth
"""

from irene.measure.base import Meter, MeterUnavailable, Window, WindowResult
from irene.measure.metadata import measurement_metadata
from irene.measure.meters import CombinedMeter, leaky_features, meter_names, open_meter
from irene.measure.options import add_measure_arguments, protocol_from_args
from irene.measure.protocol import (
    FEATURE_NAMES,
    Measurement,
    MeasurementCache,
    Protocol,
    measure_callable,
)
from irene.measure.sampler import Sampler
from irene.measure.simulated import SimulatedMeter

__all__ = [
    "FEATURE_NAMES",
    "CombinedMeter",
    "Measurement",
    "MeasurementCache",
    "Meter",
    "MeterUnavailable",
    "Protocol",
    "Sampler",
    "SimulatedMeter",
    "Window",
    "WindowResult",
    "add_measure_arguments",
    "leaky_features",
    "measure_callable",
    "measurement_metadata",
    "meter_names",
    "open_meter",
    "protocol_from_args",
]
