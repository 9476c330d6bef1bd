"""The measurement protocol: how one callable's time and energy per call are measured.

Following IrEne and the AIPowerMeter benchmark:

1. **warm-up**: call the function ``warmup`` times (caches, lazy initialisation, allocator);
2. **repeat calibration**: choose ``repeats`` so one run of ``repeats`` back-to-back calls lasts at
   least ``max(protocol.min_run_seconds, meter.min_window_s)`` seconds (calibration calls are
   extra warm-up);
3. optionally measure **idle power** once per meter (``subtract_idle``) and subtract
   ``idle_W * run_duration`` from every run's energy;
4. **runs**: ``runs`` measurement windows, each timing ``repeats`` calls, with ``cooldown_s`` of
   sleep between runs;
5. per-call time and energy = **median over runs** of (run value / repeats); the 10th and 90th
   percentiles are kept as the spread.

Without a meter the same protocol times the callable (``energy_j`` is then None). Identical nodes
are measured once by the caller through :class:`MeasurementCache`, keyed by a node signature.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from irene.measure.base import Clock, Meter, WindowResult

if TYPE_CHECKING:
    from irene.measure.sampler import Sampler

#: node features produced by the protocol (IrEne's utilisation columns), 0.0 where unavailable
FEATURE_NAMES = ("cpu", "mem", "gpu", "gpu_mem", "gpu_clk", "gpu_mem_clk", "gpu_energy_mean")


@dataclass
class Protocol:
    """Settings of the measurement protocol (recorded in each tree's metadata).

    ``warmup``: calls before anything is measured. ``runs``: measured windows; per-call values
    are their median. ``min_run_seconds``: shortest run (s); with a meter the effective minimum is
    ``max(min_run_seconds, meter.min_window_s)``. ``max_repeats``: cap on calls per run.
    ``subtract_idle``: subtract the meter's idle power (W, measured once over ``idle_seconds``)
    times each run's duration. ``cooldown_s``: sleep between runs (s). ``dedup``: the caller
    measures identical nodes once (see :class:`MeasurementCache`). ``threads``: torch threads
    for CPU timings (None: 1 on a CPU device, which gives repeatable times on a shared machine;
    see :mod:`irene.measure.conditions`).
    """

    warmup: int = 1
    runs: int = 5
    min_run_seconds: float = 0.02
    max_repeats: int = 100_000
    subtract_idle: bool = False
    idle_seconds: float = 2.0
    cooldown_s: float = 0.0
    dedup: bool = True
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise ValueError(f"Protocol.warmup must be >= 0, got {self.warmup}")
        if self.runs < 1:
            raise ValueError(f"Protocol.runs must be >= 1, got {self.runs}")
        if not self.min_run_seconds >= 0:
            raise ValueError(f"Protocol.min_run_seconds must be >= 0, got {self.min_run_seconds}")
        if self.max_repeats < 1:
            raise ValueError(f"Protocol.max_repeats must be >= 1, got {self.max_repeats}")
        if not self.idle_seconds > 0:
            raise ValueError(f"Protocol.idle_seconds must be > 0, got {self.idle_seconds}")
        if not self.cooldown_s >= 0:
            raise ValueError(f"Protocol.cooldown_s must be >= 0, got {self.cooldown_s}")
        if self.threads is not None and not 1 <= self.threads <= 1024:
            raise ValueError(f"Protocol.threads must be from 1 to 1024, got {self.threads}")
        for name in ("min_run_seconds", "idle_seconds", "cooldown_s"):
            if not getattr(self, name) <= 3600:
                raise ValueError(f"Protocol.{name} must be at most 3600 s, got "
                                 f"{getattr(self, name)}")
        if self.runs > 1000 or self.warmup > 1000:
            raise ValueError("Protocol.runs and Protocol.warmup must be at most 1000")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form, for tree metadata."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Protocol:
        """Inverse of :meth:`to_dict`; keys that are not settings (derived ones) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def target_run_seconds(self, meter: Meter | None) -> float:
        """Shortest duration (s) of one run for this meter."""
        floor = meter.min_window_s if meter is not None else 0.0
        return max(self.min_run_seconds, floor)


@dataclass
class Measurement:
    """Result of :func:`measure_callable` for one callable (one tree node).

    ``time_s``: median wall time per call (s); ``energy_j``: median energy per call (J), None
    without a meter, idle-subtracted when ``idle_power_w`` is set; ``*_p10``/``*_p90``: 10th/90th
    percentiles over runs; ``repeats``: calls per run; ``runs``: number of runs;
    ``features``: cpu/mem/gpu/gpu_mem (%), gpu_clk/gpu_mem_clk (MHz) averaged over the runs, and
    ``gpu_energy_mean`` (J per call, NVML power x time per call); 0.0 where unavailable.
    ``meter``: name of the meter that produced ``energy_j`` (the ground truth), None without one.
    ``energy_by_domain``: median energy per call per domain (J). ``trusted``: every window was
    long enough for its meter.
    """

    time_s: float
    time_p10: float
    time_p90: float
    repeats: int
    runs: int
    energy_j: float | None = None
    energy_p10: float | None = None
    energy_p90: float | None = None
    energy_by_domain: dict[str, float] = field(default_factory=dict)
    features: dict[str, float] = field(default_factory=lambda: dict.fromkeys(FEATURE_NAMES, 0.0))
    meter: str | None = None
    trusted: bool = True
    idle_power_w: dict[str, float] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0 <= q <= 1) with linear interpolation (numpy's default method)."""
    if not values:
        raise ValueError("quantile of an empty sequence")
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _noop() -> None:
    return None


def _time_calls(fn: Callable[[], None], n: int, sync: Callable[[], None], clock: Clock) -> float:
    """Wall time (s) of ``n`` back-to-back calls, synchronised at both edges."""
    sync()
    t0 = clock()
    for _ in range(n):
        fn()
    sync()
    return clock() - t0


def calibrate_repeats(fn: Callable[[], None], target_s: float, *, max_repeats: int,
                      sync: Callable[[], None] = _noop,
                      clock: Clock = time.perf_counter) -> int:
    """Smallest-found number of calls whose run lasts at least ``target_s`` seconds.

    Starts from one call and grows the count from the measured time per call (with a 10% margin,
    at most x100 per step), stopping at ``max_repeats``.
    """
    n = 1
    while True:
        elapsed = _time_calls(fn, n, sync, clock)
        if elapsed >= target_s or n >= max_repeats:
            return n
        if elapsed <= 0:
            grow = 100
        else:
            grow = min(100.0, max(2.0, 1.1 * target_s / elapsed))
        n = min(max_repeats, max(n + 1, math.ceil(n * grow)))


def _weighted_mean_features(per_run: list[dict[str, float]], weights: list[float]) -> dict:
    total = sum(weights)
    out: dict[str, float] = {}
    keys = {k for d in per_run for k in d}
    for key in keys:
        if total > 0:
            pairs = zip(per_run, weights, strict=True)
            out[key] = sum(d.get(key, 0.0) * w for d, w in pairs) / total
        else:
            out[key] = statistics.fmean(d.get(key, 0.0) for d in per_run)
    return out


def measure_callable(fn: Callable[[], None], *, meter: Meter | None = None,
                     protocol: Protocol | None = None, sync: Callable[[], None] | None = None,
                     sampler: Sampler | None = None, clock: Clock = time.perf_counter,
                     sleep: Callable[[float], None] = time.sleep) -> Measurement:
    """Measure the time (and, with a meter, the energy) per call of ``fn`` under ``protocol``.

    ``sync`` is called at every window edge (e.g. ``torch.cuda.synchronize``) so asynchronous
    device work is inside the window. ``sampler`` (optional) averages utilisation and clocks over
    the windows. ``clock`` (s) and ``sleep`` are injectable for tests; a meter keeps its own clock.
    """
    protocol = protocol if protocol is not None else Protocol()
    sync = sync if sync is not None else _noop

    for _ in range(protocol.warmup):
        fn()
    sync()
    repeats = calibrate_repeats(fn, protocol.target_run_seconds(meter),
                                max_repeats=protocol.max_repeats, sync=sync, clock=clock)

    idle_w: dict[str, float] | None = None
    if meter is not None and protocol.subtract_idle:
        idle_w = meter.idle_power_w(protocol.idle_seconds, sleep=sleep)

    times: list[float] = []
    windows: list[WindowResult] = []
    per_run_features: list[dict[str, float]] = []
    for run in range(protocol.runs):
        if run > 0 and protocol.cooldown_s > 0:
            sleep(protocol.cooldown_s)
        sync()
        if sampler is not None:
            sampler.begin_window()
        if meter is not None:
            meter.begin()
        t0 = clock()
        try:
            for _ in range(repeats):
                fn()
            sync()
        except BaseException:
            _abort_window(meter, sampler)
            raise
        elapsed = clock() - t0
        if meter is not None:
            windows.append(meter.end())
        if sampler is not None:
            per_run_features.append(sampler.end_window())
        times.append(elapsed / repeats)

    return _summarise(times, windows, per_run_features, repeats, protocol.runs, meter, idle_w)


def _abort_window(meter: Meter | None, sampler: Sampler | None) -> None:
    """Close the meter window and sampler window left open by an exception in the callable."""
    if meter is not None:
        meter.abort()
    if sampler is not None:
        sampler.abort_window()


def _per_call_energies(windows: list[WindowResult], repeats: int,
                       idle_w: dict[str, float] | None) -> dict[str, list[float]]:
    """Energy per call (J) per domain for each window, idle power x duration subtracted."""
    out: dict[str, list[float]] = {}
    for w in windows:
        for dom, e in w.energy_j.items():
            idle = (idle_w or {}).get(dom, 0.0) * w.duration_s
            out.setdefault(dom, []).append((e - idle) / repeats)
    return out


def _summarise(times: list[float], windows: list[WindowResult],
               per_run_features: list[dict[str, float]], repeats: int, runs: int,
               meter: Meter | None, idle_w: dict[str, float] | None) -> Measurement:
    m = Measurement(time_s=statistics.median(times), time_p10=quantile(times, 0.1),
                    time_p90=quantile(times, 0.9), repeats=repeats, runs=runs)
    if per_run_features:
        avg = _weighted_mean_features(per_run_features, [t * repeats for t in times])
        gpu_power_w = avg.pop("gpu_power_w", 0.0)
        for name in FEATURE_NAMES:
            m.features[name] = float(avg.get(name, 0.0))
        m.features["gpu_energy_mean"] = gpu_power_w * m.time_s
    if meter is not None:
        per_domain = _per_call_energies(windows, repeats, idle_w)
        totals = [sum(vals[i] for vals in per_domain.values()) for i in range(len(windows))]
        m.energy_j = statistics.median(totals)
        m.energy_p10, m.energy_p90 = quantile(totals, 0.1), quantile(totals, 0.9)
        m.energy_by_domain = {d: statistics.median(v) for d, v in per_domain.items()}
        m.meter = meter.name
        m.trusted = all(w.trusted for w in windows)
        m.idle_power_w = idle_w
        m.notes = list(dict.fromkeys(n for w in windows for n in w.notes))
        if idle_w is not None and m.energy_j <= 0:
            m.trusted = False
            m.notes.append(f"energy after idle subtraction is {m.energy_j:.3g} J <= 0: the "
                           "call is too small to separate from idle power")
    return m


@dataclass
class MeasurementCache:
    """Measure identical nodes once: results keyed by node signature, with hit/miss counts.

    ``get_or_measure(signature, measure)`` returns the cached :class:`Measurement` for the
    signature or calls ``measure()`` and caches it. A ``None`` signature (node not replayable
    as a unit, or dedup off) is always measured and counted as a miss.
    """

    enabled: bool = True
    hits: int = 0
    misses: int = 0
    _store: dict[Hashable, Measurement] = field(default_factory=dict, repr=False)

    def get_or_measure(self, signature: Hashable | None,
                       measure: Callable[[], Measurement]) -> Measurement:
        if self.enabled and signature is not None and signature in self._store:
            self.hits += 1
            return self._store[signature]
        self.misses += 1
        result = measure()
        if self.enabled and signature is not None:
            self._store[signature] = result
        return result

    def __len__(self) -> int:
        return len(self._store)

    def stats(self) -> dict[str, int]:
        """``{"hits": .., "misses": .., "unique": ..}`` for logs and metadata."""
        return {"hits": self.hits, "misses": self.misses, "unique": len(self._store)}
