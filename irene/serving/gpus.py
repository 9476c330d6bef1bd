"""Data-sheet figures of the GPUs a serving estimate can name.

The predictor's fitted parameters are *efficiencies* relative to these figures (a fraction of the
memory bandwidth, of the dense tensor-core throughput, of the NVLink bandwidth), so a GPU that was
not measured can be estimated by scaling a measured GPU's fit to its data sheet — an
extrapolation the estimate always warns about.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuSpec:
    """One GPU (SXM form factor): HBM bandwidth (bytes/s), dense bf16 tensor throughput (FLOP/s;
    fp8 is twice this on the GPUs listed), per-direction NVLink bandwidth (bytes/s), memory
    (bytes), board power limit (W), and whether it runs fp8 tensor cores."""

    name: str
    memory_bandwidth: float
    bf16_flops: float
    link_bandwidth: float
    memory_bytes: float
    power_limit_w: float
    fp8: bool = True


#: NVIDIA data sheets (SXM parts, dense figures, no sparsity)
GPUS: dict[str, GpuSpec] = {
    "H100": GpuSpec("H100", 3.35e12, 989e12, 450e9, 80e9, 700.0),
    "H200": GpuSpec("H200", 4.8e12, 989e12, 450e9, 141e9, 700.0),
    "B200": GpuSpec("B200", 8.0e12, 2250e12, 900e9, 180e9, 1000.0),
    "A100": GpuSpec("A100", 2.039e12, 312e12, 300e9, 80e9, 400.0, fp8=False),
}


#: the form-factor suffixes that name the parts of :data:`GPUS` (``H100``, ``H100-SXM``,
#: ``h100 sxm5``); any other variant (PCIe, NVL, ...) differs in power and bandwidth
SXM_SUFFIXES = ("", "SXM", "SXM4", "SXM5", "SXM6")


def gpu_spec(name: str) -> GpuSpec:
    """The spec of ``name`` (case-insensitive; ``H100-SXM`` and ``h100`` both work). KeyError
    for an unknown GPU, and for a variant other than the SXM part listed (``H100-PCIe``,
    ``H100 NVL``): never answered silently with another part's data sheet."""
    text = " ".join(name.strip().upper().replace("_", " ").replace("-", " ").split())
    key, _, variant = text.partition(" ")
    if key not in GPUS:
        raise KeyError(f"unknown GPU {name!r} (known: {', '.join(GPUS)})")
    if variant.replace(" ", "") not in SXM_SUFFIXES:
        raise KeyError(f"GPU {name!r}: only the SXM part of the {key} is known (its data sheet "
                       f"and measurements); the {variant.lower()} variant differs in power and "
                       f"bandwidth and is not estimated: give --gpu {key} for the SXM part")
    return GPUS[key]
