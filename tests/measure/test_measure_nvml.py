"""NVML meter and GPU sampling through a fake ``pynvml`` module (no GPU needed)."""

from __future__ import annotations

import sys
import threading
import time

import pytest
from support.fakes import FakeGpu, FakeNVMLError, FakePynvml

from irene.measure import MeterUnavailable, Protocol, Sampler, measure_callable, open_meter
from irene.measure.nvml import NVML_UPDATE_S, NvmlMeter, parse_visible_devices
from irene.measure.sampler import NvmlGpuSource


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            return self.t

    def advance(self, dt: float) -> None:
        with self.lock:
            self.t += dt


UUIDS = ["GPU-aaaa1111", "GPU-bbbb2222", "GPU-cccc3333"]


def three_gpus(**kw) -> FakePynvml:
    return FakePynvml([FakeGpu(u, **kw) for u in UUIDS])


def test_counter_path_energy_difference_in_joules():
    nv = three_gpus()
    clock = FakeClock()
    syncs: list[int] = []
    meter = NvmlMeter(pynvml=nv, env={}, clock=clock, sync=lambda: syncs.append(1))
    assert meter.uses_counter and meter.domains() == ["gpu:0", "gpu:1", "gpu:2"]
    with meter.window() as w:
        clock.advance(1.0)
        for k, g in enumerate(nv.gpus):
            g.energy_mj += 1000 * (k + 1) + 250
    assert w.result.energy_j == pytest.approx({"gpu:0": 1.25, "gpu:1": 2.25, "gpu:2": 3.25})
    assert w.result.duration_s == pytest.approx(1.0) and w.result.trusted
    assert len(syncs) == 2  # device synchronised at both edges
    meter.close()
    assert nv.initialised == 0


def test_window_shorter_than_update_period_is_flagged():
    nv = three_gpus()
    clock = FakeClock()
    meter = NvmlMeter(pynvml=nv, env={}, clock=clock, sync=None)
    meter.begin()
    clock.advance(NVML_UPDATE_S / 10)
    r = meter.end()
    assert not r.trusted and "update period" in r.notes[0]
    meter.begin()
    clock.advance(NVML_UPDATE_S * 2)
    assert meter.end().trusted


def test_pre_volta_power_sampling_is_integrated():
    nv = FakePynvml([FakeGpu("GPU-old", energy_mj=None)])
    clock = FakeClock()
    nv.power_fn = lambda h: (100.0 + 10.0 * clock()) * 1000.0  # P(t) = 100 + 10 t W
    meter = NvmlMeter(pynvml=nv, env={}, clock=clock, sync=None, sample_period_s=0.002)
    assert not meter.uses_counter and meter.min_window_s > 5 * NVML_UPDATE_S
    with meter.window() as w:
        for _ in range(20):
            time.sleep(0.005)
            clock.advance(0.1)
    samples = len(meter._sampler.times)
    assert samples > 2, "the background thread took no samples"
    # integral of 100 + 10 t over [0, 2] = 220 J (trapezoids are exact on a linear curve)
    assert w.result.energy_j["gpu:0"] == pytest.approx(220.0, rel=0.01)
    assert w.result.duration_s == pytest.approx(2.0)


def test_visible_devices_mapping_by_index_and_uuid():
    assert parse_visible_devices(None, UUIDS) == [0, 1, 2]
    assert parse_visible_devices("2,0", UUIDS) == [2, 0]
    assert parse_visible_devices("GPU-bbbb", UUIDS) == [1]
    assert parse_visible_devices("GPU-cccc3333, 0", UUIDS) == [2, 0]
    assert parse_visible_devices("1,7,0", UUIDS) == [1]  # CUDA stops at the first invalid entry
    assert parse_visible_devices("GPU-", UUIDS) == []  # ambiguous prefix
    assert parse_visible_devices("", UUIDS) == []
    with pytest.raises(MeterUnavailable, match="MIG"):
        parse_visible_devices("MIG-1234", UUIDS)


def test_meter_measures_only_visible_gpus_in_cuda_order():
    nv = three_gpus()
    clock = FakeClock()
    meter = NvmlMeter(pynvml=nv, env={"CUDA_VISIBLE_DEVICES": "GPU-cccc,0"}, clock=clock)
    assert meter.domains() == ["gpu:0", "gpu:1"]
    with meter.window() as w:
        clock.advance(1.0)
        nv.gpus[2].energy_mj += 3000
        nv.gpus[0].energy_mj += 1000
        nv.gpus[1].energy_mj += 999_000  # invisible: not counted
    assert w.result.energy_j == pytest.approx({"gpu:0": 3.0, "gpu:1": 1.0})


