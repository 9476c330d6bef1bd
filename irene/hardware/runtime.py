"""Runtime profiles: how a software stack drives the same GPU.

A runtime changes *overheads* and *achievable efficiencies*, never physics: the data-sheet peaks,
the board limit and the energy per byte and per FLOP are the GPU's (:mod:`irene.hardware.model`).
A profile holds

* ``dispatch_s`` — host time to issue one kernel (s). The GPU idles when its kernels are shorter
  than this (eager PyTorch: the Python dispatcher), so a run of ``n`` kernels takes at least
  ``n · dispatch_s``; CUDA graphs replay kernels without host work (≈ 0);
* ``launch_gap_s`` — GPU-side gap between consecutive kernels (s), never hidden;
* ``step_overhead_s`` — host work per forward step outside the kernels (s): scheduling,
  sampling, detokenisation, Python between steps (vLLM 0.5's synchronous scheduler vs. the
  overlapped scheduler of later versions);
* ``efficiency`` — a multiplier (prior 1) on the achievable fraction of the *compute* peak per
  primitive class (fused kernels of a serving engine vs. eager ops), fitted per runtime with a
  prior at 1. The bandwidth a kernel reaches is the GPU's (shared by the runtimes): a multiplier
  on it saturated at the data sheet in the fits and left them stuck.

The numbers here are *priors* (documented guesses from published profiles: PyTorch eager
dispatch ≈ 10–30 µs per op, CUDA-graph kernel gaps ≈ 1–3 µs, vLLM 0.5 CPU scheduling overhead of
a few ms per step); the fitted values live in the shipped parameter file
(:mod:`irene.hardware.params`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

#: primitive classes of the hardware model (``moe``: the grouped GEMMs of routed experts)
CLASSES = ("matmul", "moe", "attention", "elementwise", "norm", "embedding", "comm")


@dataclass(frozen=True)
class RuntimeProfile:
    """One runtime (see the module docstring; units: seconds)."""

    name: str
    description: str
    dispatch_s: float
    launch_gap_s: float
    step_overhead_s: float
    efficiency: Mapping[str, float] = field(default_factory=dict)
    #: kernels one transformer layer launches (a prior for workloads that count no kernels)
    kernels_per_layer: float = 12.0

    def __post_init__(self) -> None:
        eff = {c: float(self.efficiency.get(c, 1.0)) for c in CLASSES}
        unknown = set(self.efficiency) - set(CLASSES)
        if unknown:
            raise ValueError(f"runtime {self.name}: unknown primitive class(es) {sorted(unknown)}")
        object.__setattr__(self, "efficiency", MappingProxyType(eff))
        for key in ("dispatch_s", "launch_gap_s", "step_overhead_s", "kernels_per_layer"):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"runtime {self.name}: {key} must be a number >= 0")
        for c, value in eff.items():
            if not (math.isfinite(value) and 0 < value <= 5):
                raise ValueError(f"runtime {self.name}: efficiency.{c} must be in (0, 5]")


RUNTIMES: dict[str, RuntimeProfile] = {p.name: p for p in (
    RuntimeProfile("eager", "PyTorch eager (one host dispatch per op; HF transformers "
                   "generate, as in ML.ENERGY v1)", dispatch_s=20e-6, launch_gap_s=2e-6,
                   step_overhead_s=1e-3, kernels_per_layer=18.0),
    RuntimeProfile("compile", "torch.compile with CUDA graphs (fused elementwise ops, kernels "
                   "replayed without host work)", dispatch_s=0.0, launch_gap_s=1.5e-6,
                   step_overhead_s=0.5e-3, kernels_per_layer=8.0),
    RuntimeProfile("vllm-0.5.4", "vLLM 0.5.4 (CUDA graphs for decode, synchronous scheduler, "
                   "no chunked prefill; ML.ENERGY v2)", dispatch_s=0.0, launch_gap_s=2e-6,
                   step_overhead_s=4e-3, kernels_per_layer=10.0),
    RuntimeProfile("vllm", "vLLM as measured by ML.ENERGY v3 (CUDA graphs, chunked prefill, "
                   "overlapped scheduling)", dispatch_s=0.0, launch_gap_s=2e-6,
                   step_overhead_s=2e-3, kernels_per_layer=10.0),
)}
#: names accepted for the runtimes
RUNTIME_ALIASES = {"eager": "eager", "pytorch": "eager", "hf": "eager", "compile": "compile",
                   "compiled": "compile", "cuda-graphs": "compile", "cudagraphs": "compile",
                   "vllm": "vllm", "vllm-v3": "vllm", "vllm-0.5.4": "vllm-0.5.4",
                   "vllm-0.5": "vllm-0.5.4", "vllm-v2": "vllm-0.5.4"}


def runtime_profile(name: str) -> RuntimeProfile:
    """The profile called ``name`` (case-insensitive, :data:`RUNTIME_ALIASES`); KeyError naming
    the known ones otherwise."""
    key = RUNTIME_ALIASES.get(name.strip().lower())
    if key is None:
        raise KeyError(f"unknown runtime {name!r} (known: {', '.join(RUNTIMES)})")
    return RUNTIMES[key]
