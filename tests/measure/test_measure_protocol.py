"""The measurement protocol with a fake clock and fake meters: calibration, medians, idle, dedup."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irene.measure import (
    FEATURE_NAMES,
    Measurement,
    MeasurementCache,
    Meter,
    Protocol,
    SimulatedMeter,
    WindowResult,
    measure_callable,
)
from irene.measure.protocol import calibrate_repeats, quantile


class FakeClock:
    """A clock (s) that only moves when told to."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt

    sleep = advance


class ScheduledWork:
    """A callable whose per-call cost (s) is ``schedule[run]`` during measured run ``run``."""

    def __init__(self, clock: FakeClock, calibration_cost: float, schedule: list[float]) -> None:
        self.clock, self.calibration_cost, self.schedule = clock, calibration_cost, schedule
        self.run: int | None = None
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        cost = self.calibration_cost if self.run is None else self.schedule[self.run]
        self.clock.advance(cost)


class RunCountingMeter(SimulatedMeter):
    """Simulated meter (50 W) that tells the work which run is being measured."""

    def __init__(self, work: ScheduledWork, **kw) -> None:
        super().__init__(50.0, clock=work.clock, **kw)
        self.work = work
        self.windows = 0

    def _begin(self) -> None:
        self.work.run = self.windows
        self.windows += 1


class IdleAwareMeter(Meter):
    """Fake meter: ``idle_w`` always, plus ``busy_w`` while the work runs (domain 'pkg')."""

    name = "fake"

    def __init__(self, clock: FakeClock, idle_w: float, busy_w: float) -> None:
        super().__init__(clock=clock)
        self.idle_w, self.busy_w = idle_w, busy_w
        self.busy_s = 0.0
        self._busy0 = 0.0

    def domains(self) -> list[str]:
        return ["pkg"]

    def _begin(self) -> None:
        self._busy0 = self.busy_s

    def _end(self, duration_s: float) -> WindowResult:
        busy = self.busy_s - self._busy0
        return WindowResult({"pkg": self.idle_w * duration_s + self.busy_w * busy},
                            duration_s, self.name)


def test_repeat_calibration_reaches_min_run_seconds():
    clock = FakeClock()
    work = ScheduledWork(clock, 0.003, [])
    n = calibrate_repeats(work, 0.1, max_repeats=10_000, clock=clock)
    assert n * 0.003 >= 0.1
    assert n == 37  # 1 call took 3 ms -> ceil(1.1 * 0.1 / 0.003) = 37
    # a function that takes no time hits the cap instead of looping forever
    assert calibrate_repeats(lambda: None, 0.1, max_repeats=500, clock=FakeClock()) == 500


def test_medians_and_spread_over_runs_with_simulated_meter():
    clock = FakeClock()
    schedule = [0.010, 0.012, 0.011, 0.030, 0.009]
    work = ScheduledWork(clock, 0.010, schedule)
    meter = RunCountingMeter(work)
    m = measure_callable(work, meter=meter, protocol=Protocol(warmup=2, runs=5,
                         min_run_seconds=0.1), clock=clock, sleep=clock.sleep)
    assert m.runs == 5 and meter.windows == 5
    assert m.repeats * 0.010 >= 0.1
    assert m.time_s == pytest.approx(0.011)
    assert m.time_p10 == pytest.approx(np.percentile(schedule, 10))
    assert m.time_p90 == pytest.approx(np.percentile(schedule, 90))
    # simulated meter: 50 W x window duration -> 50 W x per-call time
    assert m.energy_j == pytest.approx(50 * 0.011)
    assert m.energy_p90 == pytest.approx(50 * np.percentile(schedule, 90))
    assert m.energy_by_domain == {"simulated": pytest.approx(50 * 0.011)}
    assert m.meter == "simulated" and m.trusted
    assert work.calls == 2 + (1 + m.repeats) + 5 * m.repeats  # warm-up, calibration, runs


def test_meter_min_window_raises_the_run_length():
    clock = FakeClock()
    work = ScheduledWork(clock, 0.01, [0.01] * 3)
    meter = RunCountingMeter(work, min_window_s=0.5)
    protocol = Protocol(runs=3, min_run_seconds=0.02)
    assert protocol.target_run_seconds(meter) == 0.5
    assert protocol.target_run_seconds(None) == 0.02
    m = measure_callable(work, meter=meter, protocol=protocol, clock=clock)
    assert m.repeats * 0.01 >= 0.5


@pytest.mark.parametrize("subtract", [False, True])
def test_idle_power_subtraction_arithmetic(subtract):
    clock = FakeClock()
    meter = IdleAwareMeter(clock, idle_w=20.0, busy_w=30.0)

    def work() -> None:
        clock.advance(0.004)
        meter.busy_s += 0.004

    protocol = Protocol(runs=3, min_run_seconds=0.05, subtract_idle=subtract, idle_seconds=2.0)
    m = measure_callable(work, meter=meter, protocol=protocol, clock=clock, sleep=clock.sleep)
    if subtract:
        assert m.idle_power_w == {"pkg": pytest.approx(20.0)}
        assert m.energy_j == pytest.approx(30.0 * 0.004)  # (20 + 30) W x 4 ms - 20 W x 4 ms
    else:
        assert m.idle_power_w is None
        assert m.energy_j == pytest.approx(50.0 * 0.004)
    assert m.time_s == pytest.approx(0.004)


