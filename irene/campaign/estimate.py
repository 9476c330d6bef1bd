"""How long a plan will take: a cost model of building, tracing and measuring, per item.

The measuring protocol (:mod:`irene.measure.protocol`) fixes most of the time: for each node
measured, ``warmup`` calls, the repeat calibration (growing call counts until a run lasts the
target window ``max(min_run_seconds, meter.min_window_s)``), ``runs`` windows of ``repeats``
calls, ``cooldown_s`` between runs, plus fixed overheads per window and per node. Given one
call's duration ``t`` this is simulated exactly (:func:`protocol_seconds`); a node's ``t`` comes
from a roofline over its leaves::

    t(leaf)   = op_overhead + max(flops / flop_rate(kind, dtype), bytes / mem_bandwidth)
    t(module) = sum of its children's time per call + module_overhead

(matrix products at ``matmul_flops``, everything else at ``vector_flops``; an embedding
look-up moves its output's rows, not its table; a leaf module written as several element-wise
torch calls, such as GPT-2's ``NewGELUActivation``, is one pass over its output per FLOP per
element, each pass an op with its own overhead). Then per tree: the
capture pass (``capture_factor`` x the forward's roofline time + ``capture_node_s`` per node),
a fixed ``tree_s``; per model build: ``build_fixed_s + build_s_per_param x parameters``; once per
run: the idle-power reading when the protocol subtracts idle power.

Profiles: ``local`` calibrates the rates on this machine in about two seconds (CPU, one thread
as the protocol times CPU replays; or the CUDA device here); the constants of the other
profiles are documented below, for planning a GPU campaign on a machine without the GPU.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from irene.measure.protocol import Protocol
from irene.tree import Node, Tree

#: leaf types timed at matrix-product rates (everything else at vector rates)
MATMUL_TYPES = {"MatMul", "Linear", "Conv1D", "Conv1d", "Conv2d", "Bilinear",
                "ScaledDotProductAttention"}
#: leaf modules that run as one kernel (or one library call); other leaf modules without an
#: ``op`` are element-wise Python (one pass per FLOP per element)
FUSED_MODULES = {"Linear", "Conv1D", "Conv1d", "Conv2d", "LayerNorm", "GroupNorm", "Embedding",
                 "EmbeddingBag", "Softmax", "GELU", "SiLU", "ReLU", "Tanh", "Sigmoid",
                 "GELUActivation", "SiLUActivation", "Dropout", "Identity", "Bilinear"}
LOOKUP_TYPES = {"Embedding", "EmbeddingBag"}
#: the minimum window (s) of each meter, for planning before the meter is opened
#: (irene.measure: NVML with its energy counter 0.5 s, RAPL 0.1 s, a wattmeter >= 1 s)
METER_WINDOW_S = {"none": 0.0, "simulated": 0.0, "nvml": 0.5, "rapl": 0.1, "wattmeter": 1.0,
                  "auto": 0.5}


@dataclass(frozen=True)
class HardwareProfile:
    """Rates and overheads of one machine (all times in seconds, rates per second).

    ``matmul_flops``/``vector_flops``: FLOP/s of matrix products / other primitives per dtype;
    ``mem_bandwidth``: bytes/s; ``op_overhead_s``: dispatch and launch per primitive call;
    ``module_overhead_s``: per module call (``nn.Module.__call__`` and the views, reshapes and
    copies a module body does that are not primitives); ``window_overhead_s``: per measured
    window (sync, meter readings, sampler thread); ``node_overhead_s``: per measured node
    outside its windows; ``capture_factor``/``capture_node_s``: the capture pass of a tree;
    ``tree_s``: per tree (sampler start, metadata, writing); ``build_fixed_s``/
    ``build_s_per_param``: building a model with random weights (and moving it to the device);
    ``memory_bytes``: device memory, for how many built models are kept; ``start_s``: a run's
    start (device and meter opened, the output checked); ``planning_node_s``: per node of an
    item planned on fake tensors (a run with a budget plans each item before making it).
    """

    name: str
    description: str
    matmul_flops: dict[str, float]
    vector_flops: dict[str, float]
    mem_bandwidth: float
    op_overhead_s: float
    module_overhead_s: float
    window_overhead_s: float
    node_overhead_s: float
    capture_factor: float
    capture_node_s: float
    tree_s: float
    build_fixed_s: float
    build_s_per_param: float
    memory_bytes: float
    start_s: float
    planning_node_s: float

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


#: H100 SXM5 80 GB, eager PyTorch. Peaks from NVIDIA's datasheet (dense): 989 TFLOP/s
#: FP16/BF16 tensor cores, 67 TFLOP/s FP32 without TF32 (torch's default for float32 matmuls),
#: 3.35 TB/s HBM3; eager transformer GEMMs reach about 60 % of the tensor-core peak and 65 % of
#: FP32, streaming kernels about 75 % of the bandwidth. A primitive launched from Python costs
#: ~8 us of CPU time (it bounds small ops); a module call ~15 us with its views. Per measured
#: window ~2 ms (synchronise, NVML energy reads, the sampler thread's start and stop), 10 ms per
#: node. The capture pass runs the FLOP counter and hooks in Python: ~1.5 ms per node (measured
#: on this package's CPU host, which has a slower core than a GPU host's). Building: the runner
#: builds on the GPU, where the random initialisation is a few kernels (taken as 1 ns per
#: parameter) after ~3 s of Python module construction (on the CPU it is ~7 ns per parameter,
#: measured here); 0.5 s per tree (NVML sampler start, metadata, an fsync'd append); 15 s to
#: start a run (CUDA context, NVML, the output checked); planning an item on fake tensors
#: ~1.5 ms per node. These are estimates until checked against a run on an H100 (see the
#: docs/campaigns.md).
H100_SXM = HardwareProfile(
    name="h100-sxm", description="NVIDIA H100 SXM5 80 GB (datasheet peaks x eager efficiency)",
    matmul_flops={"float16": 600e12, "bfloat16": 600e12, "float32": 45e12},
    vector_flops={"float16": 60e12, "bfloat16": 60e12, "float32": 30e12},
    mem_bandwidth=2.5e12, op_overhead_s=8e-6, module_overhead_s=15e-6,
    window_overhead_s=2e-3, node_overhead_s=10e-3, capture_factor=1.0, capture_node_s=1.5e-3,
    tree_s=0.5, build_fixed_s=3.0, build_s_per_param=1e-9, memory_bytes=80e9, start_s=15.0,
    planning_node_s=1.5e-3)
#: H200 141 GB: the H100's compute, 4.8 TB/s HBM3e
H200 = replace(H100_SXM, name="h200", description="NVIDIA H200 141 GB (H100 compute, HBM3e)",
               mem_bandwidth=3.6e12, memory_bytes=141e9)
PROFILES: dict[str, HardwareProfile] = {p.name: p for p in (H100_SXM, H200)}


# --------------------------------------------------------------------------------------------
# calibrating the local machine


def _median_time(fn: Callable[[], Any], calls: int, sync: Callable[[], None],
                 repeats: int = 5) -> float:
    fn()
    sync()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        samples.append((time.perf_counter() - t0) / calls)
    return statistics.median(samples)


def calibrate_local(device: str, dtypes: list[str], *, threads: int | None = None
                    ) -> HardwareProfile:
    """A profile of this machine measured now (about 2 s): matrix-product FLOP/s per dtype,
    streaming bandwidth, per-op and per-module overheads, on ``device`` (CPU replays run on
    ``threads``, default 1, as the protocol does). Build, capture and per-node constants are
    the ones measured on this package's CPU host (``benchmarks/campaign_bench.py``)."""
    import psutil
    import torch

    from irene.tracing.registry import torch_dtype

    on_cpu = not device.startswith("cuda")
    sync = torch.cuda.synchronize if not on_cpu else (lambda: None)
    before = torch.get_num_threads()
    if on_cpu:
        torch.set_num_threads(threads or 1)
    try:
        matmul: dict[str, float] = {}
        vector: dict[str, float] = {}
        # a transformer projection: (tokens x hidden) @ (hidden x hidden)
        m, k = (64, 768) if on_cpu else (4096, 4096)
        for name in dict.fromkeys(dtypes):
            dt = torch_dtype(name)
            a = torch.randn(m, k, device=device).to(dt)
            b = torch.randn(k, k, device=device).to(dt)
            seconds = _median_time(lambda a=a, b=b: a @ b, 3 if on_cpu else 20, sync)
            matmul[name] = 2 * m * k * k / seconds
        size = 4_000_000 if on_cpu else 256_000_000
        x = torch.randn(size, device=device)
        y = torch.randn(size, device=device)
        seconds = _median_time(lambda: torch.add(x, y), 3, sync)
        bandwidth = 3 * 4 * size / seconds
        for name in dict.fromkeys(dtypes):
            vector[name] = bandwidth / 4  # one FLOP per 4 bytes streamed, as an add does
        small = torch.randn(4, device=device)
        square = torch.randn(4, 4, device=device)
        op = statistics.median(_median_time(fn, 500, sync) for fn in (
            lambda: torch.add(small, small), lambda: torch.softmax(square, -1),
            lambda: torch.matmul(square, square)))
        layer = torch.nn.Linear(4, 4).to(device)
        module = max(_median_time(lambda: layer(small), 500, sync) - op, op)
    finally:
        torch.set_num_threads(before)
    memory = float(psutil.virtual_memory().total) if on_cpu else \
        float(torch.cuda.get_device_properties(torch.device(device)).total_memory)
    return HardwareProfile(
        name="local", description=f"this machine ({device}), calibrated now",
        matmul_flops=matmul, vector_flops=vector, mem_bandwidth=bandwidth, op_overhead_s=op,
        module_overhead_s=module + 2 * op, window_overhead_s=0.6e-3, node_overhead_s=4e-3,
        capture_factor=2.0, capture_node_s=1.5e-3, tree_s=0.15, build_fixed_s=0.3,
        build_s_per_param=7e-9 if on_cpu else 1e-9, memory_bytes=memory,
        start_s=0.3 if on_cpu else 10.0, planning_node_s=2e-3)


