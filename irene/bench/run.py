"""Measure variants of one model side by side, under one protocol, on the same inputs.

For each variant (see :mod:`irene.bench.variants`), in order:

1. a private copy of the reference model (PyTorch eager, float32) is made — not timed;
2. **preparation**: the variant's recipe runs (export, compile, quantise, prune), timed in
   seconds and, with a meter, metered in joules: the optimisation's own cost;
3. **fidelity**: one inference on the fixed inputs, its logits compared with the reference's
   (:mod:`irene.bench.fidelity`);
4. **latency and energy**: :func:`irene.measure.measure_callable` under the protocol (warm-up
   calls excluded; ``runs`` windows; per-inference values are medians over runs, p10/p90 kept);
5. **peak memory** during step 4 (and during step 2, separately) above the usage before the
   copy (:mod:`irene.bench.memory`), and **size on disk** of the artefact the recipe saves.

One inference = one forward pass over a batch of ``batch_size`` sequences of ``seq_len`` tokens.
A variant that cannot run here (:class:`~irene.bench.variants.VariantUnavailable`) or fails gets
a row that says why, and the run goes on.
"""

from __future__ import annotations

import copy
import functools
import importlib.metadata
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from irene.bench import memory
from irene.bench.fidelity import compare_logits
from irene.bench.variants import (
    REFERENCE,
    VARIANTS,
    Prepared,
    VariantUnavailable,
    device_type,
)
from irene.checks import InputError
from irene.measure import Measurement, Meter, Protocol, measure_callable

#: files whose presence in a model directory means it holds real weights
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
#: the protocol ``irene bench`` uses unless told otherwise: 10 runs, median over runs
BENCH_PROTOCOL = Protocol(runs=10)


@dataclass
class VariantResult:
    """One row of the comparison. Units: seconds, joules, bytes; None where not measured.

    ``status``: ``"ok"``, ``"unavailable"`` (cannot run here; ``reason`` says why) or
    ``"failed"`` (raised an error; ``reason`` has it). ``prep_*``: the recipe's own cost.
    ``latency_*``: per inference (median, p10, p90 over runs). ``throughput_*``: sequences and
    tokens per second at the median latency. ``energy_*``: J per inference (None without a
    meter). ``peak_mem_bytes``: peak above the pre-copy usage while serving
    (``memory_method``: RSS or the CUDA allocator); ``prep_peak_mem_bytes``: the same during
    preparation. ``size_bytes``: the saved artefact on disk. Fidelity to the reference:
    ``top1_agreement`` (0..1), ``max/mean_abs_logit_diff`` (logits), ``kl_divergence`` (nats).
    """

    variant: str
    status: str
    summary: str = ""
    reason: str | None = None
    engine: str | None = None
    dtype: str | None = None
    prep_time_s: float | None = None
    prep_energy_j: float | None = None
    prep_energy_trusted: bool | None = None
    size_bytes: int | None = None
    peak_mem_bytes: int | None = None
    prep_peak_mem_bytes: int | None = None
    memory_method: str | None = None
    latency_s: float | None = None
    latency_p10_s: float | None = None
    latency_p90_s: float | None = None
    throughput_seq_s: float | None = None
    throughput_tok_s: float | None = None
    energy_j: float | None = None
    energy_p10_j: float | None = None
    energy_p90_j: float | None = None
    energy_trusted: bool | None = None
    repeats: int | None = None
    top1_agreement: float | None = None
    max_abs_logit_diff: float | None = None
    mean_abs_logit_diff: float | None = None
    kl_divergence: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BenchRun:
    """A whole comparison: what was measured, how, where, and one result per variant."""

    model: str
    weights: str
    model_class: str
    num_parameters: int
    batch_size: int
    seq_len: int
    device: str
    threads: int
    meter: str
    protocol: dict[str, Any]
    environment: dict[str, Any]
    results: list[VariantResult]
    warnings: list[str] = field(default_factory=list)

    @property
    def has_energy(self) -> bool:
        """True when a meter measured energy (some row has ``energy_j``)."""
        return any(r.energy_j is not None for r in self.results)

    @property
    def simulated(self) -> bool:
        """True when the energies come from the simulated test meter, not hardware."""
        return "simulated" in self.meter.split("+")

    def header(self) -> dict[str, Any]:
        """Everything but the results: the settings every row shares."""
        data = asdict(self)
        data.pop("results")
        return data

    def to_dict(self) -> dict[str, Any]:
        return {**self.header(), "results": [r.to_dict() for r in self.results]}

    @classmethod
    def from_dict(cls, data: Any) -> BenchRun:
        """Inverse of :meth:`to_dict` (the JSON ``irene bench --json`` prints); ValueError
        naming the first field of the wrong kind."""
        if not isinstance(data, dict) or not isinstance(data.get("results"), list):
            raise ValueError("not an irene bench run: expected an object with 'results'")
        known = {f.name: f for f in fields(cls)}
        missing = [name for name in known if name not in data and
                   known[name].default is MISSING and known[name].default_factory is MISSING]
        if missing:
            raise ValueError(f"missing field(s) {missing}")
        header = {k: v for k, v in data.items() if k in known and k != "results"}
        for name, kind in (("model", str), ("meter", str), ("device", str),
                           ("protocol", dict), ("environment", dict)):
            if not isinstance(header.get(name), kind):
                raise ValueError(f"field {name!r} must be a {kind.__name__}")
        results = []
        names = {f.name for f in fields(VariantResult)}
        for i, row in enumerate(data["results"]):
            if not isinstance(row, dict) or not isinstance(row.get("variant"), str) or \
                    row.get("status") not in ("ok", "unavailable", "failed"):
                raise ValueError(f"results[{i}]: not a variant result")
            for key, value in row.items():
                if isinstance(value, float) and not math.isfinite(value):
                    raise ValueError(f"results[{i}].{key}: not a finite number")
            results.append(VariantResult(**{k: v for k, v in row.items() if k in names}))
        return cls(**header, results=results)

    def rows(self) -> list[dict[str, Any]]:
        """One flat dict per variant: the settings, then the result's fields."""
        head = {k: v for k, v in self.header().items()
                if k not in ("protocol", "environment", "warnings")}
        head["runs"] = self.protocol.get("runs")
        timing = self.environment.get("timing_conditions") or {}
        head["load_before"], head["load_after"] = timing.get("load_before"), \
            timing.get("load_after")
        return [{**head, **r.to_dict()} for r in self.results]


