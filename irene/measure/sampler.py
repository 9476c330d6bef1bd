"""Utilisation sampler: a background thread (>= 10 Hz) averaging node features over a window.

Per window it returns the means of: ``cpu`` (system-wide CPU utilisation, %) and ``mem`` (RAM in
use, %) from psutil; with NVML, ``gpu`` (GPU busy, %), ``gpu_mem`` (memory-controller busy, %),
``gpu_clk`` (SM clock, MHz) and ``gpu_mem_clk`` (memory clock, MHz), averaged over the visible
GPUs, and ``gpu_power_w`` (W, summed over the visible GPUs), which the protocol turns into
``gpu_energy_mean`` (J per call). Without NVML the GPU fields are 0.0.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from types import ModuleType
from typing import Any

import psutil

from irene.measure.base import MeterUnavailable
from irene.measure.periodic import PeriodicSampler

GPU_FIELDS = ("gpu", "gpu_mem", "gpu_clk", "gpu_mem_clk", "gpu_power_w")
Reading = dict[str, float]


def read_host() -> Reading:
    """CPU utilisation since the previous call (%) and RAM in use (%), from psutil."""
    return {"cpu": float(psutil.cpu_percent(interval=None)),
            "mem": float(psutil.virtual_memory().percent)}


class NvmlGpuSource:
    """Reads utilisation, clocks and power of the visible GPUs through NVML (its own
    :class:`~irene.measure.nvml.NvmlDevices`).

    Readings a GPU does not support (probed once at start, e.g. utilisation on some boards) are
    listed in ``unsupported`` and left out, so those features stay 0.0.
    """

    def __init__(self, *, pynvml: ModuleType | None = None,
                 env: dict[str, str] | None = None) -> None:
        from irene.measure.nvml import NvmlDevices

        self.gpus = NvmlDevices(pynvml=pynvml, env=env)
        self.pynvml, self.handles = self.gpus.pynvml, self.gpus.handles
        self.readers = self._supported_readers()
        self.unsupported = sorted(set(GPU_FIELDS) - set(self.readers))

    def _all_readers(self) -> dict[str, Callable[[Any], float]]:
        nv = self.pynvml
        return {
            "gpu": lambda h: float(nv.nvmlDeviceGetUtilizationRates(h).gpu),
            "gpu_mem": lambda h: float(nv.nvmlDeviceGetUtilizationRates(h).memory),
            "gpu_clk": lambda h: float(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)),
            "gpu_mem_clk": lambda h: float(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM)),
            "gpu_power_w": lambda h: nv.nvmlDeviceGetPowerUsage(h) / 1000.0,
        }

    def _supported_readers(self) -> dict[str, Callable[[Any], float]]:
        supported = {}
        for name, read in self._all_readers().items():
            try:
                for h in self.handles:
                    read(h)
            except self.pynvml.NVMLError:
                continue
            supported[name] = read
        return supported

    def __call__(self) -> Reading:
        """Mean utilisation (%) and clocks (MHz) over the GPUs, total power (W)."""
        out: Reading = {}
        for name, read in self.readers.items():
            values = [read(h) for h in self.handles]
            out[name] = sum(values) if name == "gpu_power_w" else statistics.fmean(values)
        return out

    def close(self) -> None:
        self.gpus.close()


class Sampler:
    """Samples host (and GPU) readings every ``period_s`` during a window and averages them.

    ``begin_window()`` starts the thread; ``end_window()`` stops it, takes a final reading and
    returns the mean of every field over the window's samples (at least one). ``host`` and ``gpu``
    are the reading functions (injectable); ``gpu=None`` means no GPU fields.
    """

    def __init__(self, *, period_s: float = 0.05, host: Callable[[], Reading] = read_host,
                 gpu: Callable[[], Reading] | None = None) -> None:
        self.period_s, self.host, self.gpu = period_s, host, gpu
        self._thread = PeriodicSampler(self._read, period_s, name="irene-sampler")

    @classmethod
    def create(cls, *, gpu: bool | None = None, period_s: float = 0.05) -> Sampler:
        """A sampler with psutil and, when NVML works (or ``gpu=True``, which then raises), GPUs."""
        source: Callable[[], Reading] | None = None
        if gpu is not False:
            try:
                source = NvmlGpuSource()
            except MeterUnavailable:
                if gpu:
                    raise
        return cls(period_s=period_s, gpu=source)

    def _read(self) -> Reading:
        reading = dict(self.host())
        if self.gpu is not None:
            reading.update(self.gpu())
        return reading

    def begin_window(self) -> None:
        """Start sampling (resets psutil's CPU baseline)."""
        if self._thread.running:
            raise RuntimeError("Sampler: a window is already open")
        self.host()  # the next CPU reading covers the window only
        self._thread.start()

    def abort_window(self) -> None:
        """Stop sampling without a result (after an error inside the window)."""
        self._thread.halt()

    def end_window(self) -> Reading:
        """Stop sampling; the mean of every field over the window."""
        if not self._thread.running:
            raise RuntimeError("Sampler: end_window() without begin_window()")
        _, samples = self._thread.stop()
        samples = samples[1:] or samples  # the first reading only resets psutil's baseline
        keys = {k for sample in samples for k in sample}
        return {k: statistics.fmean(sample.get(k, 0.0) for sample in samples) for k in keys}

    def close(self) -> None:
        close = getattr(self.gpu, "close", None)
        if close is not None:
            close()