# --------------------------------------------------------------------------------------------
# the cost model


def protocol_seconds(call_s: float, protocol: Protocol, target_s: float,
                     profile: HardwareProfile) -> float:
    """Wall time (s) to measure one node whose call lasts ``call_s`` under ``protocol`` with a
    run target of ``target_s``: warm-up, the calibration loop of
    :func:`irene.measure.protocol.calibrate_repeats` simulated step by step, the runs, the
    cooldowns and the profile's overheads."""
    t = max(call_s, 1e-9)
    total = protocol.warmup * t
    n, steps = 1, 0
    while True:
        elapsed = n * t
        total += elapsed
        steps += 1
        if elapsed >= target_s or n >= protocol.max_repeats:
            break
        grow = 100.0 if elapsed <= 0 else min(100.0, max(2.0, 1.1 * target_s / elapsed))
        n = min(protocol.max_repeats, max(n + 1, math.ceil(n * grow)))
    total += protocol.runs * (n * t + profile.window_overhead_s)
    total += (protocol.runs - 1) * protocol.cooldown_s
    return total + profile.node_overhead_s


def _output_bytes(node: Node) -> float:
    """Bytes of the node's first output (shape and dtype recorded by the tracer)."""
    shapes = node.extra.get("output_shapes") or []
    if not shapes:
        return 0.0
    elements = math.prod(shapes[0]) if shapes[0] else 1
    size = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}.get(
        str(node.extra.get("dtype")), 4)
    return float(elements * size)


