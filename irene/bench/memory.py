"""Peak memory of a block of work: process RSS on the CPU, torch's allocator on CUDA.

On the CPU the kernel's high-water mark of the resident set (``VmHWM``) is reset through
``/proc/self/clear_refs`` where Linux allows it, and read back at the end; elsewhere a
background thread samples the RSS with psutil every few milliseconds. Either way the figure is
the process's peak RSS minus a baseline, in bytes: approximate (the allocator may keep freed
pages, other threads allocate too), and always labelled as RSS. On CUDA it is
``torch.cuda.max_memory_allocated`` minus the allocation at the baseline: memory that another
runtime (ONNX Runtime) allocates itself is not seen.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def rss_bytes() -> int:
    """The process's resident set size now, in bytes."""
    return int(psutil.Process().memory_info().rss)


def release_memory(device: str = "cpu") -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc ``malloc_trim``), and
    empty torch's CUDA cache on a GPU: so the next baseline starts from what is really in use."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Move every object alive now out of the garbage collector's reach for the block
    (``gc.freeze``): the collections :func:`release_memory` runs between variants then scan
    only what the variants made, in milliseconds instead of a second per call with torch and
    transformers loaded."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _reset_high_water_mark() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS; False if not allowed."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _read_high_water_mark() is not None


def _read_high_water_mark() -> int | None:
    """The kernel's peak RSS (VmHWM) in bytes, None where /proc has no such line."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class _RssSampler:
    """Samples RSS every ``interval_s`` seconds in a daemon thread; ``peak`` holds the max."""

    def __init__(self, interval_s: float = 0.002) -> None:
        self.interval_s = interval_s
        self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        process = psutil.Process()
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, int(process.memory_info().rss))

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


@dataclass
class PeakMemory:
    """Result of :func:`track_peak`: ``peak_bytes`` above ``baseline_bytes`` and how it was
    measured (``method``: ``"rss-hwm"``, ``"rss-sampled"`` or ``"cuda-allocator"``)."""

    baseline_bytes: int
    method: str
    peak_bytes: int | None = None

    @property
    def delta_bytes(self) -> int | None:
        """Peak minus baseline (bytes, never negative); None until the block has ended."""
        if self.peak_bytes is None:
            return None
        return max(self.peak_bytes - self.baseline_bytes, 0)


@contextlib.contextmanager
def track_peak(device: str, baseline_bytes: int | None = None) -> Iterator[PeakMemory]:
    """Track the peak memory of the block (see the module docstring).

    ``baseline_bytes``: what the peak is measured against (default: the usage at entry), in
    the unit of the device's method (RSS bytes on the CPU, allocated bytes on CUDA).
    """
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device) if baseline_bytes is None else baseline_bytes
        result = PeakMemory(base, "cuda-allocator")
        yield result
        torch.cuda.synchronize(device)
        result.peak_bytes = int(torch.cuda.max_memory_allocated(device))
        return
    base = rss_bytes() if baseline_bytes is None else baseline_bytes
    if _reset_high_water_mark():
        result = PeakMemory(base, "rss-hwm")
        yield result
        result.peak_bytes = max(_read_high_water_mark() or 0, rss_bytes())
        return
    result = PeakMemory(base, "rss-sampled")
    with _RssSampler() as sampler:
        yield result
    result.peak_bytes = sampler.peak


def baseline(device: str) -> int:
    """The usage :func:`track_peak` measures against: RSS (CPU) or allocated bytes (CUDA)."""
    if torch.device(device).type == "cuda":
        return int(torch.cuda.memory_allocated(device))
    return rss_bytes()
