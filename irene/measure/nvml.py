"""NVIDIA GPU energy through NVML (``pynvml`` from the ``nvidia-ml-py`` package).

* Volta and newer: difference of ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since driver load).
* Older GPUs: ``nvmlDeviceGetPowerUsage`` (mW) sampled by a background thread during the window
  and integrated over time (trapezoids).

Only the GPUs visible to this process are measured, as domains ``gpu:<cuda index>``: CUDA's
device UUIDs (from torch) are matched to NVML's; without them ``CUDA_VISIBLE_DEVICES`` (indices or
``GPU-<uuid>`` prefixes, parsed like CUDA: up to the first invalid entry) maps CUDA index ``i``
to an NVML device. The device is synchronised at both window edges (the
``sync`` callable, by default ``torch.cuda.synchronize`` when CUDA is available). A window shorter
than the counter's update period is reported with ``trusted=False``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from irene.measure.base import Clock, Meter, MeterUnavailable, WindowResult
from irene.measure.integrate import integrate_power
from irene.measure.periodic import PeriodicSampler

#: NVML's energy counter and power reading update about every 100 ms (less on recent GPUs)
NVML_UPDATE_S = 0.1


def import_pynvml() -> ModuleType:
    """The ``pynvml`` module, or :class:`MeterUnavailable` saying how to install it."""
    try:
        import pynvml
    except ImportError as exc:
        raise MeterUnavailable(
            "NVML: the pynvml module is missing (pip install nvidia-ml-py)") from exc
    return pynvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_visible_devices(value: str | None, uuids: list[str]) -> list[int]:
    """NVML indices of the GPUs CUDA shows to this process, in CUDA order.

    ``value`` is ``CUDA_VISIBLE_DEVICES`` (None = all GPUs); entries are indices or (prefixes of)
    ``GPU-<uuid>``; like CUDA, parsing stops at the first invalid or repeated entry. MIG instances
    are refused (NVML reports energy per physical GPU, not per instance).
    """
    if value is None:
        return list(range(len(uuids)))
    chosen: list[int] = []
    for raw in value.split(","):
        entry = raw.strip()
        if entry.startswith("MIG-"):
            raise MeterUnavailable(
                f"NVML: CUDA_VISIBLE_DEVICES={value!r} selects a MIG instance; NVML energy is "
                "per physical GPU, so a MIG slice cannot be metered on its own")
        index: int | None = None
        if entry.isdigit():
            index = int(entry) if int(entry) < len(uuids) else None
        elif entry.startswith("GPU-"):
            matches = [i for i, u in enumerate(uuids) if u.startswith(entry)]
            index = matches[0] if len(matches) == 1 else None
        if index is None or index in chosen:
            break
        chosen.append(index)
    return chosen


def _normalise_uuid(uuid: str) -> str:
    uuid = uuid.strip().lower()
    return uuid[4:] if uuid.startswith("gpu-") else uuid


def torch_cuda_uuids() -> list[str] | None:
    """UUIDs of the devices torch sees, in CUDA order; None without CUDA (or an old torch)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        return [str(torch.cuda.get_device_properties(i).uuid)
                for i in range(torch.cuda.device_count())]
    except (ImportError, AttributeError, RuntimeError):
        return None


def visible_handles(pynvml: ModuleType, env: dict[str, str] | None = None,
                    cuda_uuids: list[str] | None = None) -> list[tuple[int, Any]]:
    """``[(cuda_index, nvml_handle)]`` for the GPUs visible to this process (NVML initialised).

    With ``cuda_uuids`` (the UUIDs CUDA reports, in CUDA order) devices are matched by UUID,
    which also holds when CUDA's default fastest-first order differs from NVML's PCI order;
    otherwise ``CUDA_VISIBLE_DEVICES`` from ``env`` (default: ``os.environ``) is parsed.
    """
    env = dict(os.environ) if env is None else env
    count = pynvml.nvmlDeviceGetCount()
    handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
    uuids = [_text(pynvml.nvmlDeviceGetUUID(h)) for h in handles]
    by_uuid = {_normalise_uuid(u): i for i, u in enumerate(uuids)}
    if cuda_uuids and all(_normalise_uuid(u) in by_uuid for u in cuda_uuids):
        indices = [by_uuid[_normalise_uuid(u)] for u in cuda_uuids]
    else:
        indices = parse_visible_devices(env.get("CUDA_VISIBLE_DEVICES"), uuids)
    return [(cuda_i, handles[nvml_i]) for cuda_i, nvml_i in enumerate(indices)]


def init_nvml(pynvml: ModuleType) -> None:
    """``nvmlInit`` with a clear :class:`MeterUnavailable` when there is no driver or GPU."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise MeterUnavailable(f"NVML: cannot initialise ({exc}); no NVIDIA driver or GPU") from exc


def default_cuda_sync() -> Callable[[], None] | None:
    """``torch.cuda.synchronize`` when torch sees a CUDA device, else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.synchronize if torch.cuda.is_available() else None


