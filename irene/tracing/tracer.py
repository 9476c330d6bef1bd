"""``trace_model``: one model at one (batch size, sequence length) -> one IrEne tree.

The traced call is a forward pass (``phase="forward"``, the default), a prefill or a decode step
(:mod:`irene.tracing.generation`); the root records ``phase`` and ``context_len``.

Features-only traces (``timing=False``) of a model given by name run on the meta device (no
weights, no arithmetic; :mod:`irene.tracing.meta`) and record ``meta["traced_on"] = "meta"``;
``meta["device"]`` stays the device the tree is meant for. Timed traces run on real weights.
"""

from __future__ import annotations

import platform
import time
import warnings
from typing import TYPE_CHECKING, Any

import torch

from irene.measure import MeasurementCache, Meter, Protocol, measurement_metadata
from irene.measure.conditions import TimingConditions, timing_conditions
from irene.measure.environment import cpu_model, environment_metadata
from irene.measure.sampler import Sampler
from irene.schema import DEFAULT_SCHEMA, ENERGY_FIELDS, MFLOP, supplied_features, units
from irene.tracing.build import build_tree, measure_records, prune
from irene.tracing.capture import ForwardCapture
from irene.tracing.flops import FLOP_CONVENTION
from irene.tracing.generation import Step, phase_units, prepare_step
from irene.tracing.meta import (
    META_SUBSTITUTES,
    MetaTraceError,
    is_on_meta,
    is_value_dependent_error,
    meta_shims,
)
from irene.tracing.registry import build_model, torch_dtype
from irene.tracing.schemas import TraceSchema, trace_rules
from irene.tree import Tree, TreeKey, tree_key
from irene.workload import Workload, device_problem, replay_problem

if TYPE_CHECKING:
    from transformers import PreTrainedModel

#: how FLOPs and bytes are counted, recorded with the units of every tree, per schema
COUNTING = {
    "irene": {"flops": f"MFLOP (1e6 FLOPs) per forward call; {FLOP_CONVENTION}",
              "mem_bytes": "MiB (2^20 bytes) of the inputs, outputs and parameters each "
                           "primitive call reads or writes; modules and the model: sum over "
                           "their leaves"},
    "irene2021": {"flops": "MFLOP (1e6 FLOPs) per forward call, counted per operation as "
                           "IrEne's graph extractor did (irene.tracing.schemas."
                           "irene2021_call_cost); a module: its own direct calls plus its "
                           "children",
                  "mem_bytes": "MiB (2^20 bytes) per forward call, counted per operation as "
                               "IrEne's graph extractor did; a module: its own direct calls "
                               "plus its children"},
}


def _prepare(model: str | PreTrainedModel, *, device: str, dtype: str, attn: str,
             hub: bool) -> PreTrainedModel:
    """The model to trace on ``device`` (``"meta"``: built or kept without weights)."""
    if isinstance(model, str):
        return build_model(model, attn=attn, dtype=dtype, device=device, hub=hub)
    if is_on_meta(model):
        device = "meta"
    model = model.to(device=device, dtype=torch_dtype(dtype))
    model.eval()
    model.config.use_cache = False
    current = getattr(model.config, "_attn_implementation", None)
    if current is not None and current != attn:
        model.set_attn_implementation(attn)
    return model


def device_sync(device: str) -> Any:
    if device.startswith("cuda"):
        return torch.cuda.synchronize
    return None


def describe_device(device: str) -> str:
    """The hardware a tree speaks for: the GPU's name, or the CPU model (``/proc/cpuinfo``),
    so trees of two CPU hosts are told apart."""
    if device.startswith("cuda"):
        if torch.cuda.is_available():
            return torch.cuda.get_device_name(torch.device(device))
        return "unknown CUDA device (not present where traced)"
    return cpu_model() or platform.processor() or platform.machine()