# --------------------------------------------------------------------------------------------
# the model


class BenchModelError(InputError):
    """The model cannot be benchmarked (unknown name, no language-model head, ...)."""


def has_weights(path: Path) -> bool:
    """True when ``path`` is a directory holding a transformers checkpoint's weights."""
    return path.is_dir() and any((path / name).is_file() for name in WEIGHT_FILES)


def lm_class(config: Any) -> type:
    """The transformers auto class with a language-model head for ``config``
    (:func:`irene.tracing.registry.lm_head_class`). The bench compares logits, so a model
    without such a head, or an encoder-decoder, is refused (:class:`BenchModelError`)."""
    from irene.tracing.registry import lm_head_class

    if getattr(config, "is_encoder_decoder", False):
        raise BenchModelError(f"{config.model_type}: encoder-decoder models are not benchmarked "
                              "yet (the bench runs one forward pass over input_ids)")
    try:
        return lm_head_class(config)
    except ValueError as exc:
        raise BenchModelError(f"{exc}; the bench compares logits") from None


def load_model(name_or_path: str, *, device: str = "cpu",
               seed: int = 0) -> tuple[nn.Module, str]:
    """The reference model (float32, eager attention, eval mode, no KV cache) with its LM head,
    and where its weights come from.

    A local directory with weights (:data:`WEIGHT_FILES`) is loaded with ``from_pretrained``
    (local files only, never a download); anything else (a built-in name, a directory or
    ``config.json`` without weights) is built from its config with random weights drawn with
    ``seed``. Nothing is looked up on the Hub.
    """
    from irene.tracing.registry import UnknownModelError, check_weights_fit, load_config

    path = Path(name_or_path).expanduser()
    try:
        config = load_config(name_or_path, hub=False)
    except UnknownModelError as exc:
        raise BenchModelError(str(exc)) from exc
    config.use_cache = False
    cls = lm_class(config)
    check_weights_fit(config, 4, name_or_path)
    if has_weights(path):
        model, info = _load_weights(cls, path, config)
        missing = list(info.get("missing_keys") or [])
        weights = f"weights from {path}"
        if missing:
            weights += f" ({len(missing)} tensors not in the checkpoint, random: " \
                       f"{', '.join(sorted(missing)[:3])}{', ...' if len(missing) > 3 else ''})"
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls.from_config(config, attn_implementation="eager")
        weights = f"random weights (seed {seed}): fidelity compares functions, not task accuracy"
    model = model.to(device=device, dtype=torch.float32).eval()
    return model, weights