class NvmlDevices:
    """The GPUs this process sees, through NVML: start-up, listing and shutdown in one place.

    ``devices``: ``[(cuda_index, handle)]`` (see :func:`visible_handles`); readings per device:
    :meth:`energy_mj` (the total-energy counter, mJ), :meth:`power_w` (W); :meth:`close` shuts
    NVML down (once). ``pynvml``/``env``/``cuda_uuids`` are injectable for tests. Raises
    :class:`MeterUnavailable` (after shutting NVML down again) when no GPU can be listed.
    """

    def __init__(self, *, pynvml: ModuleType | None = None, env: dict[str, str] | None = None,
                 cuda_uuids: list[str] | None = None) -> None:
        if cuda_uuids is None and pynvml is None:
            cuda_uuids = torch_cuda_uuids()
        self.pynvml = pynvml if pynvml is not None else import_pynvml()
        init_nvml(self.pynvml)
        try:
            self.devices = visible_handles(self.pynvml, env, cuda_uuids)
        except self.pynvml.NVMLError as exc:
            self.pynvml.nvmlShutdown()
            raise MeterUnavailable(f"NVML: cannot list GPUs ({exc})") from exc
        if not self.devices:
            self.pynvml.nvmlShutdown()
            raise MeterUnavailable("NVML: no GPU visible to this process (check "
                                   "CUDA_VISIBLE_DEVICES)")
        self._closed = False

    @property
    def handles(self) -> list[Any]:
        return [h for _, h in self.devices]

    def domains(self) -> list[str]:
        """``gpu:<cuda index>`` per device."""
        return [f"gpu:{i}" for i, _ in self.devices]

    def energy_mj(self) -> list[int]:
        """The total-energy counter of every device (mJ since the driver loaded)."""
        return [self.pynvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self.handles]

    def power_w(self) -> list[float]:
        """The power draw of every device (W)."""
        return [self.pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0 for h in self.handles]

    def has_energy_counter(self) -> bool:
        """Whether every device has the total-energy counter (Volta and newer)."""
        try:
            self.energy_mj()
        except self.pynvml.NVMLError:
            return False
        return True

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.pynvml.nvmlShutdown()


class NvmlMeter(Meter):
    """Energy (J) of every visible NVIDIA GPU per window, as domains ``gpu:<cuda index>``.

    ``pynvml``, ``env`` and ``cuda_uuids`` (default: from torch when CUDA is available) are
    injectable for tests; ``sync`` is called at both window edges
    (default: ``torch.cuda.synchronize`` when CUDA is available); ``sample_period_s`` is the power
    sampling period on GPUs without an energy counter.
    """

    name = "nvml"

    def __init__(self, *, sync: Callable[[], None] | None = None, pynvml: ModuleType | None = None,
                 env: dict[str, str] | None = None, cuda_uuids: list[str] | None = None,
                 sample_period_s: float = 0.02, clock: Clock = time.perf_counter) -> None:
        super().__init__(clock=clock)
        self.gpus = NvmlDevices(pynvml=pynvml, env=env, cuda_uuids=cuda_uuids)
        self.pynvml, self.devices = self.gpus.pynvml, self.gpus.devices
        self.sync = sync if sync is not None else default_cuda_sync()
        self.uses_counter = self.gpus.has_energy_counter()
        # counter: several update periods; sampling: enough samples for a stable integral
        self.min_window_s = 5 * NVML_UPDATE_S if self.uses_counter else 10 * NVML_UPDATE_S
        self._sampler = PeriodicSampler(self.gpus.power_w, sample_period_s, clock=clock,
                                        name="irene-nvml-power")
        self._start_mj: list[int] = []

    def domains(self) -> list[str]:
        return self.gpus.domains()

    def _begin(self) -> None:
        if self.sync is not None:
            self.sync()
        if self.uses_counter:
            self._start_mj = self.gpus.energy_mj()
        else:
            self._sampler.start()

    def _end(self, duration_s: float) -> WindowResult:
        if self.sync is not None:
            self.sync()
        if self.uses_counter:
            end = self.gpus.energy_mj()
            joules = [(e - s) / 1000.0 for s, e in zip(self._start_mj, end, strict=True)]
        else:
            times, watts = self._sampler.stop()
            joules = [integrate_power(times, [w[k] for w in watts], times[0], times[-1])
                      for k in range(len(self.devices))]
        energy = {dom: j for dom, j in zip(self.domains(), joules, strict=True)}
        trusted = duration_s >= NVML_UPDATE_S
        notes: tuple[str, ...] = ()
        if not trusted:
            notes = (f"window {duration_s:.4f} s is shorter than NVML's update period "
                     f"(~{NVML_UPDATE_S} s)",)
        return WindowResult(energy, duration_s, self.name, trusted=trusted, notes=notes)

    def _abort(self) -> None:
        if not self.uses_counter:
            self._sampler.halt()

    def close(self) -> None:
        self.gpus.close()
