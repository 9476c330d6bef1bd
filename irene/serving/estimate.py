"""``irene estimate MODEL --serving vllm``: energy per token of serving an LLM, without a meter.

:func:`estimate_serving` counts the model's decode step (:mod:`irene.serving.structure`,
:mod:`irene.serving.decode`) for the requested GPUs and workload and evaluates it as a workload
of the one hardware model (:mod:`irene.hardware`) under the vLLM runtime profile, with the
shipped fitted parameters (:mod:`irene.hardware.params`, fitted to the ML.ENERGY v3, v2 and v1
measurements): J per output token, J per request, average power (never above the board limit),
tokens per second, inter-token latency, and the breakdown of a token's energy over modules and
layers. It refuses what cannot run (weights that do not fit the GPUs' memory), says how far the
request lies from what was measured and warns when it extrapolates. A local ``config.json`` is
read as JSON: no torch, no transformers.

**Fitted to measurements: the total** (time per step, power, energy per token). **Modelled: the
shares** (how that total splits over modules and layers, from the same time/energy equations
applied module by module).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from irene.checks import InputError
from irene.hardware.gpus import GPUS, GpuSpec, gpu_spec
from irene.hardware.model import HardwareParams
from irene.hardware.params import HardwareFile, load_hardware
from irene.hardware.runtime import RuntimeProfile
from irene.hardware.work import WorkCost, work_cost
from irene.serving.data import TASK_PROMPT_TOKENS
from irene.serving.decode import DecodeStep, Parallelism, ServingInputError, Workload, shard
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
#: the runtime profile of the serving estimate
RUNTIME = "vllm"
#: model types whose embeddings are tied when config.json does not say (their defaults)
TIED_BY_DEFAULT = {"gemma", "gemma2", "gemma3", "gemma3_text"}
#: the resolved configs of the serving built-ins ({name: config.to_dict()}), written by
#: scripts/build_serving_configs.py: a built-in serving estimate needs no transformers
SERVING_CONFIGS_PATH = Path(__file__).resolve().parents[1] / "data" / "serving_configs.json"


class ServingEstimateError(InputError):
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
    config, name, facts = _config(model, hub)
    notes: list[str] = []
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
    structure.max_positions = max_positions(text_config(config))
    return name, structure, notes + structure.notes


def _config(model: str, hub: bool) -> tuple[Any, str, Any]:
    """(config, canonical name, published serving facts or None): a local ``config.json``
    (file or directory) is read as JSON into attributes — no torch, no transformers; built-in
    names of the serving models are read from :data:`SERVING_CONFIGS_PATH` (also no
    transformers); other built-ins and Hub ids go through
    :func:`irene.tracing.registry.load_config`."""
    path = Path(model).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        path = path / "config.json"
    if path.is_file() and path.suffix == ".json":
        return checked_json_config(path), model, None
    from irene.tracing.registry import builtin_name, load_config
    from irene.tracing.serving_models import SERVING_FACTS

    name = builtin_name(model) or model
    shipped = serving_configs()
    if name in shipped:
        return config_namespace(shipped[name]), name, SERVING_FACTS.get(name)
    return load_config(model, hub=hub), name, SERVING_FACTS.get(name)


@lru_cache(maxsize=1)
def serving_configs() -> dict[str, dict[str, Any]]:
    """{serving built-in name: its resolved config as a dict} from :data:`SERVING_CONFIGS_PATH`
    (read once)."""
    from irene.files import loads_json, read_small_text

    try:
        data = loads_json(read_small_text(SERVING_CONFIGS_PATH))
    except (OSError, ValueError) as exc:
        raise ServingEstimateError(f"{SERVING_CONFIGS_PATH}: cannot read the shipped serving "
                                   f"configs ({exc}); reinstall irene or rebuild them with "
                                   "scripts/build_serving_configs.py") from None
    if not isinstance(data, dict):
        raise ServingEstimateError(f"{SERVING_CONFIGS_PATH}:1: expected a JSON object of configs")
    return data


#: sizes a decoder's config.json must declare for the serving count (none filled by default)
SERVING_SIZES = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads")
#: GPT-2-style names of those sizes (named in the message when the file uses that style)
GPT2_NAMES = {"hidden_size": "n_embd", "num_hidden_layers": "n_layer",
              "num_attention_heads": "n_head"}


def max_positions(config: Any) -> int:
    """The most tokens a sequence of ``config`` may hold (0: not declared)."""
    value = getattr(config, "max_position_embeddings", None)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def checked_json_config(path: Any) -> Any:
    """:func:`json_config`, refused (ServingEstimateError naming the file and field) when a size
    of :data:`SERVING_SIZES` is missing or the values are impossible or beyond
    :mod:`irene.limits` (:func:`irene.tracing.registry.check_config`, the tracer's rule) —
    without importing torch or transformers."""
    from irene.tracing.registry import ConfigError, check_config, check_config_object

    config, raw = json_config(path, with_raw=True)
    text = text_config(config)
    try:
        check_config_object(raw, str(path))
    except ConfigError as exc:
        raise ServingEstimateError(str(exc)) from None
    gpt2_style = any(hasattr(text, n) for n in GPT2_NAMES.values())
    for name in SERVING_SIZES:
        if getattr(text, name, None) is None and getattr(text, GPT2_NAMES.get(name, name),
                                                         None) is None:
            shown = GPT2_NAMES.get(name, name) if gpt2_style else name
            raise ServingEstimateError(f"{path}: field {shown!r} missing: a decoder LLM's "
                                       "config.json must declare every size (none is assumed)")
    try:
        check_config(text, str(path))
    except ConfigError as exc:
        raise ServingEstimateError(str(exc)) from None
    return config


def json_config(path: Any, *, with_raw: bool = False) -> Any:
    """A ``config.json`` as nested attribute objects (``quantization_config`` kept a dict;
    ``tie_word_embeddings`` defaulted per model type), with the parsed JSON too when
    ``with_raw``; ServingEstimateError naming the file."""
    from irene.files import loads_json, read_small_text

    try:
        data = loads_json(read_small_text(path, limit=1 << 22))
    except (OSError, ValueError) as exc:
        raise ServingEstimateError(f"{path}: cannot read a JSON config ({exc})") from None
    if not isinstance(data, dict):
        raise ServingEstimateError(f"{path}:1: expected a JSON object of config fields")
    config = config_namespace(data)
    return (config, data) if with_raw else config


def config_namespace(data: dict[str, Any]) -> SimpleNamespace:
    """Config fields (parsed JSON) as nested attribute objects: ``quantization_config`` kept a
    dict, ``tie_word_embeddings`` defaulted per model type (:data:`TIED_BY_DEFAULT`)."""
    out = {k: (config_namespace(v) if isinstance(v, dict) and k != "quantization_config" else v)
           for k, v in data.items()}
    if "tie_word_embeddings" not in out:
        out["tie_word_embeddings"] = out.get("model_type") in TIED_BY_DEFAULT
    return SimpleNamespace(**out)


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

@dataclass(frozen=True)
class ServingModel:
    """The hardware model the estimate uses on one GPU: its parameters, the vLLM runtime, what
    that GPU was fitted on ({} when never measured) and where the numbers come from."""

    gpu: GpuSpec
    params: HardwareParams
    runtime: RuntimeProfile
    trained: dict[str, Any]
    origin: str
    hardware: HardwareFile


def serving_model(hardware: HardwareFile, spec: GpuSpec) -> tuple[ServingModel, list[str]]:
    """The model for ``spec`` and warnings: a GPU measured under vLLM uses its fitted
    multipliers; any other is predicted from its data sheet with the shared fit (warned)."""
    runtime = hardware.fitted.runtime(RUNTIME)
    trained = hardware.trained(spec.name, RUNTIME)
    warnings: list[str] = []
    if trained:
        origin = f"fitted on {trained['rows']} {spec.name} rows under vLLM"
    else:
        measured = sorted({k.split("/")[0] for k in hardware.trained_on if k.endswith(
            f"/{RUNTIME}")})
        origin = f"{spec.name} data sheet with the shared fit (not measured)"
        warnings.append(f"{spec.name} was not measured under vLLM: predicted from its data "
                        "sheet (peak FLOP/s, bandwidth, board limit, link) with the parameters "
                        f"shared by all GPUs (extrapolating; measured: {', '.join(measured)})")
        if not spec.fp8:
            warnings.append(f"{spec.name} has no fp8 tensor cores: fp8 weights are multiplied "
                            "at the bf16 rate")
    params = hardware.fitted.params_for(spec.name) if spec.name in GPUS \
        and GPUS[spec.name] == spec else hardware.fitted.params
    reference = trained or merged_trained(hardware, RUNTIME)
    return ServingModel(spec, params, runtime, reference, origin, hardware), warnings


def merged_trained(hardware: HardwareFile, runtime: str) -> dict[str, Any]:
    """What every GPU measured under ``runtime`` was fitted on, together (the reference of a GPU
    that was never measured): union of models, architectures, formats; ranges widened."""
    entries = [v for k, v in hardware.trained_on.items() if k.endswith(f"/{runtime}")]
    if not entries:
        return {}
    out: dict[str, Any] = {"rows": sum(e["rows"] for e in entries), "model_params": {}}
    for key in ("models", "architectures", "formats", "tasks"):
        out[key] = sorted({v for e in entries for v in e.get(key, [])})
    for key in ("batch", "active_params", "total_params", "gpus", "context"):
        spans = [e[key] for e in entries if key in e]
        if spans:
            out[key] = [min(s[0] for s in spans), max(s[1] for s in spans)]
    for e in entries:
        out["model_params"].update(e.get("model_params", {}))
    return out


def _spec_of(gpu: str | GpuSpec) -> GpuSpec:
    if isinstance(gpu, GpuSpec):
        return gpu
    try:
        return gpu_spec(gpu)
    except KeyError as exc:
        raise ServingEstimateError(str(exc.args[0])) from None


def estimate_serving(model: str, *, gpu: str | GpuSpec = "H100", num_gpus: int | None = None,
                     concurrency: float = 64, prompt_len: float = 1000,
                     new_tokens: float = 500, weight_format: str | None = None,
                     predictor: HardwareFile | str | None = None,
                     hub: bool = True) -> ServingEstimate:
    """Estimate serving ``model`` with vLLM on ``num_gpus`` × ``gpu`` (a name or a spec, e.g.
    from ``--gpu-spec FILE``) at ``concurrency`` sequences decoded together, requests of
    ``prompt_len`` prompt and ``new_tokens`` output tokens; ``predictor``: a hardware parameter
    file (default: the shipped one). See the module docstring."""
    from irene.limits import MAX_DIMENSION

    for label, value, low in (("concurrency", concurrency, 1), ("prompt length", prompt_len, 0),
                              ("new tokens", new_tokens, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not low <= value <= MAX_DIMENSION:
            raise ServingEstimateError(f"{label} must be a number from {low} to "
                                       f"{MAX_DIMENSION}, got {value!r}")
    spec = _spec_of(gpu)
    hardware = predictor if isinstance(predictor, HardwareFile) else load_hardware(predictor)
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
    check_fits(structure, spec, gpus)
    chosen, warnings = serving_model(hardware, spec)
    step = shard(structure, workload, parallel)
    cost = work_cost(step.work(), spec, chosen.params, chosen.runtime)
    breakdown, per_layer = energy_breakdown(chosen, step, cost)
    warnings += extrapolation_warnings(chosen.trained, name, structure, step, spec)
    if num_gpus is None:
        notes.append(f"{gpus} GPU(s): the fewest whose memory holds the weights (--num-gpus)")
    seconds = cost.seconds
    joules = cost.joules_per_token
    tokens_per_s = workload.batch / seconds
    return ServingEstimate(
        model=name, gpu=spec.name, num_gpus=gpus, concurrency=workload.batch,
        prompt_len=workload.prompt_len, new_tokens=workload.output_len,
        weight_format=structure.weight_format, architecture=structure.architecture,
        total_params=float(structure.total_params()), active_params=structure.active_params(),
        joules_per_token=joules, joules_per_request=joules * workload.output_len,
        power_w=cost.power_per_gpu_w * gpus, power_per_gpu_w=cost.power_per_gpu_w,
        tokens_per_s=tokens_per_s, seconds_per_step=seconds, breakdown=breakdown,
        per_layer=per_layer, features=step.features(),
        distance=distance_to_data(chosen, name, structure, step),
        warnings=warnings, notes=notes, provenance=provenance(chosen))


def check_fits(structure: ModelStructure, spec: GpuSpec, gpus: int) -> None:
    """ServingEstimateError saying why, when the weights alone do not fit in vLLM's share of
    the GPUs' memory (nothing that cannot run gets a number)."""
    need = structure.weight_bytes() / gpus
    room = MEMORY_FRACTION * spec.memory_bytes
    if need > room:
        raise ServingEstimateError(
            f"cannot run: the {structure.weight_format} weights alone need "
            f"{need / 1e9:.0f} GB per GPU on {gpus} × {spec.name}, more than vLLM's "
            f"{MEMORY_FRACTION:.0%} of its {spec.memory_bytes / 1e9:.0f} GB; use more GPUs "
            f"(--num-gpus {_enough_gpus(structure, spec)}) or a smaller weight format")


def _enough_gpus(structure: ModelStructure, spec: GpuSpec) -> int:
    need = structure.weight_bytes() / (MEMORY_FRACTION * spec.memory_bytes)
    return max(1, 2 ** math.ceil(math.log2(max(need, 1.0))))


def energy_breakdown(chosen: ServingModel, step: DecodeStep, cost: WorkCost) \
        -> tuple[dict[str, float], list[dict[str, Any]]]:
    """J per output token per module (plus ``communication`` and ``fixed overhead``: the
    runtime's per-step host time at idle draw), and per layer and module; the parts sum to
    the total. Modelled shares (see module)."""
    g, batch = float(step.parallel.gpus), step.workload.batch
    parts: dict[str, float] = {}
    for prim, c in cost.primitives:
        module = "communication" if prim.kind == "comm" else prim.name.removesuffix(" cache")
        parts[module] = parts.get(module, 0.0) + g * c.energy_j / batch
    fixed = cost.step.energy_j - sum(c.energy_j for _, c in cost.primitives)
    parts["fixed overhead"] = g * fixed / batch
    parts.setdefault("communication", 0.0)
    total = cost.joules_per_token
    assert abs(sum(parts.values()) - total) <= 1e-6 * max(total, 1e-12)
    return parts, _per_layer(chosen, step, parts)


def _per_layer(chosen: ServingModel, step: DecodeStep,
               parts: dict[str, float]) -> list[dict[str, Any]]:
    """Each layer's J/token per module: every module's total shared over layers in proportion
    to that layer's modelled energy for it (layer -1: embedding, head, final norm)."""
    layers = sorted({c.layer for c in step.costs})
    per: dict[int, dict[str, float]] = {}
    for layer in layers:
        costs = tuple(c for c in step.costs if c.layer == layer)
        one = DecodeStep(step.structure, step.workload, step.parallel, costs, 0, 0, 0, 0, 0)
        c = work_cost(one.work(), chosen.gpu, chosen.params, chosen.runtime)
        slot = per.setdefault(layer, {})
        for prim, pc in c.primitives:
            key = prim.name.removesuffix(" cache")
            slot[key] = slot.get(key, 0.0) + pc.energy_j
    sums = {m: sum(per[layer].get(m, 0.0) for layer in layers) for m in MODULES}
    out = []
    for layer in layers:
        entry: dict[str, Any] = {"layer": layer}
        for module in MODULES:
            if module in parts and sums[module] > 0 and per[layer].get(module, 0.0) > 0:
                entry[module] = float(parts[module] * per[layer][module] / sums[module])
        out.append(entry)
    return out


# --------------------------------------------------------------------------- distance

def distance_to_data(chosen: ServingModel, name: str, structure: ModelStructure,
                     step: DecodeStep) -> dict[str, Any]:
    """How the request compares with what the GPU was fitted on: whether the GPU and model
    were measured, the nearest measured model by parameters, each quantity against its range."""
    trained = chosen.trained
    active, total = structure.active_params(), float(structure.total_params())
    return {
        "gpu_measured": chosen.origin.startswith("fitted"),
        "model_measured": name in trained.get("models", []),
        "nearest_measured_model": _nearest_model(trained, structure),
        "architecture_measured": structure.architecture in trained.get("architectures", []),
        "format_measured": structure.weight_format in trained.get("formats", []),
        "active_params": active, "active_params_range": trained.get("active_params"),
        "total_params": total, "total_params_range": trained.get("total_params"),
        "batch": step.workload.batch, "batch_range": trained.get("batch"),
        "gpus": step.parallel.gpus, "gpus_range": trained.get("gpus"),
        "context": step.workload.context, "context_range": trained.get("context"),
    }


def _nearest_model(trained: dict[str, Any], structure: ModelStructure) -> dict[str, Any] | None:
    """The measured model closest in (log active, log total) parameters."""
    best: tuple[float, str, float, float] | None = None
    for model, (active, total) in trained.get("model_params", {}).items():
        d = math.hypot(math.log(structure.active_params() / active),
                       math.log(structure.total_params() / total))
        if best is None or d < best[0]:
            best = (d, model, active, total)
    if best is None:
        return None
    return {"model": best[1], "active_params_ratio": structure.active_params() / best[2],
            "total_params_ratio": structure.total_params() / best[3]}


def extrapolation_warnings(trained: dict[str, Any], name: str, structure: ModelStructure,
                           step: DecodeStep, spec: GpuSpec) -> list[str]:
    """One line per way the request leaves the measured data."""
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
    if trained and structure.architecture not in trained.get("architectures", []):
        out.append(f"architecture {structure.architecture!r} was not measured on {spec.name}")
    if trained and structure.weight_format not in trained.get("formats", []):
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


def provenance(chosen: ServingModel) -> dict[str, Any]:
    """Where the numbers come from: data, licence, citation, parameter file, fit origin."""
    hw = chosen.hardware
    return {"name": "; ".join(v.get("name", k) for k, v in sorted(hw.data.items())),
            "license": hw.to_dict()["license"],
            "attribution": hw.to_dict()["attribution"], "citation": hw.to_dict()["citation"],
            "predictor": hw.path, "fit": chosen.origin,
            "source": "; ".join(f"{k}: {v.get('source_commit', '?')}"
                                for k, v in sorted(hw.data.items())),
            "runtime": chosen.runtime.description,
            "prompt_tokens_assumed": dict(TASK_PROMPT_TOKENS),
            "fitted_vs_modelled": FITTED_VS_MODELLED}