def test_idle_power_is_measured_once_per_meter():
    clock = FakeClock()
    meter = IdleAwareMeter(clock, idle_w=12.0, busy_w=0.0)
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        clock.advance(s)

    protocol = Protocol(runs=1, min_run_seconds=0.01, subtract_idle=True, idle_seconds=1.5)
    for _ in range(3):
        measure_callable(lambda: clock.advance(0.01), meter=meter, protocol=protocol,
                         clock=clock, sleep=sleep)
    assert sleeps == [1.5]


def test_cooldown_between_runs():
    clock = FakeClock()
    sleeps: list[float] = []
    measure_callable(lambda: clock.advance(0.01), protocol=Protocol(runs=4, cooldown_s=0.3),
                     clock=clock, sleep=sleeps.append)
    assert sleeps == [0.3, 0.3, 0.3]


def test_timing_only_without_meter():
    clock = FakeClock()
    m = measure_callable(lambda: clock.advance(0.002), protocol=Protocol(runs=3), clock=clock)
    assert m.energy_j is None and m.energy_p10 is None and m.meter is None
    assert m.time_s == pytest.approx(0.002)
    assert set(m.features) == set(FEATURE_NAMES) and not any(m.features.values())


def test_sync_called_at_every_window_edge():
    clock = FakeClock()
    calls: list[str] = []
    m = measure_callable(lambda: clock.advance(0.01), protocol=Protocol(runs=3, warmup=1),
                         sync=lambda: calls.append("sync"), clock=clock)
    calibration_rounds = 1 + (m.repeats > 1)
    assert len(calls) == 1 + 2 * calibration_rounds + 2 * 3


class FakeSampler:
    def __init__(self, readings: list[dict[str, float]]) -> None:
        self.readings = list(readings)
        self.open = False

    def begin_window(self) -> None:
        assert not self.open
        self.open = True

    def end_window(self) -> dict[str, float]:
        self.open = False
        return self.readings.pop(0)


def test_sampler_features_are_duration_weighted_and_gpu_energy_is_per_call():
    clock = FakeClock()
    schedule = [0.01, 0.03]
    work = ScheduledWork(clock, 0.01, schedule)
    meter = RunCountingMeter(work)
    sampler = FakeSampler([{"cpu": 10.0, "mem": 40.0, "gpu_power_w": 100.0, "gpu_clk": 1000.0},
                           {"cpu": 50.0, "mem": 40.0, "gpu_power_w": 100.0, "gpu_clk": 2000.0}])
    m = measure_callable(work, meter=meter, protocol=Protocol(runs=2, min_run_seconds=0.05),
                         sampler=sampler, clock=clock)
    assert m.features["cpu"] == pytest.approx((10 * 1 + 50 * 3) / 4)
    assert m.features["gpu_clk"] == pytest.approx(1750.0)
    assert m.features["gpu"] == 0.0
    assert m.features["gpu_energy_mean"] == pytest.approx(100.0 * m.time_s)
    assert "gpu_power_w" not in m.features


def test_dedup_cache_counts_hits_and_misses():
    cache = MeasurementCache()
    measured: list[str | None] = []

    def measure_for(sig):
        def measure() -> Measurement:
            measured.append(sig)
            return Measurement(time_s=len(measured), time_p10=0, time_p90=0, repeats=1, runs=1)
        return measure

    sigs = ["linear-768", "ln", "linear-768", "linear-768", None, "ln"]
    results = [cache.get_or_measure(s, measure_for(s)) for s in sigs]
    assert measured == ["linear-768", "ln", None]
    assert cache.stats() == {"hits": 3, "misses": 3, "unique": 2}
    assert results[0] is results[2] is results[3]
    off = MeasurementCache(enabled=False)
    for s in sigs:
        off.get_or_measure(s, measure_for(s))
    assert off.stats() == {"hits": 0, "misses": 6, "unique": 0}


def test_protocol_validation_and_dict():
    with pytest.raises(ValueError, match="runs"):
        Protocol(runs=0)
    with pytest.raises(ValueError, match="min_run_seconds"):
        Protocol(min_run_seconds=-1)
    d = Protocol(runs=7, subtract_idle=True).to_dict()
    assert d["runs"] == 7 and d["subtract_idle"] is True and d["dedup"] is True
    assert Protocol(**d) == Protocol(runs=7, subtract_idle=True)


@pytest.mark.parametrize("q", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_quantile_matches_numpy(q):
    values = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6]
    assert quantile(values, q) == pytest.approx(np.quantile(values, q))


