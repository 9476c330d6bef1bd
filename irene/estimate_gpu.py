"""The energy, time and power of every node of a model on a named GPU: no meter, no predictor.

::

    from irene.estimate_gpu import estimate_on_gpu
    est = estimate_on_gpu("bert-base-uncased", 8, 128, gpu="A100")
    est.tree.root.predicted_energy, est.tree.root.extra["predicted_time_s"]   # J, s

The model is traced as for any estimate (features only, on the meta device: no weights; see
:func:`irene.estimate.estimate_tree`), then every node is costed by the hardware model
(:mod:`irene.hardware.trees` over :mod:`irene.hardware.model`): a leaf from its FLOPs and bytes
on the GPU's data sheet with the runtime's overheads, power capped at the board limit; a module
and the model from their children. :class:`HardwarePredictor` is that costing dressed as a
predictor, so the one-call, phase and generation estimates use the same code paths as a trained
predictor.

What the numbers rest on is said with every estimate (:class:`Provenance`): where the
parameters come from, the error measured for them, and one warning per way the request goes
beyond what was measured (a GPU, runtime, phase, batch size or sequence length never measured).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from irene.hardware import (
    GpuSpec,
    HardwareModel,
    HardwareParams,
    RuntimeProfile,
    gpu_spec,
    load_gpu_spec,
    runtime_profile,
)
from irene.hardware.trees import cost_tree
from irene.model.state import TrainingData
from irene.schema import SCHEMAS, Schema
from irene.tree import Tree

#: the GPU used when none is named
DEFAULT_GPU = "H100"
#: --dtype of this mode -> (the dtype the model is traced in, the data sheet's GEMM dtype)
DTYPES = {"float32": ("float32", "fp32"), "float16": ("float16", "fp16"),
          "bfloat16": ("bfloat16", "bf16"), "bf16": ("bfloat16", "bf16"),
          "fp8": ("bfloat16", "fp8")}
#: what every costed tree can be: the phases the hardware model describes
PHASES = ["forward", "prefill", "decode", "train"]


class GpuEstimateError(ValueError):
    """A GPU estimate that cannot be made as asked (the message says why)."""


@dataclass(frozen=True)
class MeasuredRange:
    """Where a parameter set was checked against measurements: ``gpu`` (data-sheet name),
    ``runtime``, ``phases`` and the batch sizes and sequence (or context) lengths measured."""

    gpu: str
    runtime: str
    phases: tuple[str, ...]
    batch: tuple[int, int]
    seq: tuple[int, int]
    source: str


@dataclass(frozen=True)
class Provenance:
    """What the hardware parameters rest on: ``source`` in words, ``error`` (the error measured
    for them, in words, or why there is none) and ``measured``: the ranges they were fitted or
    checked on (empty for data-sheet priors)."""

    source: str
    error: str
    measured: tuple[MeasuredRange, ...] = ()


PRIOR_PROVENANCE = Provenance(
    source="data-sheet priors of irene.hardware (peak FLOP/s, memory bandwidth and board limit "
           "from the GPU's data sheet; efficiencies, energy shares and runtime overheads at "
           "their documented prior values), not fitted to any measurement",
    error="not measured: no per-node measurement on a GPU stands behind these parameters; "
          "treat the figures as a physically bounded first estimate (time >= the roofline "
          "bound, power <= the board limit)")


#: ML.ENERGY rows are whole generations: a prefill and its decode steps
MEASURED_PHASES = ("prefill", "decode")


def hardware_parameters(gpu: GpuSpec, runtime: str, *, fitted: bool = True
                        ) -> tuple[HardwareParams, RuntimeProfile, Provenance]:
    """The parameters, the runtime profile and what they rest on: the shipped fit
    (:func:`irene.hardware.params.load_hardware`, digest-checked) on ``gpu`` (its fitted
    multipliers when it was measured) under ``runtime``; ``fitted=False``: the data-sheet
    priors. GpuEstimateError for an unknown runtime; a damaged shipped file raises its error."""
    from irene.hardware.params import ATTRIBUTION, LICENSE, load_hardware

    profile = resolve_runtime(runtime)
    if not fitted:
        return HardwareParams(), profile, PRIOR_PROVENANCE
    hw = load_hardware()
    try:
        params = hw.fitted.params_for(gpu.name)
    except KeyError:  # a GPU from a user's file: the shared parameters
        params = hw.fitted.params
    measured = []
    for key, seen in sorted(hw.trained_on.items()):
        gpu_name, runtime_name = key.split("/", 1)
        measured.append(MeasuredRange(
            gpu=gpu_name, runtime=runtime_name, phases=MEASURED_PHASES,
            batch=(int(seen["batch"][0]), int(math.ceil(seen["batch"][1]))),
            seq=(int(seen["context"][0]), int(math.ceil(seen["context"][1]))),
            source=", ".join(seen.get("versions", []))))
    error = hw.fit_info.get("in_sample_abs_pct_error", {})
    versions = ", ".join(f"{k} ({v.get('rows', '?')} rows)" for k, v in sorted(hw.data.items()))
    provenance = Provenance(
        source=f"the hardware model fitted to ML.ENERGY {versions}: whole generations "
               f"(energy per token) on {', '.join(sorted({m.gpu for m in measured}))}; "
               f"{LICENSE}, {ATTRIBUTION.split(' (')[0]} ({hw.path})",
        error=(f"{error.get('median', float('nan')):.1f} % median, "
               f"{error.get('p90', float('nan')):.1f} % p90 absolute error on the generations "
               "it was fitted on (family-out figures: benchmarks/RESULTS.md); the energy of "
               "single nodes was never measured on a GPU — node figures are the model's split "
               "of a step"),
        measured=tuple(measured))
    return params, hw.fitted.runtime(profile.name), provenance


def resolve_gpu(name: str | None, spec_file: str | Path | None) -> GpuSpec:
    """The GPU named ``name`` (default :data:`DEFAULT_GPU`) or described in ``spec_file``
    (GpuEstimateError for an unknown name; a bad file raises the loader's error)."""
    if spec_file is not None:
        return load_gpu_spec(spec_file)
    try:
        return gpu_spec(name or DEFAULT_GPU)
    except KeyError as exc:
        raise GpuEstimateError(str(exc.args[0]) if exc.args else str(exc)) from exc


def resolve_runtime(name: str) -> RuntimeProfile:
    """The runtime profile called ``name`` (GpuEstimateError naming the known ones)."""
    try:
        return runtime_profile(name)
    except KeyError as exc:
        raise GpuEstimateError(str(exc.args[0]) if exc.args else str(exc)) from exc


class HardwarePredictor:
    """The hardware model as a predictor for :func:`irene.estimate.estimate_tree` and
    :func:`irene.generation.estimate_generation`: it reads the structure features (FLOPs,
    bytes), traces with this package's schema and costs every node (J, s, W). ``traced``: the
    trees it was last given, as traced (what the trace cache keeps)."""

    def __init__(self, gpu: GpuSpec, runtime: RuntimeProfile, params: HardwareParams,
                 gemm_dtype: str) -> None:
        self.hardware = HardwareModel(gpu, runtime, params)
        self.gemm_dtype = gemm_dtype
        self.schema: Schema = SCHEMAS["irene"]
        self.training_data = TrainingData(phases=list(PHASES))
        self.traced: list[Tree] = []

    def required_features(self) -> list[str]:
        """The node features read: FLOPs and bytes (structure, always traced)."""
        return ["flops", "mem_bytes"]

    def predict(self, trees: list[Tree]) -> list[Tree]:
        """Copies of ``trees`` with every node's energy (J), time (s) and power (W)."""
        self.traced = list(trees)
        out = []
        for tree in trees:
            copy = tree.copy()
            cost_tree(copy, self.hardware, self.gemm_dtype)
            copy.meta["hardware_estimate"] = {
                "gpu": self.hardware.gpu.name, "runtime": self.hardware.runtime.name,
                "dtype": self.gemm_dtype}
            out.append(copy)
        return out


@dataclass
class GpuEstimate:
    """A costed tree (one call) or generation, and what it rests on."""

    gpu: GpuSpec
    runtime: RuntimeProfile
    dtype: str
    provenance: Provenance
    warnings: list[str] = field(default_factory=list)
    tree: Tree | None = None
    generation: Any = None


def extrapolation_warnings(provenance: Provenance, gpu: GpuSpec, runtime: RuntimeProfile,
                           phase: str, batch: int, seq: int) -> list[str]:
    """One line per way the request leaves what the parameters were measured on."""
    if not provenance.measured:
        return [f"extrapolates: no measurement stands behind these parameters on any GPU or "
                f"runtime ({gpu.name}, {runtime.name}, {phase}, batch {batch}, {seq} tokens)"]
    out = []
    on_gpu = [m for m in provenance.measured if m.gpu == gpu.name]
    if not on_gpu:
        out.append(f"extrapolates: {gpu.name} was never measured (predicted from its data "
                   "sheet)")
    here = [m for m in on_gpu if m.runtime == runtime.name]
    if on_gpu and not here:
        out.append(f"extrapolates: the {runtime.name} runtime was never measured on "
                   f"{gpu.name}")
    scope = here or [m for m in provenance.measured if m.runtime == runtime.name] \
        or list(provenance.measured)
    if not any(phase in m.phases for m in scope):
        out.append(f"extrapolates: {phase} was never measured here")
    if not any(m.batch[0] <= batch <= m.batch[1] for m in scope):
        out.append(f"extrapolates: batch size {batch} was never measured here")
    if not any(m.seq[0] <= seq <= m.seq[1] for m in scope):
        out.append(f"extrapolates: {seq} tokens was never measured here")
    return out


def estimate_on_gpu(model: str | Any, batch_size: int | None = None,
                    seq_len: int | None = None, *, gpu: str | None = None,
                    gpu_spec_file: str | Path | None = None, runtime: str = "eager",
                    dtype: str = "float32", phase: str = "forward", context_len: int = 0,
                    optimizer: str | None = None, prompt_len: int | None = None,
                    new_tokens: int | None = None, attn: str = "eager", hub: bool = True,
                    progress: bool = False, warn: Callable[[str], None] = print,
                    trace_cache: str | Path | None = None) -> GpuEstimate:
    """Cost every node of ``model`` on a GPU (see the module docstring).

    One call: ``batch_size`` x ``seq_len`` with ``phase`` (forward, prefill, decode with
    ``context_len``, train with ``optimizer``); a generation: ``prompt_len`` and ``new_tokens``
    (``batch_size`` sequences, default 1; :func:`irene.generation.estimate_generation`).
    ``dtype``: a key of :data:`DTYPES`. ``trace_cache``: a directory keeping the traces of one
    call between runs (:mod:`irene.tracing.tree_cache`; None: no cache). Raises
    GpuEstimateError (or ValueError from the trace) for what cannot be estimated.
    """
    if dtype not in DTYPES:
        raise GpuEstimateError(f"dtype {dtype!r}: per-node GPU estimates take "
                               f"{', '.join(DTYPES)}")
    trace_dtype, gemm_dtype = DTYPES[dtype]
    spec = resolve_gpu(gpu, gpu_spec_file)
    params, profile, provenance = hardware_parameters(spec, runtime)
    predictor = HardwarePredictor(spec, profile, params, gemm_dtype)
    estimate = GpuEstimate(gpu=spec, runtime=profile, dtype=gemm_dtype, provenance=provenance)
    if gemm_dtype == "fp8":
        estimate.warnings.append("note: fp8 GEMMs run at the fp8 rate; bytes are those of a "
                                 "bf16 trace (fp8 weights move half of them)")
    if prompt_len is not None or new_tokens is not None:
        from irene.generation import estimate_generation

        if prompt_len is None or new_tokens is None:
            raise GpuEstimateError("a generation needs both prompt_len and new_tokens")
        batch = batch_size or 1
        estimate.warnings += extrapolation_warnings(provenance, spec, profile, "decode", batch,
                                                    prompt_len + new_tokens)
        estimate.generation = estimate_generation(
            model, predictor, prompt_len=prompt_len, new_tokens=new_tokens, batch_size=batch,
            dtype=trace_dtype, attn=attn, progress=progress, hub=hub, warn=warn)
        return estimate
    if batch_size is None or seq_len is None:
        raise GpuEstimateError("give a batch size and a sequence length (one call), or a "
                               "prompt length and a number of new tokens (a generation)")
    tokens = seq_len + context_len if phase == "decode" else seq_len
    estimate.warnings += extrapolation_warnings(provenance, spec, profile, phase, batch_size,
                                                tokens)
    estimate.tree = costed_call(model, batch_size, seq_len, predictor, cache=trace_cache,
                                dtype=trace_dtype, attn=attn, phase=phase,
                                context_len=context_len, optimizer=optimizer,
                                progress=progress, warn=warn, hub=hub)
    return estimate


def costed_call(model: str | Any, batch_size: int, seq_len: int, predictor: HardwarePredictor,
                *, cache: str | Path | None, dtype: str, attn: str, phase: str,
                context_len: int, optimizer: str | None, progress: bool,
                warn: Callable[[str], None], hub: bool) -> Tree:
    """One call traced and costed (:func:`irene.estimate.estimate_tree`), the trace read from
    and kept in ``cache`` (:mod:`irene.tracing.tree_cache`) when it is a directory and the
    model can be keyed; a cached trace is costed exactly as a fresh one."""
    from irene.estimate import estimate_tree
    from irene.tracing import tree_cache

    call = {"dtype": dtype, "attn": attn, "phase": phase, "context_len": context_len,
            "optimizer": optimizer}
    request = None if cache is None else tree_cache.request_key(
        model, batch_size, seq_len, schema=predictor.schema.name, **call)
    if request is not None:
        cached = tree_cache.load_tree(cache, request, warn)
        if cached is not None:
            return predictor.predict([cached])[0]
    costed = estimate_tree(model, batch_size, seq_len, predictor, progress=progress, warn=warn,
                           hub=hub, **call)
    if request is not None:
        tree_cache.store_tree(cache, request, predictor.traced[0], warn)
    return costed
