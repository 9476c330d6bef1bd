"""RAPL meter against fake powercap / hwmon trees (no hardware needed)."""

from __future__ import annotations

import pathlib
from pathlib import Path

import pytest

from irene.measure import MeterUnavailable
from irene.measure.rapl import POWERCAP_ROOT, RaplMeter

MAX_RANGE = 262_143_328_850  # uJ, a typical max_energy_range_uj


def write_zone(zone: Path, name: str, energy_uj: int, max_range: int = MAX_RANGE) -> None:
    zone.mkdir(parents=True)
    (zone / "name").write_text(name + "\n")
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_range}\n")


def make_powercap(root: Path, sockets: int = 2) -> Path:
    """Fake /sys/class/powercap: packages with core and dram sub-zones, plus psys and mmio."""
    for s in range(sockets):
        pkg = root / f"intel-rapl:{s}"
        write_zone(pkg, f"package-{s}", 1_000_000 * (s + 1))
        write_zone(pkg / f"intel-rapl:{s}:0", "core", 5)
        write_zone(pkg / f"intel-rapl:{s}:1", "dram", 2_000_000 * (s + 1))
    write_zone(root / f"intel-rapl:{sockets}", "psys", 7)
    write_zone(root / "intel-rapl-mmio:0", "package-0", 9)
    return root


def set_energy(root: Path, zone: str, value: int) -> None:
    matches = list(root.glob(f"**/{zone}/energy_uj"))
    assert len(matches) == 1, zone
    matches[0].write_text(f"{value}\n")


def test_discovers_packages_and_dram_per_socket(tmp_path):
    meter = RaplMeter(make_powercap(tmp_path / "powercap"), hwmon_root=tmp_path / "none")
    assert meter.domains() == ["cpu:package-0", "cpu:dram-0", "cpu:package-1", "cpu:dram-1"]


def test_window_energy_per_domain_with_wraparound_mid_window(tmp_path):
    root = make_powercap(tmp_path / "powercap")
    set_energy(root, "intel-rapl:1", MAX_RANGE - 1_000_000)  # package-1 about to wrap
    meter = RaplMeter(root, hwmon_root=tmp_path / "none")
    with meter.window() as w:
        set_energy(root, "intel-rapl:0", 1_000_000 + 3_500_000)  # +3.5 J
        set_energy(root, "intel-rapl:0:1", 2_000_000 + 250_000)  # +0.25 J
        set_energy(root, "intel-rapl:1", 500_000)  # wrapped: +1.5 J
        set_energy(root, "intel-rapl:1:1", 4_000_000 + 1_000_000)  # +1.0 J
    r = w.result
    assert r.meter == "rapl"
    assert r.energy_j == pytest.approx({"cpu:package-0": 3.5, "cpu:dram-0": 0.25,
                                        "cpu:package-1": 1.5, "cpu:dram-1": 1.0})
    assert w.total_j == pytest.approx(6.25)


def test_too_short_window_is_not_trusted(tmp_path):
    ticks = iter([0.0, 0.0002])
    meter = RaplMeter(make_powercap(tmp_path / "p", sockets=1), hwmon_root=tmp_path / "none",
                      clock=lambda: next(ticks))
    meter.begin()
    r = meter.end()
    assert not r.trusted and "shorter than the RAPL update period" in r.notes[0]


def test_unreadable_energy_file_gives_the_fix(tmp_path, monkeypatch):
    root = make_powercap(tmp_path / "powercap")
    locked = root / "intel-rapl:1" / "energy_uj"
    real_read_text = pathlib.Path.read_text

    def read_text(self, *args, **kwargs):  # root ignores chmod, so refuse like the kernel does
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "read_text", read_text)
    with pytest.raises(MeterUnavailable) as err:
        RaplMeter(root, hwmon_root=tmp_path / "none")
    msg = str(err.value)
    assert str(locked) in msg and "CVE-2020-8694" in msg
    assert "sudo chmod" in msg and "root" in msg


def test_missing_powercap_says_container(tmp_path):
    with pytest.raises(MeterUnavailable, match="container") as err:
        RaplMeter(tmp_path / "absent", hwmon_root=tmp_path / "absent-hwmon")
    assert "amd_energy" in str(err.value)


def test_powercap_without_packages(tmp_path):
    root = tmp_path / "powercap"
    write_zone(root / "intel-rapl:0", "psys", 1)
    with pytest.raises(MeterUnavailable, match="no intel-rapl package zones"):
        RaplMeter(root, hwmon_root=tmp_path / "none")


def test_amd_energy_hwmon_sockets(tmp_path):
    hw = tmp_path / "hwmon" / "hwmon3"
    hw.mkdir(parents=True)
    (tmp_path / "hwmon" / "hwmon0").mkdir()
    (tmp_path / "hwmon" / "hwmon0" / "name").write_text("k10temp\n")
    (hw / "name").write_text("amd_energy\n")
    for k, label, value in [(1, "Ecore000", 10), (17, "Esocket0", 10_000_000),
                            (18, "Esocket1", 20_000_000)]:
        (hw / f"energy{k}_label").write_text(label + "\n")
        (hw / f"energy{k}_input").write_text(f"{value}\n")
    meter = RaplMeter(tmp_path / "no-powercap", hwmon_root=tmp_path / "hwmon")
    assert meter.domains() == ["cpu:package-0", "cpu:package-1"]
    with meter.window() as w:
        (hw / "energy17_input").write_text("12000000\n")
        (hw / "energy18_input").write_text("20500000\n")
    assert w.result.energy_j == pytest.approx({"cpu:package-0": 2.0, "cpu:package-1": 0.5})


def _rapl_readable() -> bool:
    try:
        RaplMeter()
    except MeterUnavailable:
        return False
    return True


@pytest.mark.rapl
@pytest.mark.skipif(not POWERCAP_ROOT.exists() or not _rapl_readable(),
                    reason="no readable RAPL counters on this machine")
def test_real_rapl_window_measures_positive_energy():
    meter = RaplMeter()
    with meter.window() as w:
        sum(i * i for i in range(2_000_000))
    assert w.result.duration_s > 0 and w.result.total_j > 0
