"""CPU package and DRAM energy through Linux RAPL (Intel, and AMD Zen through the same interface).

Sources, tried in order:

* ``/sys/class/powercap/intel-rapl:<n>`` (``name`` = ``package-<n>``) and its sub-zones
  ``intel-rapl:<n>:<m>`` named ``dram``: ``energy_uj`` counters in microjoules that wrap around at
  ``max_energy_range_uj``. AMD Zen CPUs appear here too (kernel >= 5.8). ``psys``, ``core`` and
  ``uncore`` zones are skipped (they overlap the package).
* ``/sys/class/hwmon/hwmon*/`` with ``name`` = ``amd_energy`` (out-of-tree driver on older
  kernels): ``energy<k>_input`` (uJ) labelled ``Esocket<n>``; the driver accumulates to 64 bits.

Domains are ``cpu:package-<n>`` and ``cpu:dram-<n>``. Since CVE-2020-8694 (Platypus) the counters
are readable by root only; the error message gives the fix.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from irene.measure.base import Clock, Meter, MeterUnavailable, WindowResult

POWERCAP_ROOT = Path("/sys/class/powercap")
HWMON_ROOT = Path("/sys/class/hwmon")
#: RAPL counters update about every millisecond; shorter windows are not trusted
RAPL_UPDATE_S = 0.001
_TOP_ZONE = re.compile(r"^intel-rapl:(\d+)$")
_SUB_ZONE = re.compile(r"^intel-rapl:(\d+):(\d+)$")
_AMD_SOCKET = re.compile(r"^Esocket(\d+)$")


@dataclass(frozen=True)
class RaplCounter:
    """One energy counter: its domain name, file and wrap-around range (uJ; 0 = never wraps)."""

    domain: str
    path: Path
    max_range_uj: int

    def read_uj(self) -> int:
        """Current counter value in microjoules."""
        return int(self.path.read_text().strip())

    def delta_uj(self, start: int, end: int) -> int:
        """Energy (uJ) between two readings, correcting one wrap-around of the counter."""
        if end >= start:
            return end - start
        if self.max_range_uj <= 0:
            raise RuntimeError(f"RAPL counter {self.path} went backwards ({start} -> {end})")
        return end - start + self.max_range_uj


def _permission_message(path: Path) -> str:
    return (
        f"RAPL: {path} is not readable by this user (since CVE-2020-8694 only root can read RAPL "
        "energy counters). Fix: run as root, or allow reading until the next reboot with "
        "`sudo chmod -R a+r /sys/class/powercap/intel-rapl` (or "
        "`sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj "
        "/sys/class/powercap/intel-rapl:*/intel-rapl:*:*/energy_uj`)"
    )


def _read_name(zone: Path) -> str:
    try:
        return (zone / "name").read_text().strip()
    except OSError as exc:
        raise MeterUnavailable(f"RAPL: cannot read {zone / 'name'}: {exc}") from exc


def _zone_counter(zone: Path, domain: str) -> RaplCounter:
    energy = zone / "energy_uj"
    if not energy.exists():
        raise MeterUnavailable(f"RAPL: {energy} is missing")
    try:
        max_range = int((zone / "max_energy_range_uj").read_text().strip())
    except FileNotFoundError:
        max_range = 0
    except PermissionError as exc:
        raise MeterUnavailable(_permission_message(zone / "max_energy_range_uj")) from exc
    return RaplCounter(domain, energy, max_range)


def discover_powercap(root: Path) -> list[RaplCounter]:
    """Package and DRAM counters under a powercap root (``/sys/class/powercap``)."""
    counters: list[RaplCounter] = []
    for zone in sorted(root.iterdir(), key=lambda p: p.name):
        top = _TOP_ZONE.match(zone.name)
        if not top:
            continue
        name = _read_name(zone)
        if not name.startswith("package"):
            continue  # psys (platform) overlaps the packages
        socket = name.split("-", 1)[1] if "-" in name else top.group(1)
        counters.append(_zone_counter(zone, f"cpu:package-{socket}"))
        for sub in sorted(zone.iterdir(), key=lambda p: p.name):
            if _SUB_ZONE.match(sub.name) and _read_name(sub) == "dram":
                counters.append(_zone_counter(sub, f"cpu:dram-{socket}"))
    return counters


def discover_amd_energy(hwmon_root: Path) -> list[RaplCounter]:
    """Socket counters of the ``amd_energy`` hwmon driver (64-bit, no wrap-around)."""
    counters: list[RaplCounter] = []
    if not hwmon_root.is_dir():
        return counters
    for hw in sorted(hwmon_root.iterdir(), key=lambda p: p.name):
        try:
            if (hw / "name").read_text().strip() != "amd_energy":
                continue
        except OSError:
            continue
        for label in sorted(hw.glob("energy*_label")):
            match = _AMD_SOCKET.match(label.read_text().strip())
            if match:
                value = label.with_name(label.name.replace("_label", "_input"))
                counters.append(RaplCounter(f"cpu:package-{match.group(1)}", value, 0))
    return counters


def find_rapl_counters(root: Path, hwmon_root: Path) -> list[RaplCounter]:
    """All readable RAPL counters; raises :class:`MeterUnavailable` saying why there are none."""
    counters: list[RaplCounter] = []
    reasons: list[str] = []
    if root.is_dir():
        counters = discover_powercap(root)
        if not counters:
            reasons.append(f"{root} has no intel-rapl package zones (no RAPL driver loaded?)")
    else:
        reasons.append(f"{root} does not exist (no RAPL support, or a container that does not "
                       "mount /sys/class/powercap)")
    if not counters:
        counters = discover_amd_energy(hwmon_root)
        if not counters:
            reasons.append(f"no amd_energy hwmon device under {hwmon_root}")
    if not counters:
        raise MeterUnavailable("RAPL: " + "; ".join(reasons))
    for counter in counters:
        try:
            counter.read_uj()
        except PermissionError as exc:
            raise MeterUnavailable(_permission_message(counter.path)) from exc
        except (OSError, ValueError) as exc:
            raise MeterUnavailable(f"RAPL: cannot read {counter.path}: {exc}") from exc
    return counters


class RaplMeter(Meter):
    """CPU package and DRAM energy per socket from RAPL counters (J per domain per window).

    ``root`` and ``hwmon_root`` are injectable for tests. A single wrap-around of a counter within
    a window is corrected with ``max_energy_range_uj``; windows are expected to be much shorter
    than one wrap period (minutes at full load).
    """

    name = "rapl"
    min_window_s = 0.1

    def __init__(self, root: Path | str | None = None, *, hwmon_root: Path | str | None = None,
                 clock: Clock = time.perf_counter) -> None:
        super().__init__(clock=clock)
        self.counters = find_rapl_counters(Path(root or POWERCAP_ROOT),
                                           Path(hwmon_root or HWMON_ROOT))
        self._start: list[int] = []

    def domains(self) -> list[str]:
        return [c.domain for c in self.counters]

    def _read_all(self) -> list[int]:
        try:
            return [c.read_uj() for c in self.counters]
        except PermissionError as exc:
            raise MeterUnavailable(_permission_message(Path(exc.filename or "energy_uj"))) from exc

    def _begin(self) -> None:
        self._start = self._read_all()

    def _end(self, duration_s: float) -> WindowResult:
        end = self._read_all()
        energy = {
            c.domain: c.delta_uj(s, e) * 1e-6
            for c, s, e in zip(self.counters, self._start, end, strict=True)
        }
        notes: tuple[str, ...] = ()
        trusted = duration_s >= RAPL_UPDATE_S
        if not trusted:
            notes = (f"window {duration_s:.6f} s is shorter than the RAPL update period "
                     f"({RAPL_UPDATE_S} s)",)
        return WindowResult(energy, duration_s, self.name, trusted=trusted, notes=notes)
