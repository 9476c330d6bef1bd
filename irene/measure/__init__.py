"""Measuring ground-truth energy: meters (NVML, RAPL, wattmeter log), sampler and protocol.

Public interface::

    meter = open_meter("auto")            # or "none", "nvml", "rapl", "wattmeter:log.csv"
    with meter.window() as w: ...         # w.result: WindowResult(energy_j, duration_s, meter,..)
    m = measure_callable(fn, meter=meter, protocol=Protocol(runs=5), sync=None, sampler=None)
    m.time_s, m.energy_j, m.features
    leaky_features(m.meter)               # features a predictor must drop for this ground truth
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: where each public name lives; imported on first use, so that a command that only builds its
#: parser (``irene.measure.options``) does not load the sampler, psutil and the meters
_HOMES = {
    "Meter": "base", "MeterUnavailable": "base", "Window": "base", "WindowResult": "base",
    "measurement_metadata": "metadata",
    "CombinedMeter": "meters", "leaky_features": "meters", "meter_names": "meters",
    "open_meter": "meters",
    "add_measure_arguments": "options", "protocol_from_args": "options",
    "FEATURE_NAMES": "protocol", "Measurement": "protocol", "MeasurementCache": "protocol",
    "Protocol": "protocol", "measure_callable": "protocol",
    "Sampler": "sampler", "SimulatedMeter": "simulated",
}


def __getattr__(name: str) -> Any:
    """The public names, each imported from its module when first asked for (PEP 562)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"irene.measure.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))


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
