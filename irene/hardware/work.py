"""Workloads of the hardware model: a step of primitives on one GPU, and many steps as arrays.

A :class:`Work` is one step (a forward pass, a decode step, a training step) as the
:class:`Primitive` records one GPU runs, on ``gpus`` identical GPUs, producing ``tokens`` tokens.
:func:`work_cost` evaluates it with :func:`irene.hardware.model.primitive_cost` per primitive
plus the runtime's per-step overhead; :class:`WorkArrays` holds many steps as (rows × slots)
arrays and :func:`evaluate` computes the *same* equations vectorised (for fitting: the tests
check both agree).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from irene.hardware.gpus import GpuSpec
from irene.hardware.model import (
    DEQUANT_FORMATS,
    HardwareParams,
    NodeCost,
    compute_dtype,
    module_cost,
    primitive_cost,
)
from irene.hardware.runtime import CLASSES, RuntimeProfile


@dataclass(frozen=True)
class Primitive:
    """``kernels`` kernels of class ``kind`` named ``name`` (e.g. the module), computing
    ``flops`` FLOPs in ``dtype`` and moving ``nbytes`` bytes (over the link for ``comm``)."""

    name: str
    kind: str
    flops: float
    nbytes: float
    dtype: str = "bf16"
    kernels: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in CLASSES:
            raise ValueError(f"primitive {self.name}: unknown class {self.kind!r}")


@dataclass(frozen=True)
class Work:
    """One step on each of ``gpus`` GPUs: per-GPU ``primitives`` run one after another, then
    the runtime's per-step host overhead; the step yields ``tokens`` tokens."""

    primitives: tuple[Primitive, ...]
    gpus: int = 1
    tokens: float = 1.0
    label: str = ""


@dataclass(frozen=True)
class WorkCost:
    """A step's cost: ``step`` (one GPU; time s, energy J), every primitive's cost, and the
    totals of all GPUs."""

    step: NodeCost
    primitives: tuple[tuple[Primitive, NodeCost], ...]
    gpus: int
    tokens: float

    @property
    def seconds(self) -> float:
        """Seconds per step."""
        return self.step.time_s

    @property
    def joules(self) -> float:
        """Joules of the step on all GPUs."""
        return self.step.energy_j * self.gpus

    @property
    def joules_per_token(self) -> float:
        """Joules of all GPUs per token."""
        return self.joules / self.tokens

    @property
    def power_per_gpu_w(self) -> float:
        """Average watts of one GPU over the step (never above its board limit)."""
        return self.step.power_w


def work_cost(work: Work, gpu: GpuSpec, params: HardwareParams,
              runtime: RuntimeProfile) -> WorkCost:
    """The cost of ``work`` primitive by primitive (module docstring)."""
    costs = tuple((p, primitive_cost(p.flops, p.nbytes, p.dtype, p.kind, gpu, params, runtime,
                                     p.kernels)) for p in work.primitives)
    step = module_cost((c for _, c in costs), gpu, params, runtime.step_overhead_s)
    return WorkCost(step=step, primitives=costs, gpus=work.gpus, tokens=work.tokens)


# --------------------------------------------------------------------------- vectorised

@dataclass
class WorkArrays:
    """Many steps as arrays: rows × slots of FLOPs, bytes and kernels, where a slot is one
    (name, class, dtype) shared by all rows; per row the GPU count and tokens."""

    slots: list[tuple[str, str, str]]
    flops: np.ndarray
    nbytes: np.ndarray
    kernels: np.ndarray
    gpus: np.ndarray
    tokens: np.ndarray
    labels: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, works: Sequence[Work]) -> WorkArrays:
        """The arrays of ``works`` (primitives of the same slot in one step add up)."""
        index: dict[tuple[str, str, str], int] = {}
        for w in works:
            for p in w.primitives:
                index.setdefault((p.name, p.kind, p.dtype), len(index))
        n, s = len(works), len(index)
        flops, nbytes, kernels = np.zeros((n, s)), np.zeros((n, s)), np.zeros((n, s))
        for i, w in enumerate(works):
            for p in w.primitives:
                j = index[(p.name, p.kind, p.dtype)]
                flops[i, j] += p.flops
                nbytes[i, j] += p.nbytes
                kernels[i, j] += p.kernels
        return cls(slots=list(index), flops=flops, nbytes=nbytes, kernels=kernels,
                   gpus=np.array([w.gpus for w in works], float),
                   tokens=np.array([w.tokens for w in works], float),
                   labels=[w.label for w in works])

    def take(self, mask: np.ndarray) -> WorkArrays:
        """The rows selected by ``mask`` (boolean or indices)."""
        return WorkArrays(slots=self.slots, flops=self.flops[mask], nbytes=self.nbytes[mask],
                          kernels=self.kernels[mask], gpus=self.gpus[mask],
                          tokens=self.tokens[mask],
                          labels=list(np.asarray(self.labels, dtype=object)[mask])
                          if self.labels else [])

    def __len__(self) -> int:
        return len(self.gpus)