def test_real_torch_module_with_real_clock():
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 64)
    x = torch.randn(8, 64)

    def call() -> None:
        with torch.no_grad():
            layer(x)

    protocol = Protocol(runs=3, min_run_seconds=0.01)
    m = measure_callable(call, meter=SimulatedMeter(power_w=40.0), protocol=protocol)
    assert 0 < m.time_p10 <= m.time_s <= m.time_p90
    assert m.repeats >= 1 and m.runs == 3
    # each meter window encloses its timed run, so energy >= 40 W x time, run by run
    assert m.energy_j >= 40.0 * m.time_s * (1 - 1e-9)
    assert m.energy_p10 >= 40.0 * m.time_p10 * (1 - 1e-9)


def test_metadata_records_meter_protocol_and_dedup(tmp_path):
    from irene.measure import measurement_metadata
    from irene.tree import FEATURE_FIELDS, Node, Tree, read_trees, write_trees

    meter = SimulatedMeter(min_window_s=0.3)
    cache = MeasurementCache()
    m = Measurement(time_s=0.01, time_p10=0.01, time_p90=0.01, repeats=5, runs=3)
    cache.get_or_measure("sig", lambda: m)
    cache.get_or_measure("sig", lambda: m)
    meta = measurement_metadata(meter, Protocol(runs=3), cache=cache, idle_power_w={"x": 2.0})
    assert meta["meter"] == "simulated" and meta["meter_domains"] == ["simulated"]
    assert meta["leaky_features"] == [] and meta["idle_power_w"] == {"x": 2.0}
    assert meta["dedup"] == {"hits": 1, "misses": 1, "unique": 1}
    assert meta["protocol"]["effective_min_run_seconds"] == 0.3
    assert Protocol.from_dict(meta["protocol"]) == Protocol(runs=3)
    assert measurement_metadata(None, Protocol())["meter"] == "none"
    # the metadata survives a round trip through a tree file
    leaf = Node(id="l", scope="root.fc", parent_name="root", level=1, instance_type="Linear",
                type="ml", features=dict.fromkeys(FEATURE_FIELDS, 0.0))
    root = Node(id="r", scope="root", parent_name="", level=0, instance_type="Tiny",
                type="model", features=dict.fromkeys(FEATURE_FIELDS, 0.0), children=[leaf])
    write_trees([Tree("tiny", 1, 8, root, meta=meta)], tmp_path / "t.jsonl")
    (back,) = read_trees(tmp_path / "t.jsonl")
    assert back.meta == meta


def test_negative_energy_after_idle_subtraction_is_flagged():
    clock = FakeClock()
    meter = IdleAwareMeter(clock, idle_w=20.0, busy_w=0.0)
    # idle measured at 20 W, then power drops (e.g. a fan slows down): idle-subtracted energy < 0
    protocol = Protocol(runs=1, min_run_seconds=0.05, subtract_idle=True)
    meter.idle_power_w(protocol.idle_seconds, sleep=clock.sleep)
    meter.idle_w = 15.0
    m = measure_callable(lambda: clock.advance(0.01), meter=meter, protocol=protocol,
                         clock=clock, sleep=clock.sleep)
    assert m.energy_j == pytest.approx(-5.0 * 0.01)
    assert not m.trusted and "idle" in m.notes[0]


def test_command_line_options_build_the_protocol():
    import argparse

    from irene.measure import add_measure_arguments, protocol_from_args

    parser = argparse.ArgumentParser()
    add_measure_arguments(parser)
    args = parser.parse_args(["--meter", "rapl", "--runs", "7", "--min-run-seconds", "0.5",
                              "--subtract-idle", "--cooldown", "1", "--no-dedup"])
    assert args.meter == "rapl"
    assert protocol_from_args(args) == Protocol(runs=7, min_run_seconds=0.5, subtract_idle=True,
                                                cooldown_s=1.0, dedup=False)
    defaults = protocol_from_args(parser.parse_args([]))
    assert defaults == Protocol() and parser.parse_args([]).meter == "none"


def test_error_in_the_callable_closes_the_meter_and_sampler_windows():
    clock = FakeClock()
    meter = SimulatedMeter(clock=clock)
    calls = []

    def flaky() -> None:
        calls.append(1)
        clock.advance(0.01)
        if len(calls) == 9:
            raise RuntimeError("replay failed")

    from irene.measure import Sampler

    sampler = Sampler(period_s=0.01, host=lambda: {"cpu": 1.0, "mem": 2.0})
    with pytest.raises(RuntimeError, match="replay failed"):
        measure_callable(flaky, meter=meter, protocol=Protocol(runs=5, min_run_seconds=0.02),
                         sampler=sampler, clock=clock)
    assert not sampler._thread.running
    m = measure_callable(lambda: clock.advance(0.01), meter=meter, sampler=sampler,
                         protocol=Protocol(runs=2), clock=clock)  # both usable again
    assert m.energy_j == pytest.approx(50 * 0.01) and m.features["mem"] == 2.0