def _units(phase: str, schema: TraceSchema) -> dict[str, str]:
    """The tree's ``units``: the schema's, with what one call is for a prefill or decode."""
    out = {**units(), **COUNTING[schema.name]}
    overrides = phase_units(phase)
    if overrides:
        call = overrides.pop("call")
        out["flops"] = f"MFLOP (1e6 FLOPs) per call = {call}; {FLOP_CONVENTION}"
        out.update(overrides)
        out.update({name: f"J per call = {call}" for name in ENERGY_FIELDS})
    return out


def trace_metadata(model: PreTrainedModel, *, device: str, dtype: str, attn: str, timing: bool,
              meter: Meter | None, protocol: Protocol, sampler: Sampler | None,
              counted_flops: int, cache: MeasurementCache | None, seconds: float,
              schema: TraceSchema, traced_on: str,
              conditions: dict[str, Any] | None, phase: str = "forward",
              context_len: int = 0) -> dict:
    import transformers

    from irene import __version__

    gpu_sampled = sampler is not None and sampler.gpu is not None
    available, unavailable = supplied_features(timing=timing, gpu_sampled=gpu_sampled)
    meta: dict[str, Any] = {
        "schema": schema.record,
        "phase": phase,
        "context_len": context_len,
        "device": device,
        "traced_on": traced_on,
        "device_name": describe_device(device),
        "dtype": dtype,
        "attn": attn,
        "architecture": type(model).__name__,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "created_by": f"irene {__version__}",
        "units": _units(phase, schema),
        "features_available": available,
        "features_unavailable": unavailable,
        "flops_counted": counted_flops / MFLOP,
        "trace_seconds": round(seconds, 3),
        "environment": environment_metadata(device),
    }
    if timing:  # meter, its domains, leaky features, protocol, dedup counts
        idle = meter.idle_power_w(protocol.idle_seconds) if (meter is not None and
                                                            protocol.subtract_idle) else None
        meta.update(measurement_metadata(meter, protocol, cache=cache, idle_power_w=idle))
        meta["timing_conditions"] = conditions
    else:
        meta.update(meter="none", protocol=None)
    return meta


def planned_key(model_name: str, workload: Workload, *, schema: str, timing: bool,
                meter: Meter | None, protocol: Protocol) -> TreeKey:
    """The :class:`~irene.tree.TreeKey` the tree of ``workload`` traced with these settings
    will have (for resuming a sweep without tracing again)."""
    meta: dict[str, Any] = {"schema": trace_rules(schema).record, "phase": workload.phase,
                            "context_len": workload.context_len, "device": workload.device,
                            "device_name": describe_device(workload.device),
                            "dtype": workload.dtype, "attn": workload.attn}
    if workload.optimizer is not None:
        meta["optimizer"] = workload.optimizer
    if timing:
        meta.update(measurement_metadata(meter, protocol))
    else:
        meta.update(meter="none", protocol=None)
    return tree_key(model_name, workload.batch_size, workload.seq_len, meta)


def name_of(model: Any) -> str:
    """A tree's ``model_name`` for ``model``: the name given, else its ``name_or_path``."""
    if isinstance(model, str):
        return model
    return getattr(model, "name_or_path", None) or getattr(
        getattr(model, "config", None), "name_or_path", None) or type(model).__name__


def check_host(device: str, *, metered: bool, timing: bool) -> None:
    """ValueError when this host cannot run the trace: a meter without the replays
    (:func:`irene.workload.replay_problem`), or replays on a CUDA device torch does not see
    (:func:`irene.workload.device_problem`)."""
    problem = replay_problem(metered, timing)
    if problem:
        raise ValueError(f"{problem}: drop --no-timing (timing=False)")
    problem = device_problem(device) if timing else None
    if problem:
        raise ValueError(f"device {device!r}: {problem}")


