"""The hardware model: time, energy and power of every node on a named GPU and runtime.

**A primitive** (one kernel, or ``kernels`` of them, of a primitive class ``c`` of
:data:`~irene.hardware.runtime.CLASSES`) with ``F`` FLOPs in dtype ``d`` and ``Q`` bytes moved::

    t_F = F / (η_F[c] · ρ[c] · Peak[d])            (compute; fp8 matmuls × η_fp8)
    t_Q = Q / (η_Q[c] · BW)                        (memory; fp8 / mxfp4 weights × their η)
    t_k = max(t_F, t_Q) + ω · min(t_F, t_Q)        (ω: share of the shorter not hidden)
          (+ n · τ_fp8 for the n kernels of a GEMM on fp8 weights)
    t   = max(t_k, n · dispatch) + n · gap         (runtime: host dispatch floor, kernel gaps)

``Peak``, ``BW`` are the data sheet's (:mod:`irene.hardware.gpus`), η's the fitted achievable
fractions (≤ 1), ρ the runtime's compute efficiency multiplier (:mod:`irene.hardware.runtime`), so
``t ≥ max(F / Peak, Q / BW)`` — the roofline bound — always (:func:`roofline_time`).
Communication (class ``comm``) moves ``Q`` bytes over the link: ``t = n · λ + Q / (η_L · link)``.

**Energy** (joules) and **power** (watts)::

    E_dyn = P_busy · t_k + φ · (e_Q · Q + e_F[d] · F) (+ e_L · link bytes)
    E     = P_idle · t + E_dyn,          P = E / t

with ``P_idle`` the GPU's idle draw, ``P_busy`` the extra static draw while kernels run,
``e_Q = κ_Q · (TDP − P_idle) / BW`` and ``e_F[d] = κ_F · (TDP − P_idle) / Peak[d]``: the energy
per byte and per FLOP are *shares of the data sheet's power budget* (κ's fitted, shared by all
GPUs), which is what lets a GPU that was never measured be predicted from its data sheet;
``φ`` is 1, or the fitted ``fp8_energy`` for kernels on fp8 weights.

**fp8 GEMMs** are not the data sheet's halving (half the weight bytes, twice the FLOP/s): before
each GEMM on fp8 weights the runtime quantises the activations (per token or per 128-wide
group: a kernel of its own) and the GEMM applies the weight and activation scales (for
block-scaled checkpoints, 128 × 128 blocks, inside its K loop on the CUDA cores). That work is
nearly independent of the batch: ``τ_fp8`` seconds of GPU time per kernel of a primitive on
fp8 weights (``fp8_kernel_s``, prior 10 µs; the workload's kernel count of the module, its
small kernels included), run with the SMs busy, i.e. at the compute share of the power
budget (its dynamic energy ``n · τ_fp8 · κ_F · (TDP − P_idle)``). At small batches, where the
saved weight bytes are few, it makes fp8 slower and costlier than bf16; at large batches the
halved bytes win (the matched bf16/fp8 pairs of ML.ENERGY v3: 1.2–1.6× at batch 8, 0.9× at
batch ≥ 64).

**Never above the board limit**: when ``P`` would exceed the TDP the clocks throttle — time
stretches to ``t' = (e_Q Q + e_F F) / (TDP − P_idle − P_busy)`` and ``P = TDP``.

**A module**: ``E = Σ children + P_idle · overhead``, ``t = Σ children + overhead``
(:func:`module_cost`; the overhead is host time with the GPU idle, e.g. a step's scheduling).

Every parameter (:class:`HardwareParams`) has a prior tied to the data sheet (:data:`PRIORS`):
fits are regularised toward it, so none is left free when the data identifying it is held out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from irene.hardware.gpus import DTYPE_NAMES, GpuSpec
from irene.hardware.runtime import CLASSES, RuntimeProfile

#: classes that compute (have a FLOP efficiency); ``comm`` moves bytes over the link only
COMPUTE_CLASSES = ("matmul", "moe", "attention", "elementwise", "norm", "embedding")
#: weight formats whose GEMMs dequantise to bf16 on the fly (rate: bf16 × ``eff_mxfp4``)
DEQUANT_FORMATS = ("mxfp4",)


@dataclass(frozen=True)
class Prior:
    """A parameter's prior: ``value`` (its unit), multiplicative spread ``sigma`` (1 σ in natural
    log), bounds ``[low, high]`` and what it is."""

    value: float
    sigma: float
    low: float
    high: float
    unit: str
    doc: str


#: priors of the scalar parameters (per-class efficiencies: :data:`EFF_COMPUTE_PRIOR` etc.)
PRIORS: dict[str, Prior] = {
    "overlap": Prior(0.3, 0.7, 0.01, 1.0, "", "share of the shorter of compute and memory time "
                     "that is not hidden"),
    "eff_fp8": Prior(0.6, 0.4, 0.1, 1.0, "", "achieved share of the fp8 tensor rate relative "
                     "to the bf16 matmul efficiency (fp8 seldom doubles a GEMM)"),
    "eff_mxfp4": Prior(0.5, 0.5, 0.05, 1.0, "", "achieved share of the bf16 GEMM rate of a "
                       "GEMM on mxfp4 weights dequantised on the fly"),
    "eff_fp8_memory": Prior(0.8, 0.5, 0.1, 1.0, "", "achieved share of the bandwidth of a kernel "
                            "reading fp8 weights relative to bf16 ones (block scales, "
                            "dequantising kernels)"),
    "eff_mxfp4_memory": Prior(0.8, 0.5, 0.1, 1.0, "", "the same for mxfp4 weights"),
    "eff_fp8_moe": Prior(0.7, 0.5, 0.05, 1.0, "", "achieved share of both rates of grouped "
                         "expert GEMMs on fp8 weights (block-quantised MoE kernels) relative "
                         "to the other fp8 kernels"),
    "fp8_energy": Prior(1.0, 0.5, 0.3, 3.0, "", "dynamic energy of an fp8 kernel relative to "
                        "its bytes and FLOPs at the data-sheet shares (scales, dequantisation, "
                        "re-quantised activations)"),
    "fp8_kernel_s": Prior(10e-6, 1.0, 1e-8, 1e-3, "s", "GPU time per kernel on fp8 "
                          "weights outside its roofline (activation quantisation, scales), "
                          "SMs busy"),
    "eff_link": Prior(0.6, 0.4, 0.05, 1.0, "", "achieved share of the link bandwidth"),
    "link_latency_s": Prior(10e-6, 0.8, 1e-7, 1e-3, "s", "latency of one collective"),
    "idle_scale": Prior(1.0, 0.35, 0.3, 3.0, "", "idle draw / the data sheet's idle prior"),
    "busy_share": Prior(0.15, 0.6, 0.005, 0.6, "", "static draw while kernels run, as a share "
                        "of (TDP − idle)"),
    "byte_share": Prior(0.45, 0.5, 0.02, 2.0, "", "energy per byte × bandwidth / (TDP − idle)"),
    "flop_share": Prior(0.45, 0.5, 0.02, 2.0, "", "energy per FLOP × peak / (TDP − idle)"),
    "link_joules_per_byte": Prior(1e-11, 1.0, 1e-13, 1e-9, "J/byte", "energy per link byte"),
}
#: priors of the achievable share of the dtype's peak FLOP/s, per class
EFF_COMPUTE_PRIOR: dict[str, float] = {"matmul": 0.7, "moe": 0.4, "attention": 0.5,
                                       "elementwise": 0.1,
                                       "norm": 0.1, "embedding": 0.05}
#: priors of the achievable share of the memory bandwidth, per class
EFF_MEMORY_PRIOR: dict[str, float] = {"matmul": 0.8, "moe": 0.6, "attention": 0.75,
                                      "elementwise": 0.7,
                                      "norm": 0.6, "embedding": 0.5}
EFF_SIGMA = 0.4
EFF_BOUNDS = (0.01, 1.0)


@dataclass(frozen=True)
class HardwareParams:
    """The fitted constants of the hardware model (module docstring); defaults are the priors.

    Units: efficiencies and shares dimensionless; ``link_latency_s`` and ``fp8_kernel_s`` s;
    ``link_joules_per_byte`` J/byte.
    """

    eff_compute: Mapping[str, float] = field(default_factory=lambda: dict(EFF_COMPUTE_PRIOR))
    eff_memory: Mapping[str, float] = field(default_factory=lambda: dict(EFF_MEMORY_PRIOR))
    overlap: float = PRIORS["overlap"].value
    eff_fp8: float = PRIORS["eff_fp8"].value
    eff_mxfp4: float = PRIORS["eff_mxfp4"].value
    eff_fp8_memory: float = PRIORS["eff_fp8_memory"].value
    eff_mxfp4_memory: float = PRIORS["eff_mxfp4_memory"].value
    eff_fp8_moe: float = PRIORS["eff_fp8_moe"].value
    fp8_energy: float = PRIORS["fp8_energy"].value
    fp8_kernel_s: float = PRIORS["fp8_kernel_s"].value
    eff_link: float = PRIORS["eff_link"].value
    link_latency_s: float = PRIORS["link_latency_s"].value
    idle_scale: float = PRIORS["idle_scale"].value
    busy_share: float = PRIORS["busy_share"].value
    byte_share: float = PRIORS["byte_share"].value
    flop_share: float = PRIORS["flop_share"].value
    link_joules_per_byte: float = PRIORS["link_joules_per_byte"].value

    def __post_init__(self) -> None:
        check_params(self.to_dict(), "hardware parameters")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the per-class efficiencies as mappings)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = dict(value) if isinstance(value, Mapping) else float(value)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "hardware parameters") \
            -> HardwareParams:
        """Parameters from :meth:`to_dict`'s form (ValueError naming ``where`` and the field)."""
        check_params(data, where)
        return cls(**{k: (dict(v) if isinstance(v, Mapping) else float(v))
                      for k, v in data.items()})

    def with_values(self, **values: Any) -> HardwareParams:
        """A copy with some values replaced."""
        return replace(self, **values)