def _load_weights(cls: Any, path: Path, config: Any) -> tuple[nn.Module, dict[str, Any]]:
    """``cls.from_pretrained`` of a local directory; BenchModelError (one line) when the weights
    cannot be loaded: a corrupt safetensors file, wrong shapes, or a pickled ``.bin`` holding
    more than tensors (read with ``torch.load(weights_only=True)``: refused, nothing in it
    runs). The loader's warnings are shown only when the load succeeds."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            loaded = cls.from_pretrained(str(path), config=config, local_files_only=True,
                                         attn_implementation="eager", dtype=torch.float32,
                                         trust_remote_code=False, output_loading_info=True)
        except Exception as exc:  # transformers, safetensors and torch raise many kinds
            text = " ".join(str(exc).split()) or type(exc).__name__
            if "weights_only" in text or "Weights only load failed" in text:
                text = ("a pickled checkpoint holding more than tensors: refused, nothing in it "
                        "was run (convert it to safetensors)")
            raise BenchModelError(f"{path}: the weights cannot be loaded: {text[:300]}") \
                from exc
    for item in caught:
        warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
    return loaded


def make_bench_inputs(model: nn.Module, batch_size: int, seq_len: int) -> dict[str, Any]:
    """The fixed inputs every variant gets: random token ids (seed 0), ``use_cache=False``."""
    from irene.tracing.registry import make_inputs

    return make_inputs(model, batch_size, seq_len, seed=0)


def reference_logits(model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
    """The reference model's logits on ``inputs`` (float32, on the CPU)."""
    with torch.inference_mode():
        return model(**inputs).logits.float().cpu()


# --------------------------------------------------------------------------------------------
# one variant


