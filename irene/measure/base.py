"""The meter interface every energy meter implements (a Zeus-like measurement window).

A meter has one job: the energy (J) consumed per domain, and the wall time (s), between
:meth:`Meter.begin` and :meth:`Meter.end`::

    with meter.window() as w:
        run_something()
    w.result.total_j, w.result.energy_j["gpu:0"], w.result.duration_s

Domains are named ``"gpu:<index>"`` (NVML, index as seen by this process), ``"cpu:package-<n>"``
and ``"cpu:dram-<n>"`` (RAPL, per socket), ``"wattmeter"`` (external meter log) and
``"simulated"``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

Clock = Callable[[], float]


class MeterUnavailable(RuntimeError):
    """No requested meter can be used here; the message says what was tried and why."""


@dataclass(frozen=True)
class WindowResult:
    """Energy and time of one measurement window.

    ``energy_j`` maps each domain to the energy in joules consumed during the window;
    ``duration_s`` is the window's wall time in seconds; ``meter`` names the meter;
    ``trusted`` is False when the window is too short for the meter's update period (or the
    reading is otherwise doubtful), and ``notes`` says why.
    """

    energy_j: dict[str, float]
    duration_s: float
    meter: str
    trusted: bool = True
    notes: tuple[str, ...] = field(default=())

    @property
    def total_j(self) -> float:
        """Energy summed over all domains, in joules."""
        return float(sum(self.energy_j.values()))

    @property
    def mean_power_w(self) -> float:
        """Mean total power over the window in watts (0.0 for an empty window)."""
        return self.total_j / self.duration_s if self.duration_s > 0 else 0.0


class Window:
    """Handle yielded by :meth:`Meter.window`; ``result`` is set when the block exits."""

    def __init__(self) -> None:
        self.result: WindowResult | None = None

    @property
    def total_j(self) -> float:
        if self.result is None:
            raise RuntimeError("the window is still open; read the result after the with-block")
        return self.result.total_j


class Meter:
    """Base class of all meters.

    Subclasses set ``name`` and ``min_window_s`` (the shortest window, in seconds, whose energy the
    meter reports with useful accuracy: several counter update periods) and implement
    :meth:`_begin` and :meth:`_end`. Only one window can be open at a time.
    """

    name: str = "meter"
    #: shortest window (s) worth measuring; the protocol's runs last at least this long
    min_window_s: float = 0.0
    #: True for a model's estimate (``cpu-model``), not a measurement: shown as such everywhere
    estimated: bool = False

    def __init__(self, *, clock: Clock = time.perf_counter) -> None:
        self.clock = clock
        self._t0: float | None = None
        self._idle_power_w: dict[str, float] | None = None

    # -- to implement -------------------------------------------------------------------------
    def domains(self) -> list[str]:
        """Names of the domains this meter reports."""
        raise NotImplementedError

    def _begin(self) -> None:
        """Take the starting reading of a window."""
        raise NotImplementedError

    def _end(self, duration_s: float) -> WindowResult:
        """Take the closing reading and return the window's result."""
        raise NotImplementedError

    def _abort(self) -> None:
        """Drop the open window's state (stop threads); no reading is needed."""

    def close(self) -> None:
        """Release resources (threads, library handles). Safe to call twice."""

    # -- window API -----------------------------------------------------------------------------
    def begin(self) -> None:
        """Open a window."""
        if self._t0 is not None:
            raise RuntimeError(f"meter {self.name!r}: a window is already open")
        self._begin()
        self._t0 = self.clock()

    def end(self) -> WindowResult:
        """Close the open window and return its energy per domain and duration."""
        if self._t0 is None:
            raise RuntimeError(f"meter {self.name!r}: end() without begin()")
        duration = self.clock() - self._t0
        self._t0 = None
        return self._end(duration)

    def abort(self) -> None:
        """Close the open window, if any, without a result (after an error inside it)."""
        if self._t0 is not None:
            self._t0 = None
            self._abort()

    @contextlib.contextmanager
    def window(self) -> Iterator[Window]:
        """Context manager around :meth:`begin` / :meth:`end`; the result is on the handle."""
        handle = Window()
        self.begin()
        try:
            yield handle
        except BaseException:
            self.abort()
            raise
        handle.result = self.end()

    # -- idle power -----------------------------------------------------------------------------
    def idle_power_w(self, seconds: float = 2.0, *,
                     sleep: Callable[[float], None] = time.sleep) -> dict[str, float]:
        """Idle power per domain in watts, measured once over ``seconds`` of sleep and cached."""
        if self._idle_power_w is None:
            with self.window() as w:
                sleep(seconds)
            assert w.result is not None
            d = w.result.duration_s
            if d <= 0:
                raise RuntimeError(f"meter {self.name!r}: idle window has zero duration")
            self._idle_power_w = {k: v / d for k, v in w.result.energy_j.items()}
        return dict(self._idle_power_w)

    def __enter__(self) -> Meter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} min_window_s={self.min_window_s}>"