def check_params(data: Mapping[str, Any], where: str) -> None:
    """ValueError naming ``where`` and the field unless every parameter is known, present and in
    its bounds."""
    known = {f.name for f in fields(HardwareParams)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown parameter {unknown[0]!r}")
    for name in ("eff_compute", "eff_memory"):
        table = data.get(name, {})
        classes = COMPUTE_CLASSES
        if not isinstance(table, Mapping) or set(table) != set(classes):
            raise ValueError(f"{where}: {name} must give a value for each of "
                             f"{', '.join(classes)}")
        for c, value in table.items():
            _check_number(value, *EFF_BOUNDS, f"{where}: {name}.{c}")
    for name, prior in PRIORS.items():
        if name in data:
            _check_number(data[name], prior.low, prior.high, f"{where}: {name}")


def _check_number(value: Any, low: float, high: float, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or not low * (1 - 1e-9) <= value <= high * (1 + 1e-9):
        raise ValueError(f"{where} must be a number in [{low:g}, {high:g}], got {value!r}")


# --------------------------------------------------------------------------- node costs

@dataclass(frozen=True)
class NodeCost:
    """Time (s), energy (J) and average power (W) of a node; ``kernel_s`` the seconds its
    kernels run, ``roofline_s`` the data-sheet lower bound, ``throttled`` whether the board
    limit stretched it."""

    time_s: float
    energy_j: float
    kernel_s: float
    roofline_s: float
    throttled: bool = False

    @property
    def power_w(self) -> float:
        """Average power over the node (W)."""
        return self.energy_j / self.time_s if self.time_s > 0 else 0.0


def compute_dtype(dtype: str) -> str:
    """The dtype whose tensor-core rate a GEMM in ``dtype`` runs at (mxfp4 weights: bf16)."""
    return "bf16" if dtype in DEQUANT_FORMATS else dtype


def roofline_time(flops: float, nbytes: float, dtype: str, gpu: GpuSpec) -> float:
    """The data-sheet lower bound of a primitive's time: ``max(F / Peak[dtype], Q / BW)`` (s)."""
    return max(flops / gpu.peak_flops(compute_dtype(dtype)), nbytes / gpu.memory_bandwidth)


def _check_inputs(flops: float, nbytes: float, kind: str, kernels: float) -> None:
    if kind not in CLASSES:
        raise ValueError(f"unknown primitive class {kind!r} (known: {', '.join(CLASSES)})")
    for name, value in (("flops", flops), ("bytes", nbytes), ("kernels", kernels)):
        if not (isinstance(value, (int, float, np.floating)) and math.isfinite(value)
                and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def compute_rate(gpu: GpuSpec, params: HardwareParams, runtime: RuntimeProfile, kind: str,
                 dtype: str) -> float:
    """Achievable FLOP/s of class ``kind`` in ``dtype`` on ``gpu`` under ``runtime``."""
    eff = params.eff_compute[kind] * runtime.efficiency[kind]
    if dtype in DEQUANT_FORMATS:
        return min(eff * params.eff_mxfp4, 1.0) * gpu.peak_flops("bf16")
    if is_fp8(dtype):
        eff *= params.eff_fp8_moe if kind == "moe" else 1.0
        eff *= params.eff_fp8 if gpu.supports("fp8") else 1.0
    return min(eff, 1.0) * gpu.peak_flops(dtype)


def memory_rate(gpu: GpuSpec, params: HardwareParams, runtime: RuntimeProfile,
                kind: str, dtype: str = "bf16") -> float:
    """Achievable bytes/s of class ``kind`` on ``gpu`` (kernels reading fp8 or mxfp4 weights at
    their own share; the bandwidth is the GPU's whatever the ``runtime``)."""
    return min(params.eff_memory[kind]
               * format_memory(params, dtype, kind), 1.0) * gpu.memory_bandwidth


def format_memory(params: HardwareParams, dtype: str, kind: str = "matmul") -> float:
    """The bandwidth share of a low-bit weight format relative to bf16 (1 for others; fp8
    grouped expert GEMMs also × ``eff_fp8_moe``)."""
    if dtype in DEQUANT_FORMATS:
        return params.eff_mxfp4_memory
    if is_fp8(dtype):
        return params.eff_fp8_memory * (params.eff_fp8_moe if kind == "moe" else 1.0)
    return 1.0


def idle_power(gpu: GpuSpec, params: HardwareParams) -> float:
    """Idle draw (W), capped below the board limit."""
    return min(params.idle_scale * gpu.idle_power_w, 0.9 * gpu.power_limit_w)


def power_terms(gpu: GpuSpec, params: HardwareParams, dtype: str = "bf16") \
        -> tuple[float, float, float, float]:
    """(idle W, busy W, J per memory byte, J per FLOP in ``dtype``) on ``gpu``."""
    idle = idle_power(gpu, params)
    budget = gpu.power_limit_w - idle
    return (idle, params.busy_share * budget, params.byte_share * budget / gpu.memory_bandwidth,
            params.flop_share * budget / gpu.peak_flops(compute_dtype(dtype)))


def is_fp8(dtype: str) -> bool:
    """Whether ``dtype`` names fp8 weights (an alias of :data:`.gpus.DTYPE_NAMES`)."""
    return DTYPE_NAMES.get(dtype.lower()) == "fp8"


def kernel_time(flops: float, nbytes: float, dtype: str, kind: str, gpu: GpuSpec,
                params: HardwareParams, runtime: RuntimeProfile, kernels: float = 1.0) -> float:
    """Seconds the ``kernels`` kernels of a primitive run (before runtime overheads and
    throttling; fp8 GEMMs: plus ``kernels · fp8_kernel_s``)."""
    if kind == "comm":
        return nbytes / (params.eff_link * gpu.link_bandwidth)
    t_f = flops / compute_rate(gpu, params, runtime, kind, dtype) if flops else 0.0
    t_q = nbytes / memory_rate(gpu, params, runtime, kind, dtype) if nbytes else 0.0
    return max(t_f, t_q) + params.overlap * min(t_f, t_q) + fp8_overhead_s(params, dtype,
                                                                           kernels)


def fp8_overhead_s(params: HardwareParams, dtype: str, kernels: float) -> float:
    """GPU seconds that ``kernels`` GEMM kernels on fp8 weights spend outside their roofline
    (activation quantisation, scales; 0 for other dtypes)."""
    return kernels * params.fp8_kernel_s if is_fp8(dtype) else 0.0


def primitive_cost(flops: float, nbytes: float, dtype: str, kind: str, gpu: GpuSpec,
                   params: HardwareParams, runtime: RuntimeProfile,
                   kernels: float = 1.0) -> NodeCost:
    """Time (s), energy (J) and power (W) of a primitive: ``flops`` FLOPs in ``dtype``,
    ``nbytes`` bytes moved (memory; over the link for class ``comm``), ``kernels`` kernel
    launches (see the module docstring). Power never exceeds ``gpu.power_limit_w``."""
    _check_inputs(flops, nbytes, kind, kernels)
    idle, busy, per_byte, per_flop = power_terms(gpu, params, dtype)
    t_k = kernel_time(flops, nbytes, dtype, kind, gpu, params, runtime, kernels)
    if kind == "comm":
        dynamic = params.link_joules_per_byte * nbytes
        t = t_k + kernels * params.link_latency_s
        bound = nbytes / gpu.link_bandwidth
    else:
        dynamic = per_byte * nbytes + per_flop * flops
        if is_fp8(dtype):
            dynamic *= params.fp8_energy
            # the fp8 overhead runs with the SMs busy: the compute share of the budget
            dynamic += fp8_overhead_s(params, dtype, kernels) * params.flop_share \
                * (gpu.power_limit_w - idle)
        t = max(t_k, kernels * runtime.dispatch_s) + kernels * runtime.launch_gap_s
        bound = roofline_time(flops, nbytes, dtype, gpu)
    return _capped(t, t_k, dynamic, idle, busy, gpu.power_limit_w, bound)


def _capped(t: float, t_k: float, dynamic: float, idle: float, busy: float, limit: float,
            bound: float) -> NodeCost:
    """The node's cost with the board limit applied: while its kernels run the GPU draws
    ``idle + busy + dynamic / t_k``; when that exceeds ``limit`` the clocks throttle and the
    kernels stretch to ``dynamic / (limit − idle − busy)`` (host-side time draws ``idle``)."""
    if t <= 0:
        return NodeCost(0.0, 0.0, 0.0, bound)
    if t_k <= 0 or idle + busy + dynamic / t_k <= limit:
        return NodeCost(t, idle * t + busy * t_k + dynamic, t_k, bound)
    stretched = dynamic / (limit - idle - busy)
    t_new = t - t_k + stretched
    energy = idle * t_new + busy * stretched + dynamic
    return NodeCost(t_new, min(energy, limit * t_new), stretched, bound, throttled=True)


def module_cost(children: Iterable[NodeCost], gpu: GpuSpec, params: HardwareParams,
                overhead_s: float = 0.0) -> NodeCost:
    """A module from its children run one after another, plus ``overhead_s`` seconds of host
    time with the GPU idle (energy ``P_idle · overhead_s``)."""
    if not (math.isfinite(overhead_s) and overhead_s >= 0):
        raise ValueError(f"overhead_s must be a number >= 0, got {overhead_s!r}")
    kids = list(children)
    idle = idle_power(gpu, params)
    return NodeCost(time_s=sum(c.time_s for c in kids) + overhead_s,
                    energy_j=sum(c.energy_j for c in kids) + idle * overhead_s,
                    kernel_s=sum(c.kernel_s for c in kids),
                    roofline_s=sum(c.roofline_s for c in kids),
                    throttled=any(c.throttled for c in kids))


@dataclass(frozen=True)
class HardwareModel:
    """The hardware model bound to one GPU, runtime and parameter set (convenience methods with
    plain numbers: FLOPs, bytes, dtype, class -> seconds, joules, watts)."""

    gpu: GpuSpec
    runtime: RuntimeProfile
    params: HardwareParams = field(default_factory=HardwareParams)

    def primitive(self, flops: float, nbytes: float, dtype: str = "bf16",
                  kind: str = "matmul", kernels: float = 1.0) -> NodeCost:
        """:func:`primitive_cost` on this GPU and runtime."""
        return primitive_cost(flops, nbytes, dtype, kind, self.gpu, self.params, self.runtime,
                              kernels)

    def time(self, flops: float, nbytes: float, dtype: str = "bf16", kind: str = "matmul",
             kernels: float = 1.0) -> float:
        """Seconds of a primitive."""
        return self.primitive(flops, nbytes, dtype, kind, kernels).time_s

    def energy(self, flops: float, nbytes: float, dtype: str = "bf16", kind: str = "matmul",
               kernels: float = 1.0) -> float:
        """Joules of a primitive."""
        return self.primitive(flops, nbytes, dtype, kind, kernels).energy_j

    def power(self, flops: float, nbytes: float, dtype: str = "bf16", kind: str = "matmul",
              kernels: float = 1.0) -> float:
        """Average watts of a primitive (never above the board limit)."""
        return self.primitive(flops, nbytes, dtype, kind, kernels).power_w

    def module(self, children: Iterable[NodeCost], overhead_s: float = 0.0) -> NodeCost:
        """:func:`module_cost` on this GPU."""
        return module_cost(children, self.gpu, self.params, overhead_s)

    def step(self, children: Iterable[NodeCost]) -> NodeCost:
        """A whole forward step: its nodes plus the runtime's per-step host overhead."""
        return module_cost(children, self.gpu, self.params, self.runtime.step_overhead_s)
