"""``cpu-model``: an *estimated, not measured* CPU energy for hosts without RAPL.

What CodeCarbon does when it has no energy counter: the CPU package draws its thermal design
power (TDP, W) in proportion to the CPU utilisation of the process being metered. Over a window
the process (its threads, and its children if asked) used ``cpu_s`` seconds of CPU time on a
machine of ``n`` logical CPUs, so its mean utilisation of the package is
``cpu_s / (duration_s * n)`` and the estimate is::

    energy_j = tdp_w * cpu_s / n

Idle and uncore power, frequency scaling, memory and other processes are not modelled: the
figure ranks work on one machine, it is not a measurement. Every result of this meter says so
(``WindowResult.notes``, ``Meter.estimated``), and every table, file and page that shows its
energies labels them *estimated, not measured*.
"""

from __future__ import annotations

import os
import time

import psutil

from irene.measure.base import Clock, Meter, MeterUnavailable, WindowResult

#: CodeCarbon's fallback TDP for a CPU model it does not know (W)
DEFAULT_TDP_W = 85.0
ESTIMATED_LABEL = "estimated, not measured"
NOTE = (f"{ESTIMATED_LABEL}: CPU power model (package TDP x CPU utilisation of the metered "
        "process), not an energy counter")


def process_cpu_seconds(process: psutil.Process, *, children: bool = True) -> float:
    """CPU time (user + system, s) used so far by ``process`` (and its live children)."""
    times = process.cpu_times()
    total = times.user + times.system
    if children:
        for child in process.children(recursive=True):
            try:
                ct = child.cpu_times()
            except psutil.Error:
                continue  # a child that ended between listing and reading
            total += ct.user + ct.system
    return float(total)


class CpuModelMeter(Meter):
    """Energy (J) = ``tdp_w`` x CPU seconds of the metered process / logical CPUs; estimated.

    ``pid``: the process to meter (default: this one; :meth:`attach` changes it, e.g. to a
    server's). ``cpu_count``: logical CPUs the TDP covers (default ``os.cpu_count()``).
    """

    name = "cpu-model"
    estimated = True
    min_window_s = 0.1  # psutil's CPU times tick at the kernel's clock (10 ms)

    def __init__(self, tdp_w: float = DEFAULT_TDP_W, *, pid: int | None = None,
                 cpu_count: int | None = None, children: bool = True,
                 clock: Clock = time.perf_counter) -> None:
        super().__init__(clock=clock)
        if not tdp_w > 0:
            raise MeterUnavailable(f"cpu-model: the TDP must be > 0 W, got {tdp_w}")
        self.tdp_w = float(tdp_w)
        self.cpu_count = int(cpu_count or os.cpu_count() or 1)
        self.children = children
        self._process = psutil.Process(pid or os.getpid())
        self._start_cpu_s = 0.0

    @property
    def pid(self) -> int:
        return self._process.pid

    def attach(self, pid: int) -> None:
        """Meter process ``pid`` from the next window on (MeterUnavailable if it is gone)."""
        try:
            self._process = psutil.Process(pid)
        except psutil.Error as exc:
            raise MeterUnavailable(f"cpu-model: cannot read process {pid}: {exc}") from exc

    def domains(self) -> list[str]:
        return ["cpu:model"]

    def _begin(self) -> None:
        self._start_cpu_s = process_cpu_seconds(self._process, children=self.children)

    def _end(self, duration_s: float) -> WindowResult:
        cpu_s = process_cpu_seconds(self._process, children=self.children) - self._start_cpu_s
        energy = self.tdp_w * max(cpu_s, 0.0) / self.cpu_count
        return WindowResult({"cpu:model": energy}, duration_s, self.name,
                            trusted=duration_s >= self.min_window_s, notes=(NOTE,))


def parse_cpu_model_spec(arg: str) -> CpuModelMeter:
    """``cpu-model`` or ``cpu-model:WATTS`` (the package TDP) -> the meter."""
    if not arg:
        return CpuModelMeter()
    try:
        tdp = float(arg)
    except ValueError:
        raise MeterUnavailable(f"cpu-model:{arg}: the TDP must be a number of watts, e.g. "
                               "cpu-model:65") from None
    return CpuModelMeter(tdp)