def trace_model(model: str | PreTrainedModel, batch_size: int, seq_len: int, *,
                device: str = "cpu", dtype: str = "float32", attn: str = "eager",
                timing: bool = True, meter: Meter | None = None,
                protocol: Protocol | None = None, progress: bool = False,
                model_name: str | None = None, hub: bool = True,
                cache: MeasurementCache | None = None, seed: int = 0,
                schema: str | TraceSchema = DEFAULT_SCHEMA, phase: str = "forward",
                context_len: int = 0) -> Tree:
    """Trace ``model`` on random token ids of shape (batch_size, seq_len) into an IrEne tree.

    ``model``: a built-in name, local path or Hub name (see :mod:`irene.tracing.registry`), or a
    ``transformers`` model (moved to ``device``/``dtype`` and put in eval mode; a model on the
    meta device stays there). The tree's ``model_name`` is ``model_name``, else the name given,
    else the model's ``name_or_path``. ``timing``: replay every node alone under ``protocol``
    (default ``Protocol()``) for ``times_mean`` and utilisation; with ``meter`` also
    ``ground_truth_energy`` (J). Identical nodes are measured once when ``protocol.dedup``
    (``cache`` may be shared between calls). ``progress`` shows a tqdm bar over the replays.
    Without ``timing``, a model given by name is built and traced on the meta device (no weights
    in memory, same features); ``meta["traced_on"]`` says where it ran. ``schema``: ``"irene"``
    (ours) or ``"irene2021"`` (IrEne's leaves and feature definitions,
    :mod:`irene.tracing.schemas`). Features are described in :mod:`irene.tracing.build`. CPU
    replays run on ``protocol.threads`` threads (default 1) and the tree records the load
    (``timing_conditions``); doubtful timings are reported as warnings. ``phase``:
    ``"forward"`` (one pass over ``seq_len`` tokens, no KV cache), ``"prefill"`` (the same pass
    writing a KV cache that already holds ``context_len`` tokens, default none) or ``"decode"``
    (``seq_len`` = 1 new token per sequence attending to ``context_len`` cached tokens); see
    :mod:`irene.tracing.generation`.
    """
    start = time.perf_counter()
    rules = trace_rules(schema)
    if attn not in rules.attention:
        raise ValueError(f"schema {rules.name} describes {' or '.join(rules.attention)} "
                         f"attention only, not {attn!r}")
    check_host(device, metered=meter is not None, timing=timing)
    if timing and not isinstance(model, str) and is_on_meta(model):
        raise ValueError("a model on the meta device has no weights to replay: give it with "
                         "weights, or trace features only (timing=False)")
    protocol = protocol if protocol is not None else Protocol()
    name = model_name or name_of(model)
    on_meta = not timing and (isinstance(model, str) or is_on_meta(model))
    if not on_meta:
        check_host(device, metered=False, timing=True)
    built = _prepare(model, device="meta" if on_meta else device, dtype=dtype, attn=attn,
                     hub=hub)
    try:
        step = _prepare_step(built, phase, batch_size, seq_len, context_len, seed=seed,
                             on_meta=on_meta)
        capture = _capture(built, step, record_inputs=timing, dedup=protocol.dedup,
                           schema=rules, on_meta=on_meta)
    except MetaTraceError as exc:
        if not isinstance(model, str) or device_problem(device):
            raise ValueError(str(exc)) from exc
        warnings.warn(f"{name}: {exc}; tracing with real weights on {device} instead",
                      RuntimeWarning, stacklevel=2)
        on_meta = False
        built = _prepare(model, device=device, dtype=dtype, attn=attn, hub=hub)
        step = prepare_step(built, phase, batch_size, seq_len, context_len, seed=seed)
        capture = _capture(built, step, record_inputs=False, dedup=protocol.dedup,
                           schema=rules, on_meta=False)
    step.check_written(seq_len, name)
    root = capture.root
    if root is None or not prune(root):
        raise ValueError(f"{name}: the forward pass ran no primitive that could be traced")

    measurements = sampler = conditions = None
    if timing:
        cache = cache if cache is not None else MeasurementCache(enabled=protocol.dedup)
        try:
            measurements, sampler, conditions = timed_measurements(
                lambda cache, sampler, bar: measure_records(
                    list(root.walk()), meter=meter, protocol=protocol, cache=cache,
                    sampler=sampler, sync=device_sync(device), progress=bar),
                root_id=id(root), what=f"{name} {batch_size}x{seq_len} (whole model)",
                device=device, protocol=protocol, cache=cache,
                progress=replay_progress_bar(name, batch_size, seq_len) if progress else None)
        finally:
            step.restore()
    meta = trace_metadata(built, device=device, dtype=dtype, attn=attn, timing=timing, meter=meter,
                     protocol=protocol, sampler=sampler, counted_flops=capture.counted_flops,
                     cache=cache if timing else None, seconds=time.perf_counter() - start,
                     schema=rules, traced_on="meta" if on_meta else device,
                     conditions=conditions.to_dict() if conditions is not None else None,
                     phase=phase, context_len=context_len)
    return build_tree(root, model_name=name, batch_size=batch_size, seq_len=seq_len,
                      measurements=measurements, meta=meta)


