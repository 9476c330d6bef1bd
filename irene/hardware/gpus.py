"""GPUs as data: data-sheet figures of the GPUs irene can estimate, and a user's own entry.

Every figure is the vendor's data-sheet value for the named part (dense, i.e. without 2:4
sparsity; tensor-core rates with FP32 accumulate where the sheet distinguishes; GeForce parts
at their published boost rates). ``idle_power_w`` is *not* a data-sheet figure: it is a
documented guess of the draw of an idle, clocked-up GPU in a server (roughly 10 % of the board
limit for data-centre parts, from published ``nvidia-smi`` idle readings) and is used only as
the prior of the hardware model's idle power (:mod:`irene.hardware.model`).

Units: FLOP/s, bytes/s, bytes, watts. ``link_bandwidth`` is the per-direction bandwidth of the
GPU-to-GPU link (NVLink where the part has it, PCIe otherwise).

Names resolve case-insensitively through explicit aliases only (:func:`gpu_spec`): ``H100`` is
the SXM part, ``h100-pcie`` the PCIe part, ``A100`` the 80 GB SXM part, ``A100-40GB`` the 40 GB
one; a name that is not listed raises KeyError naming the known ones (never a silent nearest
match). A GPU that is not listed can be described in a JSON or YAML file
(:func:`load_gpu_spec`, ``--gpu-spec FILE``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from irene.checks import Checker, InputError, describe, read_document

#: compute dtypes of the FLOP tables
DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8")
#: the dtype whose rate a missing dtype runs at (fp8 weights on a GPU without fp8 tensor cores
#: are up-cast and multiplied in bf16, as vLLM's weight-only fp8 kernels do; bf16 on a GPU
#: without bf16 tensor cores runs at the fp32 rate)
FALLBACK = {"fp8": "bf16", "int8": "fp16", "bf16": "fp32", "fp16": "fp32", "tf32": "fp32"}
#: names accepted for the dtypes
DTYPE_NAMES = {"fp32": "fp32", "float32": "fp32", "float": "fp32", "tf32": "tf32",
               "bf16": "bf16", "bfloat16": "bf16", "fp16": "fp16", "float16": "fp16",
               "half": "fp16", "fp8": "fp8", "float8": "fp8", "float8_e4m3fn": "fp8",
               "int8": "int8"}
FORM_FACTORS = ("SXM", "PCIe", "board")
_T = 1e12
_G = 1e9


@dataclass(frozen=True)
class GpuSpec:
    """One GPU part (see the module docstring for units and sources).

    ``flops``: dense peak FLOP/s per dtype of :data:`DTYPES` (absent = not supported in
    hardware); ``memory_bandwidth`` bytes/s; ``memory_bytes``; ``power_limit_w`` the board power
    limit (TDP); ``idle_power_w`` a prior (documented guess); ``link_bandwidth`` bytes/s per
    direction; ``form_factor`` one of :data:`FORM_FACTORS`.
    """

    name: str
    architecture: str
    form_factor: str
    flops: Mapping[str, float]
    memory_bandwidth: float
    memory_bytes: float
    power_limit_w: float
    idle_power_w: float
    link_bandwidth: float
    link: str = "NVLink"
    source: str = "NVIDIA data sheet"
    aliases: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "flops", MappingProxyType(dict(self.flops)))
        _check_spec(self, self.name)

    def peak_flops(self, dtype: str) -> float:
        """Dense peak FLOP/s for ``dtype`` (any name of :data:`DTYPE_NAMES`); a dtype the GPU
        lacks runs at its :data:`FALLBACK` rate."""
        key = DTYPE_NAMES.get(dtype.lower())
        if key is None:
            raise KeyError(f"unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
        while key not in self.flops:
            if key not in FALLBACK:
                raise KeyError(f"{self.name}: no FLOP rate for {dtype!r}")
            key = FALLBACK[key]
        return float(self.flops[key])

    def supports(self, dtype: str) -> bool:
        """Whether ``dtype`` has tensor cores (its own rate) on this GPU."""
        return DTYPE_NAMES.get(dtype.lower(), "") in self.flops

    # the names the serving code used (one dense bf16 rate, fp8 support)
    @property
    def fp8(self) -> bool:
        """Whether the GPU has fp8 tensor cores."""
        return "fp8" in self.flops

    def to_dict(self) -> dict[str, Any]:
        """The entry in the units of a user file (:func:`load_gpu_spec`)."""
        return {"name": self.name, "architecture": self.architecture,
                "form_factor": self.form_factor,
                "tflops": {k: v / _T for k, v in self.flops.items()},
                "memory_bandwidth_gb_s": self.memory_bandwidth / _G,
                "memory_gb": self.memory_bytes / _G, "power_limit_w": self.power_limit_w,
                "idle_power_w": self.idle_power_w,
                "link_bandwidth_gb_s": self.link_bandwidth / _G, "link": self.link,
                "source": self.source}


def _check_spec(spec: GpuSpec, where: str) -> None:
    """ValueError unless every figure of ``spec`` is present and physical."""
    if spec.form_factor not in FORM_FACTORS:
        raise ValueError(f"{where}: form_factor must be one of {', '.join(FORM_FACTORS)}, "
                         f"got {spec.form_factor!r}")
    if not ({"bf16", "fp16"} & set(spec.flops)):
        raise ValueError(f"{where}: tflops needs a bf16 or fp16 rate")
    for dtype, rate in spec.flops.items():
        if dtype not in DTYPES or not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"{where}: tflops.{dtype}: expected a known dtype with a positive "
                             "rate")
    for key in ("memory_bandwidth", "memory_bytes", "power_limit_w", "idle_power_w",
                "link_bandwidth"):
        value = getattr(spec, key)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{where}: {key} must be a positive number, got {value!r}")
    if spec.idle_power_w >= spec.power_limit_w:
        raise ValueError(f"{where}: idle_power_w ({spec.idle_power_w:g} W) must be below the "
                         f"board limit power_limit_w ({spec.power_limit_w:g} W)")


def _spec(name: str, architecture: str, form: str, tflops: dict[str, float], bw_gb_s: float,
          mem_gb: float, tdp: float, idle: float, link_gb_s: float, link: str,
          aliases: tuple[str, ...], source: str = "NVIDIA data sheet") -> GpuSpec:
    return GpuSpec(name=name, architecture=architecture, form_factor=form,
                   flops={k: v * _T for k, v in tflops.items()},
                   memory_bandwidth=bw_gb_s * _G, memory_bytes=mem_gb * _G, power_limit_w=tdp,
                   idle_power_w=idle, link_bandwidth=link_gb_s * _G, link=link, source=source,
                   aliases=aliases)


_HOPPER = {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "fp8": 1978.9,
           "int8": 1978.9}
_AMPERE = {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0, "int8": 624.0}

#: the built-in table (key = canonical name). Link: NVLink per direction (H100/H200 SXM 900 GB/s
#: bidirectional, B200 1.8 TB/s, A100 600 GB/s, V100 300 GB/s, A40/3090 bridge 112.5 GB/s);
#: PCIe Gen4 x16 32 GB/s and Gen5 x16 64 GB/s per direction for parts without NVLink.
GPUS: dict[str, GpuSpec] = {s.name: s for s in (
    _spec("H100", "Hopper", "SXM", _HOPPER, 3350, 80, 700, 70, 450, "NVLink 4",
          ("h100-sxm", "h100-sxm5", "h100-sxm5-80gb", "h100-80gb-hbm3", "h100-sxm-80gb")),
    _spec("H100-PCIe", "Hopper", "PCIe",
          {"fp32": 51.2, "tf32": 378.0, "bf16": 756.5, "fp16": 756.5, "fp8": 1513.0,
           "int8": 1513.0}, 2000, 80, 350, 45, 64, "PCIe Gen5",
          ("h100-pcie", "h100-pcie-80gb", "h100pcie")),
    _spec("H200", "Hopper", "SXM", _HOPPER, 4800, 141, 700, 75, 450, "NVLink 4",
          ("h200-sxm", "h200-141gb", "h200-sxm-141gb")),
    _spec("B200", "Blackwell", "SXM",
          {"fp32": 75.0, "tf32": 1100.0, "bf16": 2250.0, "fp16": 2250.0, "fp8": 4500.0,
           "int8": 4500.0}, 8000, 180, 1000, 140, 900, "NVLink 5",
          ("b200-sxm", "b200-180gb", "hgx-b200")),
    _spec("A100", "Ampere", "SXM", _AMPERE, 2039, 80, 400, 55, 300, "NVLink 3",
          ("a100-80gb", "a100-sxm4-80gb", "a100-sxm-80gb", "a100-sxm")),
    _spec("A100-40GB", "Ampere", "SXM", _AMPERE, 1555, 40, 400, 50, 300, "NVLink 3",
          ("a100-sxm4-40gb", "a100-sxm-40gb", "a100-40g")),
    _spec("A40", "Ampere", "PCIe",
          {"fp32": 37.4, "tf32": 74.8, "bf16": 149.7, "fp16": 149.7, "int8": 299.3},
          696, 48, 300, 30, 56.25, "NVLink bridge", ("a40-48gb",)),
    _spec("L40S", "Ada", "PCIe",
          {"fp32": 91.6, "tf32": 183.0, "bf16": 362.05, "fp16": 362.05, "fp8": 733.0,
           "int8": 733.0}, 864, 48, 350, 35, 32, "PCIe Gen4", ("l40s-48gb",)),
    _spec("L4", "Ada", "PCIe",
          {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0, "fp8": 242.5,
           "int8": 242.5}, 300, 24, 72, 16, 32, "PCIe Gen4", ("l4-24gb",)),
    _spec("V100", "Volta", "SXM", {"fp32": 15.7, "fp16": 125.0}, 900, 32, 300, 40, 150,
          "NVLink 2", ("v100-sxm2", "v100-sxm2-32gb", "v100-32gb", "v100-sxm2-32g")),
    _spec("RTX-4090", "Ada", "board",
          {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2, "fp8": 330.3,
           "int8": 660.6}, 1008, 24, 450, 20, 32, "PCIe Gen4",
          ("rtx4090", "rtx 4090", "4090", "geforce-rtx-4090"),
          "NVIDIA Ada Lovelace architecture whitepaper (RTX 4090, FP32 accumulate)"),
    _spec("RTX-3090", "Ampere", "board",
          {"fp32": 35.6, "tf32": 35.6, "bf16": 71.0, "fp16": 71.0, "int8": 284.0},
          936, 24, 350, 20, 56.25, "NVLink bridge",
          ("rtx3090", "rtx 3090", "3090", "geforce-rtx-3090"),
          "NVIDIA Ampere GA102 whitepaper (RTX 3090, FP32 accumulate)"),
)}


def _normal(name: str) -> str:
    """Lower case, vendor words dropped, separators unified to '-'."""
    text = name.strip().lower()
    text = re.sub(r"\b(nvidia|tesla|geforce)\b", " ", text)
    return re.sub(r"[\s_]+", "-", text.strip()).strip("-")


def _alias_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for key, spec in GPUS.items():
        for alias in (key, *spec.aliases):
            table[_normal(alias)] = key
    return table


_ALIASES = _alias_table()


def gpu_spec(name: str) -> GpuSpec:
    """The spec of ``name``: a canonical name or alias, case-insensitive, with or without the
    vendor words ("NVIDIA H100 80GB HBM3" = H100 SXM, "h100-pcie" = the PCIe part). KeyError
    naming the known GPUs otherwise."""
    key = _ALIASES.get(_normal(name))
    if key is None:
        raise KeyError(f"unknown GPU {name!r} (known: {', '.join(GPUS)}; describe another "
                       "one in a file with --gpu-spec FILE)")
    return GPUS[key]


# --------------------------------------------------------------------------- a user's entry

class GpuSpecError(InputError):
    """A GPU spec file that cannot be used (the message names the file, line and field)."""


#: fields of a user file: name -> (unit, required)
SPEC_FIELDS: dict[str, tuple[str, bool]] = {
    "name": ("", True), "base": ("", False), "architecture": ("", False),
    "form_factor": ("", False), "tflops": ("TFLOP/s per dtype", False),
    "memory_bandwidth_gb_s": ("GB/s", False), "memory_gb": ("GB", False),
    "power_limit_w": ("W", False), "idle_power_w": ("W", False),
    "link_bandwidth_gb_s": ("GB/s per direction", False), "link": ("", False),
    "source": ("", False),
}
_NEEDED_WITHOUT_BASE = ("tflops", "memory_bandwidth_gb_s", "memory_gb", "power_limit_w")


def load_gpu_spec(path: str | Path) -> GpuSpec:
    """A GPU from a JSON or YAML file (``.yaml``/``.yml`` read as YAML, anything else as JSON).

    Fields (units in the names): ``name`` (required); either ``base`` (a known GPU whose figures
    the others override) or all of ``tflops`` ({dtype: dense TFLOP/s}, bf16 or fp16 at least),
    ``memory_bandwidth_gb_s``, ``memory_gb``, ``power_limit_w``; optional ``idle_power_w``
    (default 10 % of the board limit), ``link_bandwidth_gb_s`` (default 32, PCIe Gen4 x16),
    ``architecture``, ``form_factor``, ``link``, ``source``. GpuSpecError naming the file, line
    and field when anything is missing, unknown or out of range.
    """
    path = Path(path)
    content, check, _ = read_document(path, error=GpuSpecError, what="GPU specification",
                                      limit=1 << 16)
    check.mapping(content, (), tuple(SPEC_FIELDS))
    name = check.text(content.get("name"), ("name",))
    base: GpuSpec | None = None
    if "base" in content:
        try:
            base = gpu_spec(str(content["base"]))
        except KeyError as exc:
            raise check.error(("base",), exc.args[0]) from None
    else:
        missing = [k for k in _NEEDED_WITHOUT_BASE if k not in content]
        if missing:
            raise check.error((missing[0],), "required (or name a known GPU in 'base' to "
                                             "start from)")
    values: dict[str, Any] = {"name": name}
    if "tflops" in content:
        values["flops"] = _tflops(content["tflops"], check)
    for key, target, scale in (("memory_bandwidth_gb_s", "memory_bandwidth", _G),
                               ("memory_gb", "memory_bytes", _G),
                               ("power_limit_w", "power_limit_w", 1.0),
                               ("idle_power_w", "idle_power_w", 1.0),
                               ("link_bandwidth_gb_s", "link_bandwidth", _G)):
        if key in content:
            values[target] = check.number(content[key], (key,), positive=True) * scale
    for key in ("architecture", "form_factor", "link", "source"):
        if key in content:
            values[key] = check.text(content[key], (key,))
    if base is None:
        values.setdefault("idle_power_w", 0.1 * values["power_limit_w"])
        values.setdefault("link_bandwidth", 32 * _G)
        values.setdefault("link", "PCIe Gen4")
        values.setdefault("architecture", "unknown")
        values.setdefault("form_factor", "board")
        values.setdefault("source", f"user file {path}")
    else:
        values.setdefault("source", f"user file {path} (from {base.name})")
    try:
        return GpuSpec(**values) if base is None else replace(base, aliases=(), **values)
    except ValueError as exc:
        raise GpuSpecError(f"{path}: {exc}") from None


def _tflops(value: Any, check: Checker) -> dict[str, float]:
    """{dtype: FLOP/s} from a file's ``tflops`` mapping {dtype: TFLOP/s}."""
    if not isinstance(value, dict) or not value:
        raise check.error(("tflops",), f"must be {{dtype: TFLOP/s}}, e.g. {{\"bf16\": 989}}, "
                                       f"got {describe(value)}")
    out: dict[str, float] = {}
    for dtype, rate in value.items():
        key = DTYPE_NAMES.get(str(dtype).lower())
        if key is None:
            raise check.error(("tflops", dtype), f"unknown dtype (known: {', '.join(DTYPES)})")
        out[key] = check.number(rate, ("tflops", dtype), positive=True) * _T
    return out
