"""Plan items over a Ray cluster (optional extra: ``pip install -e '.[ray]'``).

One task per item: ``num_gpus=1`` for a CUDA plan (one measuring task per GPU; Ray sets
``CUDA_VISIBLE_DEVICES``, so the task measures its own GPU and NVML meters that GPU only),
``num_cpus=1`` otherwise (features-only and CPU plans), plus the plan's ``ray.resources`` (e.g.
``{H100: 1}`` to keep a campaign on one kind of GPU). The driver -- the process that ran
``irene run`` -- is the one writer: it holds the output's lock, submits at most one task per
free slot, streams each finished tree back into the output (the same resume, lock and
atomicity rules as a local run) and merges the task's new measurements into the campaign cache;
every task starts from the cache as it is when the task is submitted, so measurements are
shared across workers as they arrive.

A task that fails (its worker or node died, or it raised) is submitted again, preferably on
another node, up to ``ray.max_attempts`` times in all; the items that still fail are reported
and the others go on. Workers announce the item they start (host, pid, node) on a queue the
driver shows as progress.

Connecting: ``--ray`` alone starts a local Ray instance; ``--ray auto`` joins the cluster this
machine belongs to (``ray start`` ran here, or ``RAY_ADDRESS``); ``--ray HOST:6379`` joins the
head's GCS, ``--ray ray://HOST:10001`` goes through Ray Client. The address is checked with a
plain TCP connection first (5 s), so an unreachable cluster is an error at once instead of a
hang. Every worker needs the same irene (and torch/transformers) installed: the driver probes
one worker first and refuses a different irene version.
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from typing import Any

from irene.campaign.plan import Plan, PlanItem
from irene.campaign.worker import HostInfo

#: seconds the driver waits for the probe task (workers start, import torch, open the meter)
PROBE_TIMEOUT_S = 600.0
#: seconds for the TCP check of a cluster address
CONNECT_TIMEOUT_S = 5.0


class RayUnavailable(RuntimeError):
    """Ray is not installed, or the cluster cannot be reached or used."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailable("--ray needs Ray: pip install -e '.[ray]' (or pip install "
                             "ray)") from exc
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a cluster address to check by TCP, or None for ``auto``."""
    if address in ("auto", "local"):
        return None
    text = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise RayUnavailable(f"--ray {address}: give HOST:PORT, ray://HOST:PORT or auto")
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """RayUnavailable unless a TCP connection to the address's host and port opens."""
    target = _host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout):
            pass
    except OSError as exc:
        raise RayUnavailable(f"cannot reach the Ray cluster at {address} ("
                             f"{exc.strerror or exc}); start it with `ray start --head` on the "
                             "head node, or check the address and firewall") from exc


# --------------------------------------------------------------------------------------------
# the worker side

_MAKERS: dict[str, Any] = {}


def _maker(plan: Plan) -> Any:
    """This worker process's ItemMaker for ``plan`` (the meter and models kept across tasks)."""
    from irene.campaign.worker import ItemMaker

    key = plan.text + str(plan.path)
    maker = _MAKERS.get(key)
    if maker is None:
        for old in _MAKERS.values():
            old.close()
        _MAKERS.clear()
        maker = _MAKERS[key] = ItemMaker(plan).open()
    return maker


def probe_task(plan: Plan) -> dict[str, Any]:
    """Runs on a worker: what it measures with (HostInfo as a dict)."""
    from irene.campaign.worker import probe_host

    return probe_host(plan).to_dict()