def evaluate(a: WorkArrays, gpu: GpuSpec, params: HardwareParams,
             runtime: RuntimeProfile) -> tuple[np.ndarray, np.ndarray]:
    """(seconds per step, joules per step of one GPU) of every row — the equations of
    :func:`work_cost`, vectorised over rows and slots. ``params`` and ``runtime`` may also be
    duck-typed objects whose numbers are arrays of shape (K, 1): the result is then (K, rows),
    one row per parameter set (the fit's finite differences in one call)."""
    idle = np.minimum(params.idle_scale * gpu.idle_power_w, 0.9 * gpu.power_limit_w)
    budget = gpu.power_limit_w - idle
    busy = params.busy_share * budget
    per_byte = params.byte_share * budget / gpu.memory_bandwidth
    limit = gpu.power_limit_w
    time: np.ndarray | float = 0.0
    energy: np.ndarray | float = 0.0
    for j, (_, kind, dtype) in enumerate(a.slots):
        f, q, n = a.flops[:, j], a.nbytes[:, j], a.kernels[:, j]
        if not (f.any() or q.any() or n.any()):
            continue
        if kind == "comm":
            t_k = q / (params.eff_link * gpu.link_bandwidth)
            t = t_k + n * params.link_latency_s
            dynamic = params.link_joules_per_byte * q
        else:
            eff = params.eff_compute[kind] * runtime.efficiency[kind]
            if dtype in DEQUANT_FORMATS:
                eff = eff * params.eff_mxfp4
            elif dtype == "fp8":
                eff = eff * (params.eff_fp8_moe if kind == "moe" else 1.0)
                eff = eff * (params.eff_fp8 if gpu.supports("fp8") else 1.0)
            peak = gpu.peak_flops(compute_dtype(dtype))
            t_f = f / (np.minimum(eff, 1.0) * peak)
            mem = params.eff_memory[kind]
            if dtype in DEQUANT_FORMATS:
                mem = mem * params.eff_mxfp4_memory
            elif dtype == "fp8":
                mem = mem * params.eff_fp8_memory * (params.eff_fp8_moe if kind == "moe" else 1.0)
            t_q = q / (np.minimum(mem, 1.0) * gpu.memory_bandwidth)
            t_k = np.maximum(t_f, t_q) + params.overlap * np.minimum(t_f, t_q)
            dynamic = per_byte * q + params.flop_share * budget / peak * f
            if dtype == "fp8":
                extra = n * params.fp8_kernel_s
                t_k = t_k + extra
                dynamic = dynamic * params.fp8_energy + extra * params.flop_share * budget
            t = np.maximum(t_k, n * runtime.dispatch_s) + n * runtime.launch_gap_s
        with np.errstate(divide="ignore", invalid="ignore"):
            hot = (t_k > 0) & (idle + busy + dynamic / np.where(t_k > 0, t_k, 1.0) > limit)
        stretched = dynamic / (limit - idle - busy)
        t_kernel = np.where(hot, stretched, t_k)
        t = np.where(hot, t - t_k + stretched, t)
        e = idle * t + busy * t_kernel + dynamic
        e = np.where(hot, np.minimum(e, limit * t), e)
        time = time + t
        energy = energy + e
    time = time + runtime.step_overhead_s + np.zeros(len(a))
    energy = energy + idle * runtime.step_overhead_s + np.zeros(len(a))
    return time, energy
