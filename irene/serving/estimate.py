"""``irene estimate MODEL --serving vllm``: energy per token of serving an LLM, without a meter.

:func:`estimate_serving` counts the model's decode step (:mod:`irene.serving.structure`,
:mod:`irene.serving.decode`) for the requested GPUs and workload, and predicts with the shipped
predictor (:mod:`irene.serving.predictor`, learned from the ML.ENERGY v3 measurements): J per
output token, J per request, average power, tokens per second, inter-token latency, and the
breakdown of a token's energy over modules and layers. It also says how far the request lies
from what was measured and warns when it extrapolates.

**Fitted to measurements: the total** (time per step, power, energy per token). **Modelled: the
shares** (how that total splits over modules and layers, from the same time/energy equations
applied module by module).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from irene.serving.decode import DecodeStep, Parallelism, ServingInputError, Workload, shard
from irene.serving.gpus import GPUS, GpuSpec, gpu_spec
from irene.serving.model import ENERGY_PARAMS, GpuFit, StepArrays, energy_design
from irene.serving.predictor import ServingPredictor, load_predictor
from irene.serving.structure import MODULES, ModelStructure, structure_of, text_config

#: served weight formats a user may ask for (``--dtype``), and the names accepted for them
WEIGHT_FORMATS = {"bf16": "bf16", "bfloat16": "bf16", "float16": "bf16", "fp16": "bf16",
                  "fp8": "fp8", "mxfp4": "mxfp4"}
#: what ``--dtype fp8`` / ``mxfp4`` quantizes in a model without published facts: every linear
#: weight of the decoder layers (mxfp4: the routed experts only, as gpt-oss ships it)
DECODER_LINEAR = r"^model\.layers\.\d+\..*(_proj(\.weight)?|\.experts\.\w+)$"
ROUTED_EXPERTS = r"\.experts\.(gate_up_proj|down_proj)$"
FITTED_VS_MODELLED = ("fitted to measurements: the total (time per step, power, energy per "
                      "token); modelled: the shares (how the total splits over modules and "
                      "layers, from the same equations applied module by module)")
#: how much of a GPU's memory vLLM may use (its default gpu_memory_utilization)
MEMORY_FRACTION = 0.9


class ServingEstimateError(ValueError):
    """An estimate that cannot be made (unknown GPU, unsupported model, impossible layout)."""


@dataclass
class ServingEstimate:
    """The result of :func:`estimate_serving` (units in the field names)."""

    model: str
    gpu: str
    num_gpus: int
    concurrency: float
    prompt_len: float
    new_tokens: float
    weight_format: str
    architecture: str
    total_params: float
    active_params: float
    joules_per_token: float
    joules_per_request: float
    power_w: float
    power_per_gpu_w: float
    tokens_per_s: float
    seconds_per_step: float
    breakdown: dict[str, float]  # J/token per module, + communication, fixed overhead
    per_layer: list[dict[str, Any]]  # [{"layer": i, "module": joules per token, ...}]
    features: dict[str, float]  # per-GPU decode-step features
    distance: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (every number finite)."""
        return asdict(self)


# --------------------------------------------------------------------------- the model

def resolve_structure(model: str, weight_format: str | None, hub: bool) -> \
        tuple[str, ModelStructure, list[str]]:
    """(canonical name, structure in the served format, notes) of a built-in name or local
    config (a Hub id only with ``hub``)."""
    from irene.tracing.registry import _builtin_name, load_config, max_sequence_length
    from irene.tracing.serving_models import SERVING_FACTS

    name = _builtin_name(model) or model
    config = load_config(model, hub=hub)
    notes: list[str] = []
    facts = SERVING_FACTS.get(name)
    fmt = weight_format
    if fmt is None:
        fmt = facts.weight_format if facts else _format_of_config(config)
    fmt = WEIGHT_FORMATS.get(fmt, fmt)
    if fmt not in ("bf16", "fp8", "mxfp4"):
        raise ServingEstimateError(f"--dtype {weight_format!r}: serving weight formats are "
                                   "bf16, fp8, mxfp4")
    if facts and fmt == facts.weight_format:
        quantized = facts.quantized
    elif fmt == "bf16":
        quantized = ""
    else:
        try:
            probe = structure_of(config)
        except ValueError as exc:
            raise ServingEstimateError(f"{model}: {exc}") from exc
        quantized = ROUTED_EXPERTS if fmt == "mxfp4" and probe.is_moe else DECODER_LINEAR
        scope = "the routed experts" if quantized == ROUTED_EXPERTS \
            else "every linear weight of the decoder layers"
        notes.append(f"{fmt} assumed on {scope}; embeddings, norms and head in bf16")
    try:
        structure = structure_of(config, weight_format=fmt, quantized=quantized)
    except ValueError as exc:
        raise ServingEstimateError(f"{model}: {exc}") from exc
    structure.max_positions = max_sequence_length(text_config(config)) or 0
    return name, structure, notes + structure.notes