def _leaf_call_seconds(node: Node, dtype: str, profile: HardwareProfile) -> float:
    calls = max(int(node.extra.get("calls", 1) or 1), 1)
    flops = node.features["flops"] * 1e6 / calls
    nbytes = node.features["mem_bytes"] * 2**20 / calls
    rates = profile.matmul_flops if node.instance_type in MATMUL_TYPES else profile.vector_flops
    rate = rates.get(dtype) or min(rates.values())
    out_bytes = _output_bytes(node)
    if node.instance_type in LOOKUP_TYPES and out_bytes:
        nbytes = 2 * out_bytes  # the rows read and the output written, not the whole table
    passes = 1
    if "op" not in node.extra and node.instance_type not in FUSED_MODULES and out_bytes:
        elements = out_bytes / {"float16": 2, "bfloat16": 2}.get(dtype, 4)
        passes = max(1, round(flops / elements))
        nbytes = max(nbytes, passes * 2 * out_bytes)
    return passes * profile.op_overhead_s + max(flops / rate, nbytes / profile.mem_bandwidth)


def call_seconds(tree: Tree, dtype: str, profile: HardwareProfile) -> dict[str, float]:
    """Estimated seconds per call of every node of a (features-only) tree, by scope."""
    out: dict[str, float] = {}

    def total(node: Node) -> float:  # seconds per forward pass spent in this node
        calls = max(int(node.extra.get("calls", 1) or 1), 1)
        if not node.children:
            per_call = _leaf_call_seconds(node, dtype, profile)
        else:
            per_call = sum(total(c) for c in node.children) / calls + profile.module_overhead_s
        out[node.scope] = per_call
        return per_call * calls

    total(tree.root)
    return out