def directory_size(path: Path) -> int:
    """Bytes of every file under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def artefact_size(prepared: Prepared) -> int:
    """Bytes on disk of what ``prepared.save`` writes (into a temporary directory)."""
    with tempfile.TemporaryDirectory(prefix="irene-bench-size-") as tmp:
        prepared.save(Path(tmp))
        return directory_size(Path(tmp))


def _sync(device: str) -> Callable[[], None] | None:
    if device_type(device) == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _timed_prepare(prepare: Callable[[], Prepared], meter: Meter | None,
                   sync: Callable[[], None] | None) -> tuple[Prepared, float, Any]:
    """Run ``prepare`` inside a meter window (when given); (prepared, seconds, window result)."""
    if meter is None:
        t0 = time.perf_counter()
        prepared = prepare()
        if sync is not None:
            sync()
        return prepared, time.perf_counter() - t0, None
    with meter.window() as window:
        t0 = time.perf_counter()
        prepared = prepare()
        if sync is not None:
            sync()
        seconds = time.perf_counter() - t0
    return prepared, seconds, window.result


def _fill_measurement(result: VariantResult, m: Measurement, batch_size: int,
                      seq_len: int) -> None:
    result.latency_s, result.latency_p10_s, result.latency_p90_s = m.time_s, m.time_p10, \
        m.time_p90
    result.throughput_seq_s = batch_size / m.time_s if m.time_s > 0 else None
    result.throughput_tok_s = batch_size * seq_len / m.time_s if m.time_s > 0 else None
    result.repeats = m.repeats
    if m.energy_j is not None:
        result.energy_j, result.energy_p10_j, result.energy_p90_j = m.energy_j, m.energy_p10, \
            m.energy_p90
        result.energy_trusted = m.trusted
        result.notes.extend(f"energy: {n}" for n in m.notes)


def run_variant(name: str, model: nn.Module, inputs: dict[str, Any], reference: torch.Tensor,
                *, device: str, protocol: Protocol, meter: Meter | None = None,
                batch_size: int, seq_len: int) -> VariantResult:
    """Prepare and measure one variant of ``model`` (left untouched); see the module docstring.

    Never raises for the variant's own failures: they become a row with ``status``
    ``"unavailable"`` or ``"failed"`` and the reason.
    """
    variant = VARIANTS[name]
    result = VariantResult(variant=name, status="ok", summary=variant.summary)
    sync = _sync(device)
    prepared: Prepared | None = None
    memory.release_memory(device)
    base = memory.baseline(device)
    try:
        private = copy.deepcopy(model)
        with memory.track_peak(device, base) as prep_peak:
            prepared, result.prep_time_s, window = _timed_prepare(
                functools.partial(variant.prepare, private, inputs, device), meter, sync)
        del private
        memory.release_memory(device)
        result.engine, result.dtype = prepared.engine, prepared.dtype
        result.notes.extend(prepared.notes)
        if window is not None:
            result.prep_energy_j, result.prep_energy_trusted = window.total_j, window.trusted
        fidelity = compare_logits(reference, prepared.run())
        memory.release_memory(device)
        with memory.track_peak(device, base) as run_peak:
            measurement = measure_callable(prepared.run, meter=meter, protocol=protocol,
                                           sync=sync)
        result.prep_peak_mem_bytes = prep_peak.delta_bytes
        result.peak_mem_bytes, result.memory_method = run_peak.delta_bytes, run_peak.method
        for key, value in fidelity.to_dict().items():
            if hasattr(result, key):
                setattr(result, key, value)
        _fill_measurement(result, measurement, batch_size, seq_len)
        try:
            result.size_bytes = artefact_size(prepared)
        except Exception as exc:  # noqa: BLE001 - reported in the row, the run goes on
            result.notes.append(f"size on disk unknown: saving failed ({_one_line(exc)})")
    except VariantUnavailable as exc:
        return VariantResult(variant=name, status="unavailable", summary=variant.summary,
                             reason=str(exc))
    except Exception as exc:  # noqa: BLE001 - a failing variant is a row, not a crash
        return VariantResult(variant=name, status="failed", summary=variant.summary,
                             reason=_one_line(exc), notes=result.notes)
    finally:
        if prepared is not None and prepared.cleanup is not None:
            prepared.cleanup()
        prepared = None
        memory.release_memory(device)
    return result


# --------------------------------------------------------------------------------------------
# the whole comparison


def environment(device: str) -> dict[str, Any]:
    """Versions, processor, GPU and load: what a reader needs to judge the timings."""
    import transformers

    env: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__,
        "transformers": transformers.__version__, "platform": platform.platform(),
        "processor": _cpu_name(), "cpu_count": os.cpu_count(),
    }
    for package in ("onnxruntime", "onnxruntime-gpu", "onnx", "onnxscript", "openvino"):
        try:  # the installed version, without importing the (slow to import) package
            env[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            env[package] = None
    if device_type(device) == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_bench(model: str, variants: Sequence[str], *, batch_size: int = 1, seq_len: int = 128,
              device: str = "cpu", protocol: Protocol | None = None, meter: Meter | None = None,
              progress: Callable[[Iterable[str]], Iterable[str]] | None = None) -> BenchRun:
    """Measure ``variants`` of ``model`` side by side (see the module docstring).

    ``variants``: names from :data:`~irene.bench.variants.VARIANTS`; the reference (``eager``)
    is measured first whether named or not. ``protocol.threads`` sets torch's CPU threads for
    the whole run (None: 1 on a CPU, as for every timing in irene; ONNX Runtime and OpenVINO
    get the same number); the load before and after is recorded and a busy machine or a wide
    spread is warned about (:mod:`irene.measure.conditions`). Raises
    :class:`BenchModelError` for a model that cannot be benchmarked and ValueError for bad
    sizes (a sequence longer than the model's positions, ...).
    """
    from irene.measure.conditions import timing_conditions

    protocol = protocol if protocol is not None else BENCH_PROTOCOL
    names = [REFERENCE, *(v for v in dict.fromkeys(variants) if v != REFERENCE)]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    env = environment(device)
    reference_model, weights = load_model(model, device=device)
    inputs = make_bench_inputs(reference_model, batch_size, seq_len)
    on_cpu = device_type(device) == "cpu"
    with timing_conditions(protocol.threads, on_cpu=on_cpu) as conditions, \
            memory.frozen_heap():
        reference = reference_logits(reference_model, inputs)
        results = [run_variant(name, reference_model, inputs, reference, device=device,
                               protocol=protocol, meter=meter, batch_size=batch_size,
                               seq_len=seq_len)
                   for name in (progress(names) if progress is not None else names)]
    for r in results:
        if r.ok and r.latency_s is not None:
            conditions.check_spread(r.latency_s, r.latency_p10_s, r.latency_p90_s, r.variant)
    env["timing_conditions"] = conditions.to_dict()
    return BenchRun(
        model=model, weights=weights, model_class=type(reference_model).__name__,
        num_parameters=sum(p.numel() for p in reference_model.parameters()),
        batch_size=batch_size, seq_len=seq_len, device=device, threads=conditions.threads,
        meter=meter.name if meter is not None else "none", protocol=protocol.to_dict(),
        environment=env, results=results, warnings=list(conditions.warnings))