def _prepare_step(model: PreTrainedModel, phase: str, batch_size: int, seq_len: int,
                  context_len: int, *, seed: int, on_meta: bool) -> Step:
    """The inputs (and KV cache) of the traced call; on meta, the value-dependent helpers it
    runs are answered as for our inputs, and any other raises :class:`MetaTraceError`."""
    try:
        with torch.no_grad(), meta_shims():
            return prepare_step(model, phase, batch_size, seq_len, context_len, seed=seed)
    except (RuntimeError, NotImplementedError) as exc:
        if on_meta and is_value_dependent_error(exc):
            raise MetaTraceError(f"preparing the {phase} step reads tensor values, which the "
                                 f"meta device does not have ({exc})") from exc
        raise


def timed_measurements(measure: Any, *, root_id: int, what: str, device: str,
                       protocol: Protocol, cache: MeasurementCache,
                       progress: Any) -> tuple[dict[int, Any], Sampler, TimingConditions]:
    """Run ``measure(cache, sampler, progress)`` (the replays of one tree) with the sampler open,
    on the protocol's threads, recording the load; warn when the load or the whole tree's
    run-to-run spread (``root_id``'s measurement; ``what`` names it) makes the timing doubtful.
    Returns (measurements by record id, the sampler, the timing conditions)."""
    sampler = Sampler.create(gpu=None if device.startswith("cuda") else False)
    try:
        with timing_conditions(protocol.threads,
                               on_cpu=not device.startswith("cuda")) as conditions:
            measurements = measure(cache, sampler, progress)
    finally:
        sampler.close()
    whole = measurements[root_id]
    conditions.check_spread(whole.time_s, whole.time_p10, whole.time_p90, what)
    for text in conditions.warnings:
        warnings.warn(text, stacklevel=3)
    return measurements, sampler, conditions


def _capture(model: PreTrainedModel, step: Step, *, record_inputs: bool, dedup: bool,
             schema: TraceSchema, on_meta: bool) -> ForwardCapture:
    """Run the step's call of ``model`` under a :class:`ForwardCapture` and return it.

    The value-dependent helpers of :mod:`irene.tracing.meta` are answered for our inputs on
    every device, so real and meta traces run the same code; on meta any other value-dependent
    op raises :class:`MetaTraceError`.
    """
    capture = ForwardCapture(model, record_inputs=record_inputs, dedup=dedup, schema=schema,
                             substitutes=META_SUBSTITUTES if on_meta else None)
    try:
        with torch.no_grad(), meta_shims(), capture, step.observing(capture):
            model(**step.inputs)
    except (RuntimeError, NotImplementedError) as exc:
        if on_meta and is_value_dependent_error(exc):
            raise MetaTraceError(f"the forward pass reads tensor values, which the meta "
                                 f"device does not have ({exc})") from exc
        raise
    return capture


def replay_progress_bar(name: str, batch_size: int, seq_len: int) -> Any:
    from tqdm import tqdm

    def wrap(items: list) -> Any:
        return tqdm(items, desc=f"replay {name} {batch_size}x{seq_len}", unit="node",
                    leave=False)
    return wrap