def test_cuda_uuids_override_index_order():
    # CUDA's default order (fastest first) can differ from NVML's PCI order: match by UUID
    nv = three_gpus()
    meter = NvmlMeter(pynvml=nv, env={"CUDA_VISIBLE_DEVICES": "0,1,2"},
                      cuda_uuids=["cccc3333", "GPU-AAAA1111"])
    assert [h.uuid for _, h in meter.devices] == ["GPU-cccc3333", "GPU-aaaa1111"]
    # an unknown UUID (e.g. a MIG slice) falls back to CUDA_VISIBLE_DEVICES
    meter = NvmlMeter(pynvml=nv, env={"CUDA_VISIBLE_DEVICES": "1"}, cuda_uuids=["zzzz"])
    assert [h.uuid for _, h in meter.devices] == ["GPU-bbbb2222"]


def test_no_visible_gpu_or_no_driver_is_unavailable(monkeypatch):
    nv = three_gpus()
    with pytest.raises(MeterUnavailable, match="CUDA_VISIBLE_DEVICES"):
        NvmlMeter(pynvml=nv, env={"CUDA_VISIBLE_DEVICES": "-1"})
    assert nv.initialised == 0
    with pytest.raises(MeterUnavailable, match="no NVIDIA driver"):
        NvmlMeter(pynvml=FakePynvml([], init_error=True), env={})
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    with pytest.raises(MeterUnavailable, match="nvidia-ml-py"):
        NvmlMeter()


def test_open_meter_nvml_and_auto_with_fake_pynvml(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pynvml", three_gpus())
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr("irene.measure.rapl.POWERCAP_ROOT", tmp_path / "no-powercap")
    monkeypatch.setattr("irene.measure.rapl.HWMON_ROOT", tmp_path / "no-hwmon")
    assert open_meter("nvml").name == "nvml"
    auto = open_meter("auto")  # RAPL missing: NVML alone
    assert auto.name == "nvml" and auto.domains() == ["gpu:0", "gpu:1", "gpu:2"]
    with pytest.raises(MeterUnavailable, match="rapl"):
        open_meter("nvml+rapl")


def test_gpu_sampler_and_protocol_features_with_fake_nvml():
    nv = FakePynvml([FakeGpu("GPU-a", power_mw=150_000, util_gpu=80, sm_clk=1800),
                     FakeGpu("GPU-b", power_mw=50_000, util_gpu=40, sm_clk=1200)])
    source = NvmlGpuSource(pynvml=nv, env={})
    reading = source()
    assert reading == pytest.approx({"gpu": 60.0, "gpu_mem": 20.0, "gpu_clk": 1500.0,
                                     "gpu_mem_clk": 5000.0, "gpu_power_w": 200.0})
    sampler = Sampler(period_s=0.01, gpu=source)
    m = measure_callable(lambda: time.sleep(0.002), protocol=Protocol(runs=2,
                         min_run_seconds=0.03), sampler=sampler)
    assert m.features["gpu"] == pytest.approx(60.0)
    assert m.features["gpu_clk"] == pytest.approx(1500.0)
    assert m.features["gpu_energy_mean"] == pytest.approx(200.0 * m.time_s)
    assert 0.0 <= m.features["cpu"] <= 100.0 and m.features["mem"] > 0.0
    sampler.close()
    assert nv.initialised == 0


def test_gpu_source_leaves_out_unsupported_readings():
    nv = FakePynvml([FakeGpu("GPU-a")])

    def no_utilisation(h):
        raise FakeNVMLError("Not Supported")

    nv.nvmlDeviceGetUtilizationRates = no_utilisation
    source = NvmlGpuSource(pynvml=nv, env={})
    assert source.unsupported == ["gpu", "gpu_mem"]
    assert source() == {"gpu_clk": 1400.0, "gpu_mem_clk": 5000.0, "gpu_power_w": 100.0}


def _nvml_works() -> bool:
    try:
        NvmlMeter().close()
    except MeterUnavailable:
        return False
    return True


@pytest.mark.gpu
@pytest.mark.skipif(not _nvml_works(), reason="no NVIDIA GPU with NVML on this machine")
def test_real_gpu_window():
    meter = NvmlMeter()
    with meter.window() as w:
        time.sleep(0.5)
    assert w.result.total_j > 0 and w.result.trusted
    meter.close()
