"""Energy (J) from power samples (W): trapezoidal integral with linear interpolation at the edges.

Used by the wattmeter-log meter and by NVML's power-sampling path on GPUs without an energy counter.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence


class CoverageError(ValueError):
    """The samples do not cover the requested window."""


def interpolate(ts: Sequence[float], ws: Sequence[float], t: float) -> float:
    """Power (W) at time ``t`` (s), linearly interpolated between the two surrounding samples."""
    i = bisect.bisect_right(ts, t)
    if i == 0 or (i == len(ts) and t > ts[-1]):
        raise CoverageError(f"time {t} is outside the samples [{ts[0]}, {ts[-1]}]")
    if i == len(ts) or ts[i - 1] == t:
        return float(ws[i - 1])
    t_a, t_b = ts[i - 1], ts[i]
    return float(ws[i - 1] + (ws[i] - ws[i - 1]) * (t - t_a) / (t_b - t_a))


def integrate_power(ts: Sequence[float], ws: Sequence[float], t0: float, t1: float) -> float:
    """Energy (J) between ``t0`` and ``t1`` (s) of the power curve through samples (``ts``, ``ws``).

    ``ts`` must be sorted (s) and cover the window: ``ts[0] <= t0`` and ``ts[-1] >= t1``; the curve
    is linear between samples, so a sample straddling an edge contributes only its inside part.
    """
    if len(ts) != len(ws):
        raise ValueError(f"{len(ts)} timestamps but {len(ws)} power values")
    if t1 < t0:
        raise ValueError(f"window ends ({t1}) before it starts ({t0})")
    if not ts or ts[0] > t0 or ts[-1] < t1:
        span = f"[{ts[0]}, {ts[-1]}]" if ts else "(no samples)"
        raise CoverageError(f"samples {span} do not cover the window [{t0}, {t1}]")
    lo = bisect.bisect_right(ts, t0)
    hi = bisect.bisect_left(ts, t1)
    points_t = [t0, *ts[lo:hi], t1]
    points_w = [interpolate(ts, ws, t0), *ws[lo:hi], interpolate(ts, ws, t1)]
    energy = 0.0
    for k in range(1, len(points_t)):
        energy += 0.5 * (points_w[k] + points_w[k - 1]) * (points_t[k] - points_t[k - 1])
    return energy
