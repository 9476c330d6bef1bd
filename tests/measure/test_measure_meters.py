"""open_meter, the window API, combined meters, the simulated meter and leakage helpers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from irene.measure import (
    CombinedMeter,
    MeterUnavailable,
    SimulatedMeter,
    WindowResult,
    leaky_features,
    meter_names,
    open_meter,
)


class StepClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def no_real_meters(monkeypatch, tmp_path):
    """This machine as the issue describes it: no GPU driver, no RAPL (whatever the host has)."""
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setattr("irene.measure.rapl.POWERCAP_ROOT", tmp_path / "no-powercap")
    monkeypatch.setattr("irene.measure.rapl.HWMON_ROOT", tmp_path / "no-hwmon")


def test_none_and_simulated():
    assert open_meter("none") is None
    assert open_meter(None) is None
    sim = open_meter("simulated")
    assert isinstance(sim, SimulatedMeter) and sim.name == "simulated"


def test_auto_without_real_meters_lists_every_reason(no_real_meters):
    with pytest.raises(MeterUnavailable) as err:
        open_meter("auto")
    msg = str(err.value)
    assert "\n" not in msg  # the CLI prints it as one line
    assert "[nvml]" in msg and "nvidia-ml-py" in msg
    assert "[rapl]" in msg and "does not exist" in msg
    assert "[wattmeter]" in msg and "--meter none" in msg
    assert "simulated" not in msg  # auto never falls back to the simulated meter


def _nvml_sees_a_gpu() -> bool:
    try:
        from irene.measure.nvml import NvmlDevices

        NvmlDevices().close()
    except MeterUnavailable:
        return False
    return True


@pytest.mark.skipif(Path("/sys/class/powercap").exists(), reason="this host has RAPL")
def test_auto_on_this_machine_opens_what_it_has():
    """On this host, auto opens NVML where a GPU is visible (a GPU host) and otherwise fails
    with the reasons (a CPU-only machine): never a made-up energy, never the simulated meter."""
    if _nvml_sees_a_gpu():
        meter = open_meter("auto")
        try:
            assert "nvml" in meter.name.split("+") and "simulated" not in meter.name
        finally:
            meter.close()
    else:
        with pytest.raises(MeterUnavailable, match=r"\[nvml\].*\[rapl\].*--meter none"):
            open_meter("auto")


def test_explicit_real_meter_unavailable_and_unknown_name(no_real_meters):
    with pytest.raises(MeterUnavailable, match=r"--meter rapl; tried: \[rapl\].*--meter none"):
        open_meter("rapl")
    with pytest.raises(MeterUnavailable, match="unknown meter 'joulemeter'"):
        open_meter("joulemeter")


def test_window_context_manager_and_begin_end():
    clock = StepClock()
    meter = SimulatedMeter(power_w=30.0, window_overhead_j=0.5, clock=clock)
    with meter.window() as w:
        with pytest.raises(RuntimeError, match="still open"):
            _ = w.total_j
        clock.t = 2.0
    assert w.result.energy_j == {"simulated": 30.0 * 2.0 + 0.5}
    assert w.result.mean_power_w == pytest.approx(30.25)
    meter.begin()
    with pytest.raises(RuntimeError, match="already open"):
        meter.begin()
    clock.t = 3.0
    assert meter.end().duration_s == pytest.approx(1.0)
    with pytest.raises(RuntimeError, match="without begin"):
        meter.end()


def test_window_closed_after_an_exception():
    meter = SimulatedMeter(clock=StepClock())
    with pytest.raises(KeyError), meter.window():
        raise KeyError("boom")
    with meter.window() as w:  # usable again
        pass
    assert w.result is not None


class OtherMeter(SimulatedMeter):
    name = "other"

    def domains(self) -> list[str]:
        return ["other"]

    def _end(self, duration_s: float) -> WindowResult:
        return WindowResult({"other": self.power_w * duration_s}, duration_s, self.name)


def test_combined_meter_unions_domains():
    clock = StepClock()
    a = SimulatedMeter(power_w=10.0, clock=clock, min_window_s=0.1)
    b = OtherMeter(power_w=5.0, clock=clock, min_window_s=0.5)
    combined = CombinedMeter([a, b])
    assert combined.name == "simulated+other" and combined.min_window_s == 0.5
    with combined.window() as w:
        clock.t = 2.0
    assert w.result.energy_j == {"simulated": 20.0, "other": 10.0}
    assert w.result.meter == "simulated+other" and w.total_j == 30.0
    with pytest.raises(ValueError, match="share domains"):
        CombinedMeter([a, SimulatedMeter()])


@pytest.mark.parametrize("meter, leaky", [
    ("nvml", {"gpu_energy_mean"}), ("nvml+rapl", {"gpu_energy_mean"}),
    (["rapl", "nvml"], {"gpu_energy_mean"}), ("rapl", set()), ("wattmeter", set()),
    ("wattmeter:/tmp/x.csv", set()), ("simulated", set()), (None, set()),
])
def test_leaky_features(meter, leaky):
    assert leaky_features(meter) == leaky


def test_meter_names_from_meter_object():
    assert meter_names(SimulatedMeter()) == {"simulated"}
    assert meter_names("NVML + rapl") == {"nvml", "rapl"}


def test_trace_cli_with_meter_auto_fails_with_reasons_and_writes_nothing(no_real_meters, tmp_path,
                                                                         capsys):
    from irene.cli import main

    out = tmp_path / "trees.jsonl"
    code = main(["trace", "bert-base-uncased", "-o", str(out), "--meter", "auto",
                 "--batch-size", "1", "--seq-len", "8"])
    err = capsys.readouterr().err
    assert code == 2
    assert "[nvml]" in err and "[rapl]" in err and "--meter none" in err
    assert not out.exists()
