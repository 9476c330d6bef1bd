"""Energy per request when requests overlap: each metered interval's energy split among the
requests active in it, in proportion to their active time.

The meter is read as a series of back-to-back intervals ``[t0, t1)`` with energy ``E`` (J)
(:class:`MeterTrace`). In one interval of length ``T = t1 - t0`` let ``o_r`` be the time request
``r`` was active in it (from the client sending it to its last byte, clipped to the interval)
and ``U`` the time at least one request was active (the union, ``U <= T``). Then

* ``E * (T - U) / T`` is **idle** energy (no request active), reported apart;
* ``E * U / T`` is **active** energy, and request ``r`` receives ``E * (U / T) * o_r / sum(o)``.

So two requests active over the same stretch share its energy equally (power is not assumed to
grow with the number of requests), the shares plus the idle energy sum to the metered total
exactly, and an interval nobody was active in is idle entirely. Active time, not tokens, is the
weight: a token's cost differs between prompts (a longer sequence costs more per token), and
time is what each request held the server for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from irene.measure.base import Meter


@dataclass(frozen=True)
class Interval:
    """One metered interval: start and end (s, the load generator's clock) and energy (J)."""

    t0: float
    t1: float
    energy_j: float


@dataclass(frozen=True)
class Attribution:
    """Joules per request (in the order given), idle joules, and the metered total."""

    per_request_j: list[float]
    idle_j: float
    total_j: float

    @property
    def active_j(self) -> float:
        return float(sum(self.per_request_j))


def _union_length(spans: list[tuple[float, float]]) -> float:
    """Total length covered by possibly overlapping ``(start, end)`` spans."""
    covered, end = 0.0, float("-inf")
    for start, stop in sorted(spans):
        if stop <= end:
            continue
        covered += stop - max(start, end)
        end = stop
    return covered


def attribute(intervals: Sequence[Interval],
              requests: Sequence[tuple[float, float]]) -> Attribution:
    """Split each interval's energy among the ``requests`` (``(start, end)`` times, same clock
    as the intervals) active in it, in proportion to active time; the rest is idle (see the
    module docstring). ValueError for an interval or request that ends before it starts."""
    for start, end in requests:
        if end < start:
            raise ValueError(f"request ends ({end}) before it starts ({start})")
    shares = [0.0] * len(requests)
    idle = total = 0.0
    for iv in intervals:
        length = iv.t1 - iv.t0
        if length < 0:
            raise ValueError(f"interval ends ({iv.t1}) before it starts ({iv.t0})")
        total += iv.energy_j
        overlaps = [max(0.0, min(iv.t1, end) - max(iv.t0, start)) for start, end in requests]
        active = sum(overlaps)
        if length <= 0 or active <= 0:
            idle += iv.energy_j
            continue
        spans = [(max(iv.t0, s), min(iv.t1, e)) for (s, e), o in zip(requests, overlaps,
                                                                      strict=True) if o > 0]
        busy_fraction = min(1.0, _union_length(spans) / length)
        active_j = iv.energy_j * busy_fraction
        idle += iv.energy_j - active_j
        for index, overlap in enumerate(overlaps):
            if overlap > 0:
                shares[index] += active_j * overlap / active
    return Attribution(per_request_j=shares, idle_j=idle, total_j=total)


class MeterTrace:
    """Reads ``meter`` as back-to-back intervals of ``period_s`` in a background thread.

    :meth:`start` opens the first window; every ``period_s`` the thread closes the window and
    opens the next at once; :meth:`stop` closes the last and returns the :class:`Interval` list
    (times from ``clock``). An error reading the meter is re-raised by :meth:`stop`, never
    swallowed. The energy between one window's end and the next's start (microseconds) is not
    counted; the total is the sum of the intervals.
    """

    def __init__(self, meter: Meter, period_s: float = 0.25, *,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        if period_s <= 0:
            raise ValueError(f"period must be > 0 s, got {period_s}")
        self.meter, self.clock = meter, clock
        self.period_s = max(period_s, meter.min_window_s)
        self.intervals: list[Interval] = []
        self.notes: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._t0 = 0.0
        self._lock = threading.Lock()

    def _cut(self, reopen: bool = True) -> None:
        """Close the open window, record it, open the next (if ``reopen``)."""
        with self._lock:
            result = self.meter.end()
            t1 = self.clock()
            self.intervals.append(Interval(self._t0, t1, result.total_j))
            for note in result.notes:
                if note not in self.notes:
                    self.notes.append(note)
            if reopen:
                self.meter.begin()
                self._t0 = self.clock()

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.period_s):
                self._cut()
        except BaseException as exc:  # re-raised by stop()
            self._error = exc

    def start(self) -> None:
        self.intervals, self.notes, self._error = [], [], None
        self._stop.clear()
        self.meter.begin()
        self._t0 = self.clock()
        self._thread = threading.Thread(target=self._loop, name="irene-meter-trace",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> list[Interval]:
        if self._thread is None:
            raise RuntimeError("MeterTrace.stop() without start()")
        self._stop.set()
        self._thread.join()
        self._thread = None
        if self._error is not None:
            self.meter.abort()
            raise RuntimeError(f"reading the meter failed: {self._error}") from self._error
        self._cut(reopen=False)
        return list(self.intervals)