def _format_of_config(config: Any) -> str:
    """The served weight format a ``config.json`` declares (``quantization_config``), else bf16."""
    quant = getattr(config, "quantization_config", None) or {}
    if not isinstance(quant, dict):
        quant = getattr(quant, "to_dict", lambda: {})()
    method = str(quant.get("quant_method", "")).lower()
    if method == "mxfp4":
        return "mxfp4"
    if method in ("fp8", "fbgemm_fp8", "compressed-tensors") or "fp8" in str(quant).lower():
        return "fp8"
    return "bf16"


def default_gpus(structure: ModelStructure, gpu: GpuSpec) -> int:
    """The fewest GPUs (1, 2, 4, 8) whose memory holds the weights with room for a KV cache
    (weights under 70 % of vLLM's share of memory)."""
    for gpus in (1, 2, 4, 8):
        if structure.weight_bytes() / gpus <= 0.7 * MEMORY_FRACTION * gpu.memory_bytes:
            return gpus
    return 8


# --------------------------------------------------------------------------- the estimate

def estimate_serving(model: str, *, gpu: str = "H100", num_gpus: int | None = None,
                     concurrency: float = 64, prompt_len: float = 1000,
                     new_tokens: float = 500, weight_format: str | None = None,
                     predictor: ServingPredictor | str | None = None,
                     hub: bool = True) -> ServingEstimate:
    """Estimate serving ``model`` with vLLM on ``num_gpus`` × ``gpu`` at ``concurrency``
    sequences decoded together, requests of ``prompt_len`` prompt and ``new_tokens`` output
    tokens (see the module docstring)."""
    from irene.limits import MAX_DIMENSION

    for label, value, low in (("concurrency", concurrency, 1), ("prompt length", prompt_len, 0),
                              ("new tokens", new_tokens, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not low <= value <= MAX_DIMENSION:
            raise ServingEstimateError(f"{label} must be a number from {low} to "
                                       f"{MAX_DIMENSION}, got {value!r}")
    try:
        spec = gpu_spec(gpu)
    except KeyError as exc:
        raise ServingEstimateError(str(exc.args[0])) from None
    if not isinstance(predictor, ServingPredictor):
        predictor = load_predictor(predictor)
    name, structure, notes = resolve_structure(model, weight_format, hub)
    positions = structure.max_positions
    if positions and prompt_len + new_tokens > positions:
        raise ServingEstimateError(f"{name}: a {prompt_len:g}-token prompt and {new_tokens:g} new "
                                   f"tokens exceed its {positions} positions "
                                   "(max_position_embeddings): vLLM refuses such requests")
    gpus = num_gpus or default_gpus(structure, spec)
    try:
        workload = Workload.of_requests(float(concurrency), float(prompt_len), float(new_tokens))
        parallel = Parallelism(int(gpus))
    except ServingInputError as exc:
        raise ServingEstimateError(str(exc)) from exc
    heads = structure.attention_heads
    if heads and heads % parallel.tensor:
        raise ServingEstimateError(f"{gpus} GPUs: vLLM's tensor parallelism needs the {heads} "
                                   "attention heads to divide evenly over the GPUs")
    fit, warnings = _fit_for(predictor, spec)
    step = shard(structure, workload, parallel)
    arrays = StepArrays.of([step])
    joules, seconds = (float(v[0]) for v in fit.predict(arrays))
    breakdown, per_layer = energy_breakdown(fit, step)
    warnings += extrapolation_warnings(fit, name, structure, step, spec)
    if num_gpus is None:
        notes.append(f"{gpus} GPU(s): the fewest whose memory holds the weights (--num-gpus)")
    tokens_per_s = workload.batch / seconds
    power = joules * tokens_per_s
    return ServingEstimate(
        model=name, gpu=spec.name, num_gpus=gpus, concurrency=workload.batch,
        prompt_len=workload.prompt_len, new_tokens=workload.output_len,
        weight_format=structure.weight_format, architecture=structure.architecture,
        total_params=float(structure.total_params()), active_params=structure.active_params(),
        joules_per_token=joules, joules_per_request=joules * workload.output_len,
        power_w=power, power_per_gpu_w=power / gpus, tokens_per_s=tokens_per_s,
        seconds_per_step=seconds, breakdown=breakdown, per_layer=per_layer,
        features=step.features(), distance=distance_to_data(fit, name, structure, step),
        warnings=warnings, notes=notes, provenance=provenance(predictor, fit))


def _fit_for(predictor: ServingPredictor, spec: GpuSpec) -> tuple[GpuFit, list[str]]:
    """The fit for ``spec``: measured, or the H100 fit moved to its data sheet (warned)."""
    if spec.name in predictor.fits:
        return predictor.fits[spec.name], []
    base = predictor.fits.get("H100") or next(iter(predictor.fits.values()))
    moved = GpuFit(gpu=spec, time=dict(base.time), energy=dict(base.energy),
                   origin=f"{base.gpu.name} fit scaled to the {spec.name} data sheet",
                   trained_on=base.trained_on)
    warning = (f"{spec.name} was not measured: the {base.gpu.name} fit is scaled to the "
               f"{spec.name} data sheet (bandwidth, FLOP/s, NVLink); power and efficiencies "
               f"are {base.gpu.name}'s. Measured GPUs: {', '.join(predictor.fits)}")
    if not spec.fp8:
        warning += f"; {spec.name} has no fp8 tensor cores (fp8 GEMMs counted at bf16 rate)"
    return moved, [warning]


def energy_breakdown(fit: GpuFit, step: DecodeStep) -> tuple[dict[str, float],
                                                             list[dict[str, Any]]]:
    """J per output token per module (plus ``communication`` and ``fixed overhead``), and per
    layer and module; the parts sum to the predicted total. Modelled shares (see module)."""
    arrays = StepArrays.of([step])
    t = fit.times(arrays)
    c = fit.energy_coefficients()
    e = dict(zip(ENERGY_PARAMS, c, strict=True))
    g, batch = float(step.parallel.gpus), step.workload.batch
    module_time = (t.weights + t.cache)[0]
    module_bytes = (arrays.weights + arrays.cache)[0]
    module_flops = (arrays.gemm + arrays.attention)[0]
    per_module = g * ((e["idle_power_w"] + e["busy_power_w"]) * module_time
                      + e["joules_per_byte"] * module_bytes + e["joules_per_flop"] * module_flops)
    communication = g * (e["idle_power_w"] * t.communication[0] + e["joules_per_link_byte"]
                         * (arrays.allreduce_bytes[0] + arrays.exchange_bytes[0]))
    fixed = g * e["idle_power_w"] * t.fixed[0]
    total = float(energy_design(arrays, t.total, t.kernels)[0] @ c)
    parts = {m: float(v) / batch for m, v in zip(MODULES, per_module, strict=True) if v > 0}
    parts["communication"] = float(communication) / batch
    parts["fixed overhead"] = float(fixed) / batch
    assert abs(sum(parts.values()) * batch - total) <= 1e-6 * max(total, 1e-12)
    return parts, _per_layer(fit, step, parts)


def _per_layer(fit: GpuFit, step: DecodeStep, parts: dict[str, float]) -> list[dict[str, Any]]:
    """Each layer's J/token per module: every module's total shared over layers in proportion
    to that layer's modelled kernel time for it (layer -1: embedding, head, final norm)."""
    layers = sorted({c.layer for c in step.costs})
    index = {layer: i for i, layer in enumerate(layers)}
    by_layer = [[] for _ in layers]
    for c in step.costs:
        by_layer[index[c.layer]].append(c)
    rows = [DecodeStep(step.structure, step.workload, step.parallel, tuple(cs), 0, 0, 0, 0, 0)
            for cs in by_layer]
    t = fit.times(StepArrays.of(rows))
    weight = t.weights + t.cache  # layers × modules
    shares = weight / np.where(weight.sum(0) > 0, weight.sum(0), 1.0)
    out = []
    for i, layer in enumerate(layers):
        entry: dict[str, Any] = {"layer": layer}
        for j, module in enumerate(MODULES):
            if module in parts and shares[i, j] > 0:
                entry[module] = float(parts[module] * shares[i, j])
        out.append(entry)
    return out


# --------------------------------------------------------------------------- distance

def distance_to_data(fit: GpuFit, name: str, structure: ModelStructure,
                     step: DecodeStep) -> dict[str, Any]:
    """How the request compares with what the fit was trained on: whether the model was
    measured, the nearest measured model by parameters, and each quantity against its range."""
    trained = fit.trained_on
    active, total = structure.active_params(), float(structure.total_params())
    nearest = _nearest_model(fit, structure)
    return {
        "gpu_measured": bool(trained) and fit.origin.startswith("fitted"),
        "model_measured": name in trained.get("models", []),
        "nearest_measured_model": nearest,
        "architecture_measured": structure.architecture in trained.get("architectures", []),
        "format_measured": structure.weight_format in trained.get("formats", []),
        "active_params": active, "active_params_range": trained.get("active_params"),
        "total_params": total, "total_params_range": trained.get("total_params"),
        "batch": step.workload.batch, "batch_range": trained.get("batch"),
        "gpus": step.parallel.gpus, "gpus_range": trained.get("gpus"),
        "context": step.workload.context, "context_range": trained.get("context"),
    }


def _nearest_model(fit: GpuFit, structure: ModelStructure) -> dict[str, Any] | None:
    """The measured model closest in (log active, log total) parameters."""
    best: tuple[float, str, float, float] | None = None
    for model, (active, total) in fit.trained_on.get("model_params", {}).items():
        d = math.hypot(math.log(structure.active_params() / active),
                       math.log(structure.total_params() / total))
        if best is None or d < best[0]:
            best = (d, model, active, total)
    if best is None:
        return None
    return {"model": best[1], "active_params_ratio": structure.active_params() / best[2],
            "total_params_ratio": structure.total_params() / best[3]}


def extrapolation_warnings(fit: GpuFit, name: str, structure: ModelStructure,
                           step: DecodeStep, spec: GpuSpec) -> list[str]:
    """One line per way the request leaves the measured data."""
    trained = fit.trained_on
    out = []

    def outside(label: str, value: float, key: str, unit: str = "") -> None:
        span = trained.get(key)
        if span and not span[0] * 0.999 <= value <= span[1] * 1.001:
            out.append(f"{label} {_fmt(value)}{unit} is outside the measured range "
                       f"{_fmt(span[0])}–{_fmt(span[1])}{unit} (extrapolating)")

    outside("active parameters", structure.active_params(), "active_params")
    outside("total parameters", float(structure.total_params()), "total_params")
    outside("concurrency", step.workload.batch, "batch", " sequences")
    outside("GPU count", float(step.parallel.gpus), "gpus")
    outside("context", step.workload.context, "context", " tokens")
    if structure.architecture not in trained.get("architectures", []):
        out.append(f"architecture {structure.architecture!r} was not measured on {spec.name}")
    if structure.weight_format not in trained.get("formats", []):
        out.append(f"weight format {structure.weight_format} was not measured on {spec.name}")
    if structure.architecture == "hybrid" and name not in trained.get("models", []):
        out.append("Mamba hybrids were measured for two Nemotron Nano models only")
    for note in structure.notes:
        out.append(f"unsupported architecture read generically: {note}")
    memory = _memory_per_gpu(step)
    if memory > MEMORY_FRACTION * spec.memory_bytes:
        out.append(f"weights + KV cache need {memory / 1e9:.0f} GB per GPU, more than "
                   f"{MEMORY_FRACTION:.0%} of the {spec.name}'s {spec.memory_bytes / 1e9:.0f} GB:"
                   " vLLM would run fewer sequences at once (use more GPUs or a lower "
                   "--concurrency)")
    return out


def _memory_per_gpu(step: DecodeStep) -> float:
    """Bytes per GPU of the weights and of the KV cache of the running sequences (the cache at
    its largest, prompt + all new tokens)."""
    s, w, p = step.structure, step.workload, step.parallel
    weights = s.weight_bytes() / p.gpus
    peak_context = w.prompt_len + w.output_len
    cache = 0.0
    for a in s.attention.values():
        span = min(peak_context, a.window) if a.window else peak_context
        cache += w.batch * span * a.kv_bytes_per_token / min(p.tensor, max(a.kv_heads, 1))
    cache += sum(w.batch * r.state_bytes for r in s.recurrent.values()) / p.tensor
    return weights + cache


def _fmt(value: float) -> str:
    if value >= 1e9:
        return f"{value / 1e9:.3g}B"
    return f"{value:.4g}"


def provenance(predictor: ServingPredictor, fit: GpuFit) -> dict[str, Any]:
    """Where the numbers come from: data, licence, citation, predictor file, fit origin."""
    return {**predictor.data, "predictor": predictor.path, "fit": fit.origin,
            "source": predictor.source, "prompt_tokens_assumed": predictor.prompt_tokens,
            "fitted_vs_modelled": FITTED_VS_MODELLED}


def format_of(text: str) -> str:
    """A ``--dtype`` value as a served weight format (ValueError for anything else)."""
    key = text.strip().lower()
    if key not in WEIGHT_FORMATS:
        raise ServingEstimateError(f"--dtype {text!r}: expected one of bf16, fp8, mxfp4")
    return WEIGHT_FORMATS[key]


def known_gpus() -> list[str]:
    """GPU names the estimate accepts."""
    return list(GPUS)

