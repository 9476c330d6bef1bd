"""One background thread that calls a reading function at a fixed period (>= 10 Hz).

Used by the utilisation sampler (:class:`irene.measure.sampler.Sampler`) and by NVML's power
sampling on GPUs without an energy counter. A failing reading is kept and re-raised by
:meth:`PeriodicSampler.stop`, never swallowed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from irene.measure.base import Clock


class PeriodicSampler:
    """Calls ``read()`` once at :meth:`start`, every ``period_s`` seconds in a daemon thread,
    and once at :meth:`stop`, which returns ``(times, readings)`` (times from ``clock``, s)."""

    def __init__(self, read: Callable[[], Any], period_s: float, *,
                 clock: Clock = time.perf_counter, name: str = "irene-sampler") -> None:
        if not 0 < period_s <= 0.1:
            raise ValueError(f"sampling period must be in (0, 0.1] s (>= 10 Hz), got {period_s}")
        self.read, self.period_s, self.clock, self.name = read, period_s, clock, name
        self.times: list[float] = []
        self.readings: list[Any] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._errors: list[BaseException] = []

    @property
    def running(self) -> bool:
        return self._thread is not None

    def _sample(self) -> None:
        reading = self.read()
        self.times.append(self.clock())
        self.readings.append(reading)

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.period_s):
                self._sample()
        except BaseException as exc:  # re-raised by stop(), never swallowed
            self._errors.append(exc)

    def start(self) -> None:
        """Take a first reading and start the thread."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name}: already running")
        self.times, self.readings, self._errors = [], [], []
        self._stop.clear()
        self._sample()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def halt(self) -> None:
        """Stop the thread without a final reading (after an error in the window)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def stop(self) -> tuple[list[float], list[Any]]:
        """Stop the thread, take a last reading and return every (time, reading)."""
        if self._thread is None:
            raise RuntimeError(f"{self.name}: stop() without start()")
        self.halt()
        if self._errors:
            raise RuntimeError(f"{self.name}: reading failed: {self._errors[0]}") \
                from self._errors[0]
        self._sample()
        return self.times, self.readings
