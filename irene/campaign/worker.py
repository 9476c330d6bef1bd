"""Making one plan item's tree on the machine that measures it (this process or a Ray worker).

:func:`probe_host` says what a machine measures with (hardware name, meter and its domains,
versions) without measuring anything; :class:`ItemMaker` builds models (keeping recent ones,
see :class:`~irene.campaign.schedule.ModelPool`), opens the meter once and traces items with
:func:`irene.tracing.trace` through a shared measurement cache.
"""

from __future__ import annotations

import platform
import socket
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

from irene.campaign.cache import CacheContext
from irene.campaign.plan import Plan, PlanItem
from irene.campaign.schedule import ModelPool, default_pool_bytes
from irene.measure.environment import cpu_model
from irene.measure.protocol import MeasurementCache
from irene.tree import Tree, TreeKey, protocol_key


class HostError(RuntimeError):
    """The machine cannot run the plan (no CUDA for a CUDA plan, no meter)."""


@dataclass
class HostInfo:
    """What a machine measures with. ``hardware``: the device name recorded in the tree key;
    ``meter``: the opened meter's name (``"none"`` without one), ``meter_domains``,
    ``meter_window_s`` (its minimum window, s); ``versions``: python, torch, transformers,
    irene."""

    hostname: str
    hardware: str
    device_type: str
    cpu_model: str
    meter: str
    meter_domains: list[str]
    meter_window_s: float
    versions: dict[str, str] = field(default_factory=dict)

    def context(self, plan: Plan) -> CacheContext:
        """The measurement cache's context for this host under ``plan``'s protocol."""
        return CacheContext(hardware=self.hardware, device_type=self.device_type,
                            cpu_model=self.cpu_model, meter=self.meter,
                            meter_domains=tuple(self.meter_domains),
                            protocol=protocol_key(plan.protocol.to_dict()),
                            versions=dict(self.versions))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def versions() -> dict[str, str]:
    import torch
    import transformers

    from irene import __version__

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "irene": __version__}


def check_device(device: str) -> None:
    """HostError when the plan's device is not here (:func:`irene.workload.device_problem`)."""
    from irene.workload import device_problem

    problem = device_problem(device)
    if problem:
        raise HostError(f"device {device!r}: {problem} on {socket.gethostname()}")


def probe_host(plan: Plan) -> HostInfo:
    """Open (and close) the plan's meter on this machine and say what it measures with."""
    from irene.measure import open_meter
    from irene.tracing.tracer import describe_device

    check_device(plan.device)
    name, domains, window = "none", [], 0.0
    if plan.timing:
        meter = open_meter(plan.meter)
        if meter is not None:
            try:
                name, domains, window = meter.name, meter.domains(), meter.min_window_s
            finally:
                meter.close()
    return HostInfo(hostname=socket.gethostname(), hardware=describe_device(plan.device),
                    device_type="cuda" if plan.device.startswith("cuda") else "cpu",
                    cpu_model=cpu_model() or platform.machine() or "unknown", meter=name,
                    meter_domains=list(domains), meter_window_s=window, versions=versions())


def item_key(item: PlanItem, plan: Plan, host: HostInfo) -> TreeKey:
    """The tree key the item's tree will have when measured on ``host``."""
    from irene.tracing.tracer import planned_key

    key = planned_key(item.model, item.workload, schema=plan.schema, timing=plan.timing,
                      meter=None, protocol=plan.protocol)
    return key._replace(hardware=host.hardware, meter=host.meter if plan.timing else "none")


class ItemMaker:
    """Makes trees of a plan's items on this machine: one meter, recent models kept."""

    def __init__(self, plan: Plan, *, pool_bytes: float | None = None) -> None:
        self.plan = plan
        self.meter = None
        self._models: dict[tuple, Any] = {}
        self.pool = ModelPool(pool_bytes if pool_bytes is not None else
                              default_pool_bytes(_device_memory(plan.device)))
        self.builds = 0

    def open(self) -> ItemMaker:
        from irene.measure import open_meter

        check_device(self.plan.device)
        if self.plan.timing and self.meter is None:
            self.meter = open_meter(self.plan.meter)
        return self

    def close(self) -> None:
        if self.meter is not None:
            self.meter.close()
            self.meter = None
        self._models.clear()

    def __enter__(self) -> ItemMaker:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def model(self, item: PlanItem) -> Any:
        """The built model of ``item`` (built now unless kept from an earlier item)."""
        import torch

        from irene.tracing import model_for

        key = item.model_key
        model = self._models.get(key)
        if model is None:
            # built on its device: the random initialisation of a billion parameters takes
            # ~7 s on one CPU core and well under a second on a GPU
            with warnings.catch_warnings(), torch.device(item.workload.device):
                warnings.simplefilter("ignore")
                model = model_for(item.workload, item.source, device=item.workload.device,
                                  hub=self.plan.hub, seed=self.plan.seed)
            self._models[key] = model
            self.builds += 1
        size = sum(p.numel() * p.element_size() for p in model.parameters())
        for old in self.pool.use(key, size):
            self._models.pop(old, None)
        return model

    def make(self, item: PlanItem, cache: MeasurementCache) -> tuple[Tree, list[str]]:
        """The tree of ``item`` and the warnings raised while making it."""
        from irene.tracing import trace

        model = self.model(item)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tree = trace(model, item.workload, timing=self.plan.timing, meter=self.meter,
                         protocol=self.plan.protocol, model_name=item.model, cache=cache,
                         seed=self.plan.seed, schema=self.plan.schema)
        _release_cuda(item.workload.device)
        return tree, [str(w.message) for w in caught]


def _device_memory(device: str) -> float:
    import psutil
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return float(torch.cuda.get_device_properties(torch.device(device)).total_memory)
    return float(psutil.virtual_memory().total)


def _release_cuda(device: str) -> None:
    """Give the recorded inputs of a finished tree back to the device."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
