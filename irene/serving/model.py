"""The serving energy predictor: a roofline step time and a utilisation-dependent power.

For one decode step on each of ``G`` GPUs (the per-GPU costs of :mod:`irene.serving.decode`):

**Time** (seconds)::

    t = t0 + t_layer · layers                                          (fixed overheads)
        + Σ_modules  ov(w / (η_w · BW),  f / (η_f · F))                 (weights ↔ GEMMs)
        + ov(e / (η_e[fmt] · BW),  f_e / (η_ef[fmt] · F))                (routed experts)
        + Σ_modules  ov(c / (η_c · BW),  a / (η_f · F))                 (KV cache ↔ attention)
        + n_ar · α_ar + b_ar / (η_ar · link) + n_ex · α_ex + b_ex / (η_ex · link)

with ``BW``, ``F``, ``link`` the GPU's data-sheet memory bandwidth, dense bf16 tensor throughput
(fp8 GEMMs count half) and NVLink bandwidth, ``ov(a, b) = max(a, b) + ω · min(a, b)`` (ω: how
much of the shorter of memory and compute time is *not* hidden), and the η's fitted efficiencies
in (0, 1] (experts per served format: their kernels differ). Collectives: tensor-parallel
all-reduces (``n_ar``, ``b_ar`` bytes per GPU) and the expert exchanges of MoE layers spread over
GPUs (``n_ex``, ``b_ex``).

**Energy** of the step, all GPUs (joules)::

    E = G · (P_idle · t + P_busy · t_kernels)
        + e_byte · bytes + e_flop · FLOPs + e_link · link bytes

— a GPU draws ``P_idle`` while the server runs, ``P_busy`` more while its kernels run, and dynamic
energy per byte moved and per FLOP; so its power rises with utilisation. Energy per output token
is ``E / B`` (``B`` sequences each gain one token per step), throughput ``B / t``.

Time parameters are fitted to the measured throughputs (least squares in log, robust), energy
parameters to the measured energies (non-negative least squares in relative error) with the
measured step time. **Fitted to measurements: the total** (time, power, energy per token).
**Modelled: the shares** — how the total splits over modules and layers follows from the same
equations applied module by module (each module's kernel time, bytes and FLOPs; idle power
shared in proportion to time; communication and fixed overheads shown apart).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from irene.hardware.gpus import GpuSpec
from irene.serving.decode import DecodeStep
from irene.serving.structure import MODULES

FORMATS = ("bf16", "fp8", "mxfp4")
#: time parameters: name -> (unit, initial value, lower bound, upper bound)
TIME_PARAMS: dict[str, tuple[str, float, float, float]] = {
    "t0": ("s", 2e-3, 1e-7, 1.0),
    "t_layer": ("s", 2e-5, 1e-9, 1e-2),
    "eff_weights": ("", 0.7, 0.02, 1.0),
    "eff_cache": ("", 0.9, 0.02, 1.0),
    "eff_flops": ("", 0.5, 0.02, 1.0),
    "eff_expert_bytes_bf16": ("", 0.5, 0.02, 1.0),
    "eff_expert_bytes_fp8": ("", 0.5, 0.02, 1.0),
    "eff_expert_bytes_mxfp4": ("", 0.5, 0.02, 1.0),
    "eff_expert_flops_bf16": ("", 0.3, 0.02, 1.0),
    "eff_expert_flops_fp8": ("", 0.3, 0.02, 1.0),
    "eff_expert_flops_mxfp4": ("", 0.3, 0.02, 1.0),
    "allreduce_latency": ("s", 1e-5, 1e-9, 1e-2),
    "exchange_latency": ("s", 2e-5, 1e-9, 1e-2),
    "eff_allreduce_link": ("", 0.5, 0.02, 1.0),
    "eff_exchange_link": ("", 0.5, 0.02, 1.0),
    "overlap": ("", 0.5, 0.02, 1.0),
}
#: energy parameters (non-negative): name -> unit
ENERGY_PARAMS: dict[str, str] = {"idle_power_w": "W", "busy_power_w": "W",
                                 "joules_per_byte": "J/byte", "joules_per_flop": "J/FLOP",
                                 "joules_per_link_byte": "J/byte"}
_MODULE_INDEX = {m: i for i, m in enumerate(MODULES)}
_EXPERTS = _MODULE_INDEX["experts"]


# --------------------------------------------------------------------------- step arrays

@dataclass
class StepArrays:
    """The per-GPU costs of many decode steps as arrays (rows × :data:`MODULES`): weight bytes,
    bf16-equivalent GEMM FLOPs, cache bytes, attention FLOPs; and per row the GPU count, batch,
    layers, collectives, and the served format of the experts."""

    weights: np.ndarray
    gemm: np.ndarray
    cache: np.ndarray
    attention: np.ndarray
    gpus: np.ndarray
    batch: np.ndarray
    layers: np.ndarray
    allreduces: np.ndarray
    allreduce_bytes: np.ndarray
    exchanges: np.ndarray
    exchange_bytes: np.ndarray
    formats: np.ndarray  # str

    @classmethod
    def of(cls, steps: Sequence[DecodeStep]) -> StepArrays:
        """Arrays of ``steps`` (fp8 GEMM FLOPs count half: twice the tensor-core rate)."""
        n, m = len(steps), len(MODULES)
        arrays = {k: np.zeros((n, m)) for k in ("weights", "gemm", "cache", "attention")}
        for i, step in enumerate(steps):
            for c in step.costs:
                j = _MODULE_INDEX[c.module]
                arrays["weights"][i, j] += c.weight_bytes
                arrays["gemm"][i, j] += c.gemm_flops - c.low_precision_flops / 2
                arrays["cache"][i, j] += c.cache_bytes
                arrays["attention"][i, j] += c.attention_flops
        fmt = [s.structure.weight_format if s.structure.weight_format in FORMATS else "bf16"
               for s in steps]
        return cls(**arrays,
                   gpus=np.array([s.parallel.gpus for s in steps], float),
                   batch=np.array([s.workload.batch for s in steps], float),
                   layers=np.array([s.structure.num_layers for s in steps], float),
                   allreduces=np.array([s.allreduces for s in steps], float),
                   allreduce_bytes=np.array([s.allreduce_bytes for s in steps], float),
                   exchanges=np.array([s.expert_exchanges for s in steps], float),
                   exchange_bytes=np.array([s.expert_exchange_bytes for s in steps], float),
                   formats=np.array(fmt))

    def take(self, mask: np.ndarray) -> StepArrays:
        """The rows selected by ``mask``."""
        return StepArrays(**{k: getattr(self, k)[mask] for k in self.__dataclass_fields__})

    def __len__(self) -> int:
        return len(self.batch)


@dataclass
class StepTimes:
    """Modelled seconds of each step: ``total``; per module (rows × modules) the kernel time of
    weights/GEMMs and of cache/attention; ``communication``; ``fixed`` overheads."""

    total: np.ndarray
    weights: np.ndarray
    cache: np.ndarray
    communication: np.ndarray
    fixed: np.ndarray

    @property
    def kernels(self) -> np.ndarray:
        """Seconds the GPU runs compute/memory kernels, per row."""
        return self.weights.sum(1) + self.cache.sum(1)


# --------------------------------------------------------------------------- the fit of one GPU

@dataclass
class GpuFit:
    """Fitted time and energy parameters for one GPU model (see the module docstring)."""

    gpu: GpuSpec
    time: dict[str, float]
    energy: dict[str, float]
    #: where the parameters come from: "fitted on N rows", "scaled from H100 data sheet", ...
    origin: str = ""
    scale_time: float = 1.0
    scale_energy: float = 1.0
    trained_on: dict[str, object] = field(default_factory=dict)

    def times(self, a: StepArrays) -> StepTimes:
        """Modelled step times of ``a`` (seconds)."""
        return step_times(self.time, self.gpu, a, self.scale_time)

    def energy_terms(self, a: StepArrays, t: np.ndarray, kernels: np.ndarray) -> np.ndarray:
        """The energy design (rows × 5) for step time ``t`` and kernel time ``kernels``."""
        return energy_design(a, t, kernels)

    def energy_coefficients(self) -> np.ndarray:
        """The energy parameters as a vector, scaled by ``scale_energy``."""
        return self.scale_energy * np.array([self.energy[k] for k in ENERGY_PARAMS])

    def predict(self, a: StepArrays) -> tuple[np.ndarray, np.ndarray]:
        """(joules per output token, seconds per step) of each row."""
        t = self.times(a)
        joules = energy_design(a, t.total, t.kernels) @ self.energy_coefficients()
        return joules / a.batch, t.total


def _efficiency(p: dict[str, float], kind: str, formats: np.ndarray) -> np.ndarray:
    return np.select([formats == f for f in FORMATS],
                     [p[f"eff_expert_{kind}_{f}"] for f in FORMATS], p[f"eff_expert_{kind}_bf16"])


def step_times(p: dict[str, float], gpu: GpuSpec, a: StepArrays, scale: float = 1.0) -> StepTimes:
    """The time model of the module docstring, per row and module (seconds)."""
    bw, flops, link = gpu.memory_bandwidth, gpu.bf16_flops, gpu.link_bandwidth
    omega = p["overlap"]

    def ov(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.maximum(x, y) + omega * np.minimum(x, y)

    bw_eff = np.full(a.weights.shape, p["eff_weights"] * bw)
    f_eff = np.full(a.weights.shape, p["eff_flops"] * flops)
    bw_eff[:, _EXPERTS] = _efficiency(p, "bytes", a.formats) * bw
    f_eff[:, _EXPERTS] = _efficiency(p, "flops", a.formats) * flops
    weights = ov(a.weights / bw_eff, a.gemm / f_eff)
    cache = ov(a.cache / (p["eff_cache"] * bw), a.attention / (p["eff_flops"] * flops))
    communication = (a.allreduces * p["allreduce_latency"]
                     + a.allreduce_bytes / (p["eff_allreduce_link"] * link)
                     + a.exchanges * p["exchange_latency"]
                     + a.exchange_bytes / (p["eff_exchange_link"] * link))
    fixed = p["t0"] + p["t_layer"] * a.layers
    total = fixed + weights.sum(1) + cache.sum(1) + communication
    return StepTimes(total=scale * total, weights=scale * weights, cache=scale * cache,
                     communication=scale * communication, fixed=scale * fixed)


def energy_design(a: StepArrays, t: np.ndarray, kernels: np.ndarray) -> np.ndarray:
    """Columns of the energy model (all GPUs of a step): GPU-seconds, kernel GPU-seconds, bytes
    moved in memory, FLOPs, bytes sent over links."""
    g = a.gpus
    return np.stack([g * t, g * kernels, g * (a.weights.sum(1) + a.cache.sum(1)),
                     g * (a.gemm.sum(1) + a.attention.sum(1)),
                     g * (a.allreduce_bytes + a.exchange_bytes)], axis=1)


def fit_gpu(gpu: GpuSpec, a: StepArrays, seconds_per_step: np.ndarray,
            joules_per_token: np.ndarray, start: dict[str, float] | None = None) -> GpuFit:
    """Fit the time parameters to measured step times (seconds) and then the energy parameters
    to measured energies per token, for one GPU model."""
    from scipy.optimize import least_squares, nnls

    names = list(TIME_PARAMS)
    lo = np.log([TIME_PARAMS[n][2] for n in names])
    hi = np.log([TIME_PARAMS[n][3] for n in names])
    x0 = np.log([(start or {}).get(n, TIME_PARAMS[n][1]) for n in names])
    x0 = np.clip(x0, lo + 1e-9, hi - 1e-9)
    y = np.log(seconds_per_step)

    def residual(x: np.ndarray) -> np.ndarray:
        return np.log(step_times(dict(zip(names, np.exp(x), strict=True)), gpu, a).total) - y

    with np.errstate(all="ignore"):
        solution = least_squares(residual, x0, bounds=(lo, hi), loss="soft_l1", f_scale=0.1)
    time = {n: float(v) for n, v in zip(names, np.exp(solution.x), strict=True)}
    modelled = step_times(time, gpu, a)
    # kernel time as a share of the *measured* step time
    kernels = modelled.kernels * seconds_per_step / modelled.total
    target = joules_per_token * a.batch
    design = energy_design(a, seconds_per_step, kernels) / target[:, None]
    coef, _ = nnls(design, np.ones(len(target)))
    energy = {n: float(v) for n, v in zip(ENERGY_PARAMS, coef, strict=True)}
    return GpuFit(gpu=gpu, time=time, energy=energy, origin=f"fitted on {len(a)} rows")


def calibrate(fit: GpuFit, a: StepArrays, seconds_per_step: np.ndarray,
              joules_per_token: np.ndarray, gpu: GpuSpec | None = None) -> GpuFit:
    """``fit`` moved to ``gpu`` (its data sheet; default: the same GPU) and rescaled so its step
    time and energy match a few measured configurations (geometric means): two numbers, a time
    scale and an energy scale, whatever the number of configurations."""
    target = GpuFit(gpu=gpu or fit.gpu, time=dict(fit.time), energy=dict(fit.energy),
                    origin=f"{fit.origin}; calibrated on {len(a)} configuration(s) of "
                           f"{(gpu or fit.gpu).name}", trained_on=dict(fit.trained_on))
    t = target.times(a)
    target.scale_time = float(np.exp(np.mean(np.log(seconds_per_step / t.total))))
    joules, _ = target.predict(a)
    target.scale_energy = float(np.exp(np.mean(np.log(joules_per_token / joules))))
    return target


def check_parameters(time: dict[str, float], energy: dict[str, float], where: str) -> None:
    """ValueError naming ``where`` unless every parameter is present, finite and in range."""
    for name, (unit, _, low, high) in TIME_PARAMS.items():
        value = time.get(name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) \
                or not math.isfinite(value) or not low * 0.999 <= value <= high * 1.001:
            raise ValueError(f"{where}: time parameter {name!r} must be a number in "
                             f"[{low:g}, {high:g}] {unit}, got {value!r}")
    for name in ENERGY_PARAMS:
        value = energy.get(name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) \
                or not math.isfinite(value) or not 0.0 <= value < 1e4:
            raise ValueError(f"{where}: energy parameter {name!r} must be a number in [0, 1e4), "
                             f"got {value!r}")
    extra = (set(time) - set(TIME_PARAMS)) | (set(energy) - set(ENERGY_PARAMS))
    if extra:
        raise ValueError(f"{where}: unknown parameter(s) {sorted(extra)}")
