"""What a measured tree records about how it was measured (root metadata keys)."""

from __future__ import annotations

from typing import Any

from irene.measure.base import Meter
from irene.measure.meters import leaky_features
from irene.measure.protocol import MeasurementCache, Protocol


def measurement_metadata(meter: Meter | None, protocol: Protocol, *,
                         cache: MeasurementCache | None = None,
                         idle_power_w: dict[str, float] | None = None) -> dict[str, Any]:
    """Root metadata for a tree measured with ``meter`` under ``protocol``.

    Keys: ``meter`` (name of the meter that produced ``ground_truth_energy``, ``"none"`` without
    one, ``"simulated"`` for simulated energies), ``meter_domains``, ``leaky_features`` (node
    features a predictor must not use with this ground truth), ``protocol`` (its settings plus
    the effective minimum run length, s), ``idle_power_w`` (W per domain, when subtracted) and
    ``dedup`` (hit/miss counts of the node cache).
    """
    meta: dict[str, Any] = {
        "meter": meter.name if meter is not None else "none",
        "meter_domains": meter.domains() if meter is not None else [],
        "leaky_features": sorted(leaky_features(meter)),
        "protocol": {**protocol.to_dict(),
                     "effective_min_run_seconds": protocol.target_run_seconds(meter)},
    }
    if idle_power_w is not None:
        meta["idle_power_w"] = dict(idle_power_w)
    if cache is not None:
        meta["dedup"] = cache.stats()
    return meta
