"""Utilisation sampler: a background thread (>= 10 Hz) averaging node features over a window.

Per window it returns the means of: ``cpu`` (system-wide CPU utilisation, %) and ``mem`` (RAM in
use, %) from psutil; with NVML, ``gpu`` (GPU busy, %), ``gpu_mem`` (memory-controller busy, %),
``gpu_clk`` (SM clock, MHz) and ``gpu_mem_clk`` (memory clock, MHz), averaged over the visible
GPUs, and ``gpu_power_w`` (W, summed over the visible GPUs), which the protocol turns into
``gpu_energy_mean`` (J per call). Without NVML the GPU fields are 0.0.
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

import psutil

from irene.measure.base import MeterUnavailable

GPU_FIELDS = ("gpu", "gpu_mem", "gpu_clk", "gpu_mem_clk", "gpu_power_w")
Reading = dict[str, float]


def read_host() -> Reading:
    """CPU utilisation since the previous call (%) and RAM in use (%), from psutil."""
    return {"cpu": float(psutil.cpu_percent(interval=None)),
            "mem": float(psutil.virtual_memory().percent)}


class NvmlGpuSource:
    """Reads utilisation, clocks and power of the visible GPUs through NVML.

    Readings a GPU does not support (probed once at start, e.g. utilisation on some boards) are
    listed in ``unsupported`` and left out, so those features stay 0.0.
    """

    def __init__(self, *, pynvml: ModuleType | None = None,
                 env: dict[str, str] | None = None) -> None:
        from irene.measure.nvml import import_pynvml, init_nvml, torch_cuda_uuids, visible_handles

        cuda_uuids = torch_cuda_uuids() if pynvml is None else None
        self.pynvml = pynvml if pynvml is not None else import_pynvml()
        init_nvml(self.pynvml)
        try:
            self.handles = [h for _, h in visible_handles(self.pynvml, env, cuda_uuids)]
        except self.pynvml.NVMLError as exc:
            self.pynvml.nvmlShutdown()
            raise MeterUnavailable(f"NVML: cannot list GPUs ({exc})") from exc
        if not self.handles:
            self.pynvml.nvmlShutdown()
            raise MeterUnavailable("NVML: no GPU visible to this process")
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
        self.pynvml.nvmlShutdown()


class Sampler:
    """Samples host (and GPU) readings every ``period_s`` during a window and averages them.

    ``begin_window()`` starts the thread; ``end_window()`` stops it, takes a final reading and
    returns the mean of every field over the window's samples (at least one). ``host`` and ``gpu``
    are the reading functions (injectable); ``gpu=None`` means no GPU fields.
    """

    def __init__(self, *, period_s: float = 0.05, host: Callable[[], Reading] = read_host,
                 gpu: Callable[[], Reading] | None = None) -> None:
        if not 0 < period_s <= 0.1:
            raise ValueError(f"Sampler.period_s must be in (0, 0.1] (>= 10 Hz), got {period_s}")
        self.period_s, self.host, self.gpu = period_s, host, gpu
        self._samples: list[Reading] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._errors: list[BaseException] = []

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

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.period_s):
                self._samples.append(self._read())
        except BaseException as exc:  # re-raised by end_window, never swallowed
            self._errors.append(exc)

    def begin_window(self) -> None:
        """Start sampling (resets psutil's CPU baseline)."""
        if self._thread is not None:
            raise RuntimeError("Sampler: a window is already open")
        self._samples, self._errors = [], []
        self.host()  # the next CPU reading covers the window only
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="irene-sampler", daemon=True)
        self._thread.start()

    def abort_window(self) -> None:
        """Stop sampling without a result (after an error inside the window)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def end_window(self) -> Reading:
        """Stop sampling; the mean of every field over the window."""
        if self._thread is None:
            raise RuntimeError("Sampler: end_window() without begin_window()")
        self._stop.set()
        self._thread.join()
        self._thread = None
        if self._errors:
            raise RuntimeError(f"Sampler: reading failed: {self._errors[0]}") from self._errors[0]
        self._samples.append(self._read())
        keys = {k for s in self._samples for k in s}
        return {k: statistics.fmean(s.get(k, 0.0) for s in self._samples) for k in keys}

    def close(self) -> None:
        close = getattr(self.gpu, "close", None)
        if close is not None:
            close()
