"""Energy from an external wattmeter's log (IrEne's own method).

The log is a CSV file, written by the meter's logging software while irene runs, with one sample
per line: ``timestamp,watts``. ``timestamp`` is Unix time in seconds (float) or an ISO 8601 date
(naive dates are local time); an optional header line (``timestamp,watts``) and blank lines are
ignored. Timestamps must increase.

A window's energy is the integral of the power curve between its edges (linear between samples,
interpolated at the edges). The window's edges are read from ``time.time()`` plus ``offset_s``
(the log clock minus this machine's clock, if they differ). The log must cover the window: the
meter waits up to ``wait_s`` for samples after the window's end, then raises.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from irene.checks import Checker, InputError
from irene.measure.base import Clock, Meter, MeterUnavailable, WindowResult
from irene.measure.integrate import CoverageError, integrate_power

#: the largest power a wall-meter sample may report (W): larger values are corrupt lines
MAX_WATTS = 100_000.0


class WattmeterLogError(InputError):
    """The wattmeter log is malformed or does not cover a window; the message names the file."""


def parse_timestamp(text: str) -> float:
    """Unix time (s) from a float or an ISO 8601 string (ValueError for neither)."""
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text).timestamp()


class WattmeterLog:
    """Incremental reader of a ``timestamp,watts`` CSV; ``refresh()`` reads lines appended since."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.times: list[float] = []
        self.watts: list[float] = []
        self._pos = 0
        self._line = 0
        self.refresh()

    def refresh(self) -> None:
        """Parse the complete lines appended since the last call."""
        with self.path.open("rb") as fh:
            fh.seek(self._pos)
            data = fh.read()
        end = data.rfind(b"\n") + 1  # a partly written last line waits for the next refresh
        try:
            text = data[:end].decode()
        except UnicodeDecodeError as exc:
            raise WattmeterLogError(f"{self.path}:{self._line + 1}: not UTF-8 text") from exc
        for raw in text.splitlines():
            self._line += 1
            self._parse_line(raw.strip())
        self._pos += end

    def _parse_line(self, line: str) -> None:
        where = f"{self.path}:{self._line}"
        if not line or (self._line == 1 and not line[0].isdigit() and line[0] not in "+-."):
            return  # blank line or header
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 2:
            raise WattmeterLogError(f"{where}: expected 'timestamp,watts', got {line!r}")
        check = Checker(str(self.path), {(): self._line}, error=WattmeterLogError)
        t = check.number(fields[0], ("timestamp",), parse=parse_timestamp)
        w = check.number(fields[1], ("watts",), parse=float, minimum=0.0, maximum=MAX_WATTS)
        if self.times and t <= self.times[-1]:
            raise check.error(("timestamp",), f"{t} does not increase (previous "
                                              f"{self.times[-1]})")
        self.times.append(t)
        self.watts.append(w)

    def sample_period_s(self) -> float | None:
        """Median time between samples (s), None with fewer than two samples."""
        if len(self.times) < 2:
            return None
        return statistics.median(b - a for a, b in zip(self.times, self.times[1:], strict=False))


class WattmeterMeter(Meter):
    """Whole-machine energy (domain ``wattmeter``) from an external meter's live CSV log.

    ``offset_s``: log clock minus this machine's ``time.time()`` (s). ``wait_s``: how long to wait
    for the log to reach the window's end. ``clock`` and ``sleep`` are injectable for tests.
    """

    name = "wattmeter"

    def __init__(self, path: Path | str, *, offset_s: float = 0.0, wait_s: float = 5.0,
                 clock: Clock = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(clock=clock)
        try:
            self.log = WattmeterLog(path)
        except OSError as exc:
            raise MeterUnavailable(f"wattmeter: cannot read log {path}: {exc}") from exc

        self.offset_s, self.wait_s, self.sleep = offset_s, wait_s, sleep
        period = self.log.sample_period_s() or 1.0
        #: several samples per window, and at least one second
        self.min_window_s = max(1.0, 5 * period)
        self._begin_t: float = 0.0

    def domains(self) -> list[str]:
        return ["wattmeter"]

    def _begin(self) -> None:
        self._begin_t = self.clock() + self.offset_s

    def _wait_for_coverage(self, t1: float) -> None:
        deadline = self.clock() + self.wait_s
        self.log.refresh()
        while (not self.log.times or self.log.times[-1] < t1) and self.clock() < deadline:
            self.sleep(min(0.1, self.wait_s))
            self.log.refresh()

    def _end(self, duration_s: float) -> WindowResult:
        t0 = self._begin_t
        t1 = t0 + duration_s
        self._wait_for_coverage(t1)
        try:
            energy = integrate_power(self.log.times, self.log.watts, t0, t1)
        except CoverageError as exc:
            raise WattmeterLogError(
                f"{self.log.path}: the log does not cover the window [{t0:.3f}, {t1:.3f}] "
                f"(log clock; {exc}); is the meter logging, and is offset_s right?") from exc
        period = self.log.sample_period_s() or float("inf")
        trusted = duration_s >= period
        notes = () if trusted else (
            f"window {duration_s:.3f} s is shorter than the log's sample period {period:.3f} s",)
        return WindowResult({"wattmeter": energy}, duration_s, self.name, trusted=trusted,
                            notes=notes)