def item_task(plan: Plan, item: dict[str, Any], entries: dict[str, dict[str, Any]],
              events: Any, attempt: int) -> dict[str, Any]:
    """Runs on a worker: make one item's tree from the cache snapshot ``entries``; returns the
    tree (JSON), the new measurements and where it ran."""
    import ray

    from irene.campaign.cache import measurement_from_dict
    from irene.measure.protocol import MeasurementCache

    where = {"host": socket.gethostname(), "pid": os.getpid(),
             "node": ray.get_runtime_context().get_node_id()}
    plan_item = PlanItem.from_dict(item)
    if events is not None:
        events.put({"event": "started", "item": plan_item.label(), "attempt": attempt,
                    **where})
    start = time.perf_counter()
    cache = MeasurementCache(enabled=plan.protocol.dedup)
    for signature, entry in entries.items():
        cache._store[signature] = measurement_from_dict(entry)
    tree, caught = _maker(plan).make(plan_item, cache)
    new = {str(k): m.to_dict() for k, m in cache._store.items() if k not in entries}
    return {"tree": tree.to_json(), "entries": new, "warnings": caught,
            "seconds": time.perf_counter() - start, **where}


# --------------------------------------------------------------------------------------------
# the driver side


class RayExecutor:
    """Runs a plan's items as Ray tasks; the calling process writes (see the module
    docstring)."""

    name = "ray"

    def __init__(self, plan: Plan, *, address: str | None = "",
                 on_event: Any = None) -> None:
        self.plan = plan
        self.address = address or None
        self.on_event = on_event
        self.ray: Any = None
        self.started_here = False
        self.retried: dict[str, list[str]] = {}

    # -- connecting -------------------------------------------------------------------------

    def connect(self) -> None:
        ray = import_ray()
        if self.address is not None:
            check_reachable(self.address)
        if ray.is_initialized():  # this process already joined a cluster (or started one)
            self.ray = ray
            self._check_resources()
            return
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True,
                                  "configure_logging": False}
        if self.address is None:  # a local instance: keep it small beside the measurements
            kwargs["object_store_memory"] = 256 * 2**20
        try:
            ray.init(address=self.address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = self.address or "a new local instance"
            raise RayUnavailable(f"cannot connect to Ray at {where}: {exc}") from exc
        self.ray, self.started_here = ray, True
        self._check_resources()

    def _check_resources(self) -> None:
        resources = self.ray.cluster_resources()
        if self.plan.device.startswith("cuda"):
            if self.plan.device not in ("cuda", "cuda:0"):
                raise RayUnavailable(f"device {self.plan.device}: with --ray each task gets "
                                     "one GPU of its own, seen as cuda: use device: cuda")
            if resources.get("GPU", 0) < 1:
                raise RayUnavailable("the plan measures on CUDA and the Ray cluster has no "
                                     f"GPU (resources: {_show(resources)})")
        for name, amount in self.plan.ray_resources.items():
            if resources.get(name, 0) < amount:
                raise RayUnavailable(f"ray.resources: the cluster has {resources.get(name, 0)}"
                                     f" of {name!r}, a task needs {amount}")

    def slots(self) -> int:
        """How many tasks run at once: the cluster's GPUs (CUDA plans) or CPUs."""
        resources = self.ray.cluster_resources()
        unit = "GPU" if self.plan.device.startswith("cuda") else "CPU"
        slots = int(resources.get(unit, 1))
        for name, amount in self.plan.ray_resources.items():
            slots = min(slots, int(resources.get(name, 0) // amount))
        return max(slots, 1)

    def _options(self) -> dict[str, Any]:
        on_gpu = self.plan.device.startswith("cuda")
        return {"num_gpus": 1 if on_gpu else 0, "num_cpus": 1, "max_retries": 0,
                "resources": dict(self.plan.ray_resources)}

    def probe(self) -> HostInfo:
        from irene import __version__

        remote = self.ray.remote(probe_task).options(**self._options())
        try:
            info = self.ray.get(remote.remote(self.plan), timeout=PROBE_TIMEOUT_S)
        except self.ray.exceptions.GetTimeoutError as exc:
            raise RayUnavailable(f"no Ray worker answered within {PROBE_TIMEOUT_S:.0f} s "
                                 "(no free worker with the resources a task needs?)") from exc
        except self.ray.exceptions.RayError as exc:
            raise RayUnavailable(f"the probe task failed on the cluster: "
                                 f"{_first_line(exc)}") from exc
        host = HostInfo(**info)
        theirs = host.versions.get("irene")
        if theirs != __version__:
            raise RayUnavailable(f"the workers run irene {theirs}, this driver irene "
                                 f"{__version__}: install the same version everywhere")
        return host

    def close(self) -> None:
        if self.started_here and self.ray is not None:
            self.ray.shutdown()

    # -- running ----------------------------------------------------------------------------

    def run(self, items: list[PlanItem], session: Any) -> None:
        from ray.util.queue import Queue

        from irene.tree import tree_from_dict

        ray = self.ray
        task = ray.remote(item_task)
        events = Queue(actor_options={"num_cpus": 0})
        todo: deque[tuple[PlanItem, int, str | None]] = deque((i, 1, None) for i in items)
        pending: dict[Any, tuple[PlanItem, int]] = {}
        node_of: dict[str, str] = {}
        snapshot_size, snapshot = -1, None
        slots = self.slots()
        try:
            while todo or pending:
                while todo and len(pending) < slots:
                    item, attempt, avoid = todo.popleft()
                    if attempt == 1 and not session.take(item):
                        continue
                    entries = session.cache.entries() if session.cache is not None else {}
                    if len(entries) != snapshot_size:
                        snapshot_size, snapshot = len(entries), ray.put(entries)
                    options = self._options()
                    strategy = self._elsewhere(avoid)
                    if strategy is not None:
                        options["scheduling_strategy"] = strategy
                    ref = task.options(**options).remote(self.plan, item.to_dict(), snapshot,
                                                         events, attempt)
                    pending[ref] = (item, attempt)
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.2)
                self._drain(events, session, node_of)
                for ref in ready:
                    item, attempt = pending.pop(ref)
                    try:
                        out = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        self._retry_or_fail(item, attempt, exc, todo, session,
                                            node_of.get(item.label()))
                        continue
                    tree = tree_from_dict(_json(out["tree"]), source=f"ray:{out['host']}")
                    session.accept(item, tree, out["warnings"], entries=out["entries"])
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            ray.kill(events.actor)

    def _drain(self, events: Any, session: Any, node_of: dict[str, str]) -> None:
        from ray.util.queue import Empty

        while True:
            try:
                event = events.get_nowait()
            except Empty:
                return
            node_of[event["item"]] = event.get("node")
            item_label = event.pop("item")
            session.bar.set_postfix_str(f"{item_label} on {event.get('host')} "
                                        f"(attempt {event.get('attempt')})", refresh=True)
            if self.on_event is not None:
                self.on_event({"item": item_label, **event})

    def _retry_or_fail(self, item: PlanItem, attempt: int, exc: Exception,
                       todo: deque, session: Any, node: str | None) -> None:
        reason = f"attempt {attempt}: {type(exc).__name__}: {_first_line(exc)}"
        self.retried.setdefault(item.label(), []).append(reason)
        if attempt < self.plan.ray_max_attempts:
            session.bar.write(f"retrying {item.label()} elsewhere ({reason})",
                              file=session.stream)
            todo.appendleft((item, attempt + 1, node))
            if self.on_event is not None:
                self.on_event({"event": "retry", "item": item.label(), "reason": reason})
        else:
            session.failed(item, "; ".join(self.retried[item.label()]))

    def _elsewhere(self, avoid: str | None) -> Any:
        """A scheduling strategy preferring a live node other than ``avoid`` (None: any)."""
        if avoid is None:
            return None
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        others = [n["NodeID"] for n in self.ray.nodes() if n.get("Alive") and
                  n["NodeID"] != avoid]
        if not others:
            return None
        return NodeAffinitySchedulingStrategy(node_id=others[0], soft=True)


def _json(text: str) -> Any:
    import json

    return json.loads(text)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:300]


def _show(resources: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in sorted(resources.items())
                     if not k.startswith("node:"))
