"""A fake ``pynvml`` module and GPUs, to test NVML metering and sampling without a GPU."""

from __future__ import annotations

import types
from dataclasses import dataclass


class FakeNVMLError(Exception):
    pass


@dataclass
class FakeGpu:
    uuid: str
    energy_mj: int | None = 0  # None: pre-Volta, no total-energy counter
    power_mw: float = 100_000.0
    util_gpu: int = 50
    util_mem: int = 20
    sm_clk: int = 1400
    mem_clk: int = 5000


class FakePynvml(types.ModuleType):
    """The subset of pynvml irene uses; handles are the FakeGpu objects themselves."""

    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVMLError = FakeNVMLError

    def __init__(self, gpus: list[FakeGpu], *, init_error: bool = False) -> None:
        super().__init__("pynvml")
        self.gpus, self.init_error = gpus, init_error
        self.initialised = 0
        self.power_fn = None  # optional: callable(gpu) -> mW

    def nvmlInit(self):
        if self.init_error:
            raise FakeNVMLError("NVML Shared Library Not Found")
        self.initialised += 1

    def nvmlShutdown(self):
        self.initialised -= 1

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i):
        return self.gpus[i]

    def nvmlDeviceGetUUID(self, h):
        return h.uuid.encode()  # older pynvml versions return bytes

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        if h.energy_mj is None:
            raise FakeNVMLError("Not Supported")
        return h.energy_mj

    def nvmlDeviceGetPowerUsage(self, h):
        return self.power_fn(h) if self.power_fn else h.power_mw

    def nvmlDeviceGetUtilizationRates(self, h):
        return types.SimpleNamespace(gpu=h.util_gpu, memory=h.util_mem)

    def nvmlDeviceGetClockInfo(self, h, kind):
        return h.sm_clk if kind == self.NVML_CLOCK_SM else h.mem_clk
