"""The conditions a timing was taken under: CPU threads and machine load, with warnings.

On a shared CPU, other processes change a replay's time far beyond its run-to-run spread (the
same root measured 1.3 s in one run and 6.7 s in another, each with a tight p10/p90): the
spread alone cannot reveal it. So the tracer times CPU replays on one thread by default
(single-threaded runs agreed within 0.1 % at low load), records the thread count and the load
average before and after, and warns when the load or the spread makes a timing doubtful.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

#: extra runnable processes (1-minute load average above our own threads) that make a CPU
#: timing doubtful
BUSY_LOAD = 0.5
#: relative spread (p90 - p10) / median of a timing above which it is doubtful
WIDE_SPREAD = 0.10


@dataclass
class TimingConditions:
    """``threads``: torch intra-op threads used for the replays; ``cpus``: logical CPUs;
    ``load_before``/``load_after``: 1-minute load averages; ``warnings``: why the timings may
    not be trusted (empty when nothing was seen)."""

    threads: int
    cpus: int
    load_before: float | None
    load_after: float | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check_load(self) -> None:
        """Add a warning when other processes kept the CPUs busy during the timing."""
        loads = [v for v in (self.load_before, self.load_after) if v is not None]
        if not loads:
            return
        extra = max(loads) - self.threads
        if extra > BUSY_LOAD:
            self.warnings.append(
                f"the machine was busy while timing (1-minute load up to {max(loads):.1f} on "
                f"{self.cpus} CPUs, {self.threads} thread(s) ours): CPU times may be inflated; "
                "re-measure on a quiet machine")

    def check_spread(self, median_s: float, p10_s: float, p90_s: float, what: str) -> None:
        """Add a warning when a timing's run-to-run spread is wide."""
        if median_s > 0 and (p90_s - p10_s) / median_s > WIDE_SPREAD:
            self.warnings.append(
                f"{what}: run-to-run spread {100 * (p90_s - p10_s) / median_s:.0f} % of the "
                "median (p10..p90): the timing is noisy; use more --runs or a quieter machine")


def _load() -> float | None:
    try:
        return float(os.getloadavg()[0])
    except OSError:
        return None


@contextlib.contextmanager
def timing_conditions(threads: int | None, *, on_cpu: bool) -> Iterator[TimingConditions]:
    """Time under a fixed thread count (``threads``; None: 1 on a CPU device, unchanged on a
    GPU) and record the load; the yielded conditions are completed when the block ends."""
    import torch

    before = torch.get_num_threads()
    chosen = threads if threads is not None else (1 if on_cpu else before)
    conditions = TimingConditions(threads=chosen, cpus=os.cpu_count() or 1, load_before=_load())
    torch.set_num_threads(chosen)
    try:
        yield conditions
    finally:
        torch.set_num_threads(before)
        conditions.load_after = _load()
        if on_cpu:
            conditions.check_load()