def meter_window_s(meter: str) -> float:
    """The minimum window (s) of a meter spec, for planning without opening it."""
    parts = [p.strip().split(":")[0].lower() for p in meter.split("+") if p.strip()]
    return max((METER_WINDOW_S.get(p, 1.0) for p in parts), default=0.0)


@dataclass
class ItemCost:
    """The estimated cost of one plan item. ``measure_s``: per signature this tree would
    measure (first time), seconds; ``capture_s``/``tree_s``: tracing and per-tree overhead;
    ``nodes``/``unique``: nodes of the tree and distinct signatures among them."""

    capture_s: float
    tree_s: float
    measure_s: dict[str, float]
    nodes: int
    unique: int
    parameters: int
    planning_s: float = 0.0

    def seconds(self, known: set[str] | frozenset = frozenset()) -> float:
        """Seconds for this item when the signatures in ``known`` are already measured."""
        return self.planning_s + self.capture_s + self.tree_s + \
            sum(s for sig, s in self.measure_s.items() if sig not in known)

    def new_signatures(self, known: set[str] | frozenset) -> set[str]:
        return {s for s in self.measure_s if s not in known}


class Estimator:
    """Costs of plan items under a protocol, meter window and hardware profile."""

    def __init__(self, profile: HardwareProfile, protocol: Protocol, *, meter: str,
                 timing: bool = True, meter_window: float | None = None,
                 planned: bool = False) -> None:
        self.profile, self.protocol, self.timing = profile, protocol, timing
        self.planned = planned  # a budgeted run plans each item on fake tensors first
        window = meter_window if meter_window is not None else meter_window_s(meter)
        self.target_s = max(protocol.min_run_seconds, window)
        self.idle_s = protocol.idle_seconds if (protocol.subtract_idle and timing and
                                                meter.lower() != "none") else 0.0

    def item_cost(self, tree: Tree, dtype: str) -> ItemCost:
        """The cost of making ``tree`` (a features-only tree of the item)."""
        nodes = list(tree.nodes())
        calls = call_seconds(tree, dtype, self.profile)
        forward_s = calls[tree.root.scope]
        capture = self.profile.capture_factor * forward_s + \
            self.profile.capture_node_s * len(nodes)
        measure: dict[str, float] = {}
        if self.timing:
            for node in nodes:
                signature = node.extra.get("signature") or f"unshared:{node.scope}"
                if not self.protocol.dedup:
                    signature = f"{signature}@{node.scope}"
                if signature not in measure:
                    measure[signature] = protocol_seconds(calls[node.scope], self.protocol,
                                                          self.target_s, self.profile)
        planning = self.profile.planning_node_s * len(nodes) if self.planned else 0.0
        return ItemCost(capture_s=capture, tree_s=self.profile.tree_s, measure_s=measure,
                        nodes=len(nodes), unique=len(measure),
                        parameters=int(tree.root.features["num_parameters"]),
                        planning_s=planning)

    def build_seconds(self, parameters: int) -> float:
        """Seconds to build a model of ``parameters`` parameters on the device."""
        return self.profile.build_fixed_s + self.profile.build_s_per_param * parameters


def model_bytes(parameters: int, dtype: str) -> int:
    """Bytes of a model's weights in ``dtype``."""
    return parameters * (4 if dtype == "float32" else 2)
