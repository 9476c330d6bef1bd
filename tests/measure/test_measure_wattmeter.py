"""Wattmeter-log meter: integration with samples straddling the window edges, clock alignment."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from irene.measure import MeterUnavailable, open_meter
from irene.measure.integrate import CoverageError, integrate_power
from irene.measure.wattmeter import WattmeterLogError, WattmeterMeter


class FakeClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def sleep(self, dt: float) -> None:
        self.t += dt


def write_log(path, rows, header=True):
    lines = (["timestamp,watts"] if header else []) + [f"{t},{w}" for t, w in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


# samples at 1 s: power 100, 200, 200, 100, 100 W
ROWS = [(1000.0, 100), (1001.0, 200), (1002.0, 200), (1003.0, 100), (1004.0, 100)]


def test_window_straddling_samples_is_interpolated_at_edges(tmp_path):
    log = write_log(tmp_path / "power.csv", ROWS)
    clock = FakeClock(1000.5)
    meter = WattmeterMeter(log, clock=clock, sleep=clock.sleep)
    meter.begin()
    clock.t = 1002.5
    r = meter.end()
    # [1000.5, 1001]: (150+200)/2*0.5 ; [1001, 1002]: 200 ; [1002, 1002.5]: (200+150)/2*0.5
    assert r.energy_j == {"wattmeter": pytest.approx(87.5 + 200 + 87.5)}
    assert r.duration_s == pytest.approx(2.0) and r.meter == "wattmeter" and r.trusted


def test_window_between_two_samples(tmp_path):
    log = write_log(tmp_path / "power.csv", ROWS)
    clock = FakeClock(1000.25)
    meter = WattmeterMeter(log, clock=clock, sleep=clock.sleep)
    meter.begin()
    clock.t = 1000.75
    r = meter.end()
    assert r.total_j == pytest.approx(0.5 * (125 + 175) / 2)
    assert not r.trusted and "sample period" in r.notes[0]


def test_clock_offset_aligns_the_log_clock(tmp_path):
    log = write_log(tmp_path / "power.csv", ROWS)
    clock = FakeClock(0.5)  # this machine's clock is 1000 s behind the meter's
    meter = WattmeterMeter(log, offset_s=1000.0, clock=clock, sleep=clock.sleep)
    meter.begin()
    clock.t = 2.5
    assert meter.end().total_j == pytest.approx(375.0)


def test_log_not_covering_the_window_is_an_error(tmp_path):
    log = write_log(tmp_path / "power.csv", ROWS)
    clock = FakeClock(1003.0)
    meter = WattmeterMeter(log, wait_s=2.0, clock=clock, sleep=clock.sleep)
    meter.begin()
    clock.t = 1006.0  # the log stops at 1004 and nothing more arrives
    with pytest.raises(WattmeterLogError, match="does not cover the window") as err:
        meter.end()
    assert str(log) in str(err.value)
    clock.t = 990.0  # a window before the log starts
    meter.begin()
    clock.t = 991.0
    with pytest.raises(WattmeterLogError, match="does not cover"):
        meter.end()


def test_waits_for_the_meter_to_log_past_the_window_end(tmp_path):
    log = write_log(tmp_path / "power.csv", ROWS)
    clock = FakeClock(1003.0)
    arrivals = iter([(1005.0, 300), (1006.0, 300)])

    def sleep(dt: float) -> None:  # the external meter appends a sample while we wait
        clock.t += dt
        t, w = next(arrivals)
        with log.open("a") as fh:
            fh.write(f"{t},{w}\n")

    meter = WattmeterMeter(log, wait_s=5.0, clock=clock, sleep=sleep)
    meter.begin()
    clock.t = 1005.5
    r = meter.end()
    # [1003,1004]: 100 ; [1004,1005]: 200 ; [1005,1005.5]: 150
    assert r.total_j == pytest.approx(100 + 200 + 150)


def test_iso_timestamps_and_partial_last_line(tmp_path):
    t0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc).timestamp()
    log = tmp_path / "p.csv"
    log.write_text("2024-05-01T12:00:00+00:00,50\n2024-05-01T12:00:02+00:00,50\n"
                   "2024-05-01T12:00:0")  # the meter is half-way through writing a line
    clock = FakeClock(t0 + 0.5)
    meter = WattmeterMeter(log, wait_s=0.0, clock=clock, sleep=clock.sleep)
    assert meter.log.times == [t0, t0 + 2]
    meter.begin()
    clock.t = t0 + 1.5
    assert meter.end().total_j == pytest.approx(50.0)


@pytest.mark.parametrize("line, field", [("1000.0", "timestamp,watts"), ("abc,5", "timestamp"),
                                         ("1001.0,lots", "watts"), ("999.0,5", "timestamp"),
                                         ("1001.0,-3", "watts")])
def test_malformed_log_names_file_line_and_field(tmp_path, line, field):
    log = tmp_path / "bad.csv"
    log.write_text(f"timestamp,watts\n1000.0,5\n{line}\n")
    with pytest.raises(WattmeterLogError) as err:
        WattmeterMeter(log)
    assert f"{log}:3" in str(err.value) and field in str(err.value)


def test_open_meter_wattmeter_spec(tmp_path):
    log = write_log(tmp_path / "power.csv", ROWS, header=False)
    meter = open_meter(f"wattmeter:{log}")
    assert meter.name == "wattmeter" and meter.min_window_s >= 5.0
    with pytest.raises(MeterUnavailable, match="cannot read log"):
        open_meter(f"wattmeter:{tmp_path / 'missing.csv'}")
    with pytest.raises(MeterUnavailable, match="give the log file"):
        open_meter("wattmeter:")


def test_integrate_power_edge_cases():
    ts, ws = [0.0, 1.0, 2.0], [10.0, 30.0, 10.0]
    assert integrate_power(ts, ws, 0.0, 2.0) == pytest.approx(40.0)
    assert integrate_power(ts, ws, 1.0, 1.0) == 0.0
    assert integrate_power(ts, ws, 0.5, 1.5) == pytest.approx(0.5 * 25 + 0.5 * 25)
    with pytest.raises(CoverageError):
        integrate_power(ts, ws, -0.1, 1.0)
    with pytest.raises(ValueError, match="before it starts"):
        integrate_power(ts, ws, 1.5, 1.0)
