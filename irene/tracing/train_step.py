"""``trace_train_step``: one training step (forward, loss, backward, optimiser step) as one tree.

The tree (``meta["phase"] = "train"``, ``meta["optimizer"]`` = ``"adamw"`` or ``"sgd"``)::

    step        model    TrainingStep             the whole step
    ├─ forward   module   BertForMaskedLM          the forward pass with the loss (the forward
    │                                              tree of irene.tracing.tracer, scopes forward.*)
    ├─ backward  module   BertForMaskedLM          the same modules and primitives, backward.*;
    │                                              a primitive's leaf is <Type>Backward
    └─ optimizer module   AdamW                    the parameters' modules, optimizer.*; one
                                                   <Optimizer>Update leaf per parameter tensor

**The loss.** A base model has no loss, and training without the head that produces one would
leave out a large part of a real step (for BERT at 8×128 the masked-LM head's vocabulary
projection is a fifth of the forward FLOPs). So the step trains the model *with its language
modelling head*: ``AutoModelForMaskedLM`` for encoders that have one (BERT, RoBERTa,
DistilBERT), else ``AutoModelForCausalLM`` (GPT-2, Llama, ...), with ``labels = input_ids`` and
the head's own cross-entropy (the causal head shifts the labels by one). A masked-LM step
normally predicts 15 % of the tokens, but the head computes the logits and log-softmax of every
token either way, so its cost is that of labelling all of them. Dropout is off (the model is in
eval mode, as for the forward trees; large-model pre-training uses none), so a step is
deterministic work. The weights are random (the cost does not depend on them) and are updated
by the traced step.

**FLOPs.** Forward FLOPs as in :mod:`irene.tracing.flops`; backward FLOPs per primitive as
:mod:`irene.tracing.train_capture` attributes them (every autograd node belongs to the
primitive whose call created it; formulas for the fused backward kernels in
:mod:`irene.tracing.backward_flops`); the optimiser's per-parameter FLOPs counted on its
single-tensor (for-loop) implementation, which does the same arithmetic as the multi-tensor
one: AdamW ``11·n + 1`` and SGD with momentum ``3·n`` for a tensor of ``n`` elements. A
module's own operations outside any primitive that do backward arithmetic (an ``expand``'s
gradient is a sum) form a backward-only ``Other`` leaf under that module. The leaves add up to
the root exactly.

**mem_bytes.** Forward leaves as in :mod:`irene.tracing.build`; a backward leaf: the gradients of
its outputs, its inputs and parameters (saved for backward) and the gradients it writes, each
distinct tensor once per call; an optimiser leaf: the parameter, its gradient and its optimiser
state (each once).

**Replays** (``timing=True``): every node is replayed alone under the measurement protocol, as
:mod:`irene.tracing.train_replay` describes (backward nodes: the forward recomputed on the
recorded inputs, then ``torch.autograd.grad`` with the recorded output gradients), with what
cannot be isolated.

Features-only traces (``timing=False``) run on PyTorch's ``meta`` device: shapes only, nothing
computed or allocated, so a step of a large model is traced in seconds; the tree records the
device asked for. With ``attn="sdpa"`` the meta device runs SDPA's math path, whose counted FLOPs
differ slightly from the fused CPU/GPU kernel's.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from irene.measure import MeasurementCache, Meter, Protocol
from irene.schema import DEFAULT_SCHEMA, MFLOP
from irene.tracing.backward_flops import BACKWARD_FLOP_CONVENTION, training_flop_counter_mode
from irene.tracing.build import build_tree, prune
from irene.tracing.capture import Record, signature_of
from irene.tracing.flops import FLOP_CONVENTION, tensor_bytes
from irene.tracing.meta import meta_shims
from irene.tracing.optimizers import (
    DEFAULT_OPTIMIZER,
    OptimizerSpec,
    get_optimizer,
    trained_parameters,
)
from irene.tracing.registry import load_config, torch_dtype
from irene.tracing.schemas import trace_rules
from irene.tracing.train_capture import BackwardAttribution, TracedStep, TrainingCapture
from irene.tree import Tree

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel

PHASE = "train"
#: the three passes of a step, in tree order (also the scope of each pass's node)
PASSES = ("forward", "backward", "optimizer")
STEP_SCOPE = "step"
STEP_TYPE = "TrainingStep"
BACKWARD_SUFFIX = "Backward"
#: how FLOPs are counted in a training-step tree (the tree's ``units`` metadata)
TRAIN_FLOPS_UNIT = (f"MFLOP (1e6 FLOPs) per training step; forward: {FLOP_CONVENTION}; "
                    f"{BACKWARD_FLOP_CONVENTION}; optimiser: its single-tensor implementation "
                    "counted")


# --------------------------------------------------------------------------------------------
# optimisers


# --------------------------------------------------------------------------------------------
# the model with its language-modelling head


def _loss_head_class(config: PretrainedConfig) -> Any:
    """The auto class whose head gives the training step its loss (ValueError without one)."""
    from irene.tracing.registry import lm_head_class

    try:
        return lm_head_class(config)
    except ValueError as exc:
        raise ValueError(f"{exc}: a training step needs one for its loss") from None


def build_training_model(name_or_config: str | PretrainedConfig, *, attn: str = "eager",
                         dtype: str | torch.dtype = "float32", device: str = "cpu",
                         hub: bool = True, seed: int = 0) -> PreTrainedModel:
    """The model of ``name_or_config`` with its language-modelling head (see the module doc),
    random weights (``seed``), in eval mode (no dropout), on ``device`` (``"meta"``: shapes
    only) and ``dtype``, every parameter requiring gradients."""
    from irene.schema import ATTN_IMPLEMENTATIONS
    from irene.tracing.registry import check_config, check_weights_fit

    if attn not in ATTN_IMPLEMENTATIONS:
        raise ValueError(f"attn must be one of {', '.join(ATTN_IMPLEMENTATIONS)}, got {attn!r}")
    config = load_config(name_or_config, hub=hub) if isinstance(name_or_config, str) \
        else copy.deepcopy(name_or_config)
    where = name_or_config if isinstance(name_or_config, str) else config.model_type
    check_config(config, where)
    if device != "meta":  # weights, gradients and two optimiser states
        check_weights_fit(config, 4 * torch.empty((), dtype=torch_dtype(dtype)).element_size(),
                          where)
    config.use_cache = False
    head = _loss_head_class(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if device == "meta":
            with torch.device("meta"):
                model = head.from_config(config, attn_implementation=attn)
        else:
            model = head.from_config(config, attn_implementation=attn)
    model = model.to(device=device, dtype=torch_dtype(dtype))
    return _ready(model, name_or_config if isinstance(name_or_config, str) else None,
                  train_all=True)


def _ready(model: PreTrainedModel, name: str | None, *, train_all: bool) -> PreTrainedModel:
    """Eval mode (no dropout), no KV cache; ``train_all``: every parameter requires gradients
    (a model given by the caller keeps its frozen parameters frozen)."""
    model.eval()
    model.config.use_cache = False
    if type(model).__name__.endswith(("ForCausalLM", "LMHeadModel")):
        model.loss_type = "ForCausalLM"  # GPT-2-style class names: silence the guess warning
    if train_all:
        for param in model.parameters():
            param.requires_grad_(True)
    if name is not None:
        model.config.name_or_path = name
    return model


def has_lm_head(model: nn.Module) -> bool:
    """Whether ``model`` computes a loss from ``labels`` (a masked- or causal-LM model)."""
    getter = getattr(model, "get_output_embeddings", None)
    return callable(getter) and getter() is not None


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def prepare_training_model(model: str | PretrainedConfig | PreTrainedModel, *, device: str,
                           dtype: str, attn: str, hub: bool, seed: int = 0) -> PreTrainedModel:
    """The model a step is traced on: ``model`` itself when it has an LM head and is on the
    kind of ``device`` asked for (moved to ``device`` and ``dtype``; its trainable parameters are
    updated by the step), else one built from its config (random weights). Parameters a given
    LM-head model has frozen stay frozen (no gradient, no optimiser leaf)."""
    from transformers import PreTrainedModel

    if not isinstance(model, PreTrainedModel):
        return build_training_model(model, attn=attn, dtype=dtype, device=device, hub=hub,
                                    seed=seed)
    if not has_lm_head(model):
        return build_training_model(model.config, attn=attn, dtype=dtype, device=device,
                                    hub=hub, seed=seed)
    if _device_of(model).type != torch.device(device).type:  # e.g. the meta device
        frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
        built = build_training_model(model.config, attn=attn, dtype=dtype, device=device,
                                     hub=hub, seed=seed)
        for name, param in built.named_parameters():
            param.requires_grad_(name not in frozen)
        return built
    model = model.to(device=device, dtype=torch_dtype(dtype))
    current = getattr(model.config, "_attn_implementation", None)
    if current is not None and current != attn:
        model.set_attn_implementation(attn)
    return _ready(model, None, train_all=False)


def loss_description(model: nn.Module) -> str:
    """One line saying which loss the step trains (recorded in the tree)."""
    kind = "masked-LM" if "MaskedLM" in type(model).__name__ else "causal-LM (labels shifted)"
    return (f"{kind} cross-entropy of {type(model).__name__}'s head over every position, "
            "labels = input ids; dropout off")


def step_inputs(model: PreTrainedModel, batch_size: int, seq_len: int, *,
                seed: int = 0) -> dict[str, Any]:
    """Random token ids (:func:`irene.tracing.registry.make_inputs`) with ``labels`` = the ids."""
    from irene.tracing.registry import make_inputs

    inputs = make_inputs(model, batch_size, seq_len, seed=seed)
    inputs["labels"] = inputs["input_ids"].clone()
    return inputs


# --------------------------------------------------------------------------------------------
# the records of the three passes


def _pass_scope(scope: str, name: str) -> str:
    """The scope under pass ``name``: the first component replaced (``root.bert.encoder`` or
    ``forward.bert.encoder`` -> ``<name>.bert.encoder``; ``root`` -> ``<name>``)."""
    _, dot, rest = scope.partition(".")
    return name + dot + rest


def rename_forward(root: Record, step: Record) -> None:
    """Make the captured model record the ``forward`` child of ``step`` (scopes forward.*)."""
    for record in list(root.walk()):
        record.scope = _pass_scope(record.scope, "forward")
    root.kind, root.parent = "module", step


def backward_signature(record: Record, flags: list[bool] | None) -> str | None:
    """The dedup key of a node's backward replay: its forward signature plus which inputs
    required gradients."""
    if record.signature is None:
        return None
    return signature_of("backward", record.signature, tuple(flags or ()))


def mirror_backward(forward_root: Record, step: Record, capture: TrainingCapture,
                    attribution: BackwardAttribution) -> tuple[Record, dict[int, Record]]:
    """The ``backward`` records: every forward module and primitive whose backward ran, with
    its backward FLOPs and bytes, plus the modules' ``Other`` leaves that did arithmetic.
    Returns the root and ``{id(backward record): the forward or Other record it mirrors}``."""
    others = _others_by_module(forward_root, capture, attribution)
    source: dict[int, Record] = {}

    def mirror(fwd: Record, parent: Record | None) -> Record | None:
        leaf = fwd.is_leaf
        if leaf and id(fwd) not in attribution.ran:
            return None
        record = Record(
            scope=_pass_scope(fwd.scope, "backward"),
            kind=fwd.kind if fwd is not forward_root else "module",
            instance_type=fwd.instance_type + (BACKWARD_SUFFIX if leaf else ""),
            parent=parent, op=fwd.op, module=fwd.module, calls=fwd.calls,
            flops=attribution.flops.get(id(fwd), 0) if leaf else 0,
            mem_bytes=capture.backward_bytes.get(id(fwd), 0) if leaf else 0,
            num_parameters=fwd.num_parameters, input_shapes=fwd.input_shapes,
            output_shapes=fwd.output_shapes, dtype=fwd.dtype,
            signature=backward_signature(fwd, capture.grad_flags.get(id(fwd))))
        source[id(record)] = fwd
        for child in fwd.children:
            kept = mirror(child, record)
            if kept is not None:
                record.children.append(kept)
        for other in others.get(id(fwd), []):
            record.children.append(_other_leaf(other, record, capture, attribution))
            source[id(record.children[-1])] = other
        return record if record.children or leaf else None

    root = mirror(forward_root, step)
    if root is None:
        raise ValueError("the backward pass ran no primitive that could be traced")
    return root, source


def _others_by_module(forward_root: Record, capture: TrainingCapture,
                      attribution: BackwardAttribution) -> dict[int, list[Record]]:
    """The ``Other`` records with backward FLOPs, by the kept forward module they go under (a
    module pruned from the forward tree hands its ``Other`` to its nearest kept ancestor)."""
    kept = {id(r) for r in forward_root.walk()}
    out: dict[int, list[Record]] = {}
    for other in capture.other.values():
        if not attribution.flops.get(id(other)):
            continue
        host = other.parent
        while host is not None and id(host) not in kept:
            host = host.parent
        out.setdefault(id(host if host is not None else forward_root), []).append(other)
    return out


def _other_leaf(other: Record, parent: Record, capture: TrainingCapture,
                attribution: BackwardAttribution) -> Record:
    module = other.parent
    return Record(scope=_pass_scope(other.scope, "backward"), kind="function",
                  instance_type=other.instance_type + BACKWARD_SUFFIX, parent=parent,
                  op="other", calls=1, flops=attribution.flops.get(id(other), 0),
                  mem_bytes=capture.backward_bytes.get(id(other), 0),
                  dtype=module.dtype if module is not None else None,
                  signature=None if module is None or module.signature is None
                  else signature_of("backward-other", module.signature))


@dataclass
class ParameterCost:
    """FLOPs and bytes of one optimiser step over one parameter tensor (per step)."""

    flops: int
    mem_bytes: int


def parameter_cost(spec: OptimizerSpec, shape: torch.Size, dtype: torch.dtype) -> ParameterCost:
    """Count one steady-state step of ``spec``'s single-tensor implementation over a parameter of
    ``shape``/``dtype`` (on the meta device: nothing is computed); bytes of the parameter, its
    gradient and its optimiser state."""
    param = nn.Parameter(torch.empty(shape, dtype=dtype, device="meta"))
    param.grad = torch.empty_like(param)
    optimizer = spec.make([param], foreach=False)
    optimizer.step()  # creates the state (the first step also initialises it)
    counter = training_flop_counter_mode()
    with counter:
        optimizer.step()
    state = [t for t in optimizer.state[param].values() if isinstance(t, torch.Tensor)]
    return ParameterCost(counter.get_total_flops(), tensor_bytes([param, param.grad, *state]))


def optimizer_records(model: nn.Module, spec: OptimizerSpec, step: Record,
                      forward_paths: set[str]) -> Record:
    """The ``optimizer`` records: one ``<Label>Update`` leaf per updated parameter tensor, under
    records for the modules that hold it, as they appear in the forward tree
    (``optimizer.<module path>``; ``forward_paths`` are the forward tree's module paths,
    ``""`` for the model): containers that are never called (``ModuleList``) are left out."""
    root = Record(scope="optimizer", kind="module", instance_type=spec.label, parent=step,
                  op=spec.name, calls=1)
    modules = dict(model.named_modules())
    nodes: dict[str, Record] = {"": root}
    costs: dict[tuple, ParameterCost] = {}
    for name, param in trained_parameters(model):
        parent = root
        parts = name.split(".")[:-1]
        for depth in range(1, len(parts) + 1):
            path = ".".join(parts[:depth])
            if path in forward_paths:
                parent = _optimizer_module(path, modules, nodes, parent)
        key = (tuple(param.shape), param.dtype)
        if key not in costs:
            costs[key] = parameter_cost(spec, param.shape, param.dtype)
        cost = costs[key]
        leaf = Record(scope=f"optimizer.{name}", kind="function",
                      instance_type=f"{spec.label}Update", parent=parent, op=spec.name, calls=1,
                      flops=cost.flops, mem_bytes=cost.mem_bytes, num_parameters=param.numel(),
                      input_shapes=[list(param.shape)], output_shapes=[list(param.shape)],
                      dtype=str(param.dtype).replace("torch.", ""),
                      signature=signature_of("optimizer", spec.name, spec.settings, key))
        parent.children.append(leaf)
        for ancestor in _ancestors(leaf, stop=root):
            ancestor.num_parameters += param.numel()
    if not root.children:
        raise ValueError("no parameter received a gradient: nothing for the optimiser to update")
    for record in root.walk():
        if not record.is_leaf:
            record.signature = signature_of("optimizer", spec.name, spec.settings, tuple(
                (tuple(r.input_shapes[0]), r.dtype) for r in record.walk() if r.is_leaf))
            record.dtype = next(r.dtype for r in record.walk() if r.is_leaf)
    return root


def _optimizer_module(path: str, modules: dict[str, nn.Module], nodes: dict[str, Record],
                      parent: Record) -> Record:
    """The record of module ``path`` under ``optimizer`` (created under ``parent``)."""
    if path in nodes:
        return nodes[path]
    module = modules.get(path)
    record = Record(scope=f"optimizer.{path}", kind="module",
                    instance_type=type(module).__name__ if module is not None else "Module",
                    parent=parent, module=module, calls=1)
    parent.children.append(record)
    nodes[path] = record
    return record


def _ancestors(record: Record, *, stop: Record) -> Iterable[Record]:
    """The parents of ``record`` up to and including ``stop``."""
    node = record.parent
    while node is not None:
        yield node
        if node is stop:
            return
        node = node.parent


# --------------------------------------------------------------------------------------------
# tracing


def run_step(model: PreTrainedModel, inputs: dict[str, Any], spec: OptimizerSpec, *,
             record_inputs: bool, dedup: bool) -> TracedStep:
    """Capture the forward pass, attribute the backward pass, count the optimiser step, and
    build the records of the three passes under a ``step`` record. The model's parameters are
    not changed (the optimiser is counted on meta-device copies)."""
    model.zero_grad(set_to_none=True)
    capture = TrainingCapture(model, record_inputs=record_inputs, dedup=dedup)
    with torch.enable_grad(), meta_shims(), capture:
        loss = model(**inputs).loss
    root = capture.root
    if root is None or loss is None or not prune(root):
        raise ValueError("the forward pass ran no primitive that could be traced")
    keep = record_inputs and bool(capture.other)  # Other leaves replay the step's own nodes
    attribution = BackwardAttribution(
        capture.owners, record_for={id(r) for r in capture.other.values()} if keep else None)
    attribution.run(loss, retain_graph=keep)

    params = [p for _, p in trained_parameters(model)]
    step = Record(scope=STEP_SCOPE, kind="model", instance_type=STEP_TYPE, parent=None,
                  calls=1, num_parameters=sum(p.numel() for p in model.parameters()))
    forward_paths = {r.scope.partition(".")[2] for r in root.walk() if r.module is not None}
    rename_forward(root, step)
    backward, source = mirror_backward(root, step, capture, attribution)
    optimizer = optimizer_records(model, spec, step, forward_paths)
    step.children = [root, backward, optimizer]
    return TracedStep(model=model, inputs=inputs, spec=spec, capture=capture,
                 attribution=attribution, step=step, forward=root, backward=backward,
                 optimizer=optimizer, source=source,
                 optimizer_flops_counted=count_optimizer_step(spec, params),
                 retained=loss if keep else None)


def count_optimizer_step(spec: OptimizerSpec, params: list[nn.Parameter]) -> int:
    """FLOPs of one steady-state step of the single-tensor optimiser over parameters shaped like
    ``params`` (meta-device copies: nothing is computed or changed)."""
    copies = [nn.Parameter(torch.empty(p.shape, dtype=p.dtype, device="meta")) for p in params]
    for copy_ in copies:
        copy_.grad = torch.empty_like(copy_)
    optimizer = spec.make(copies, foreach=False)
    optimizer.step()  # creates the state
    counter = training_flop_counter_mode()
    with counter:
        optimizer.step()
    return counter.get_total_flops()


# --------------------------------------------------------------------------------------------
# the public function


def trace_train_step(model: str | PretrainedConfig | PreTrainedModel, batch_size: int,
                     seq_len: int, *, optimizer: str = DEFAULT_OPTIMIZER, device: str = "cpu",
                     dtype: str = "float32", attn: str = "eager", timing: bool = True,
                     meter: Meter | None = None, protocol: Protocol | None = None,
                     progress: bool = False, model_name: str | None = None, hub: bool = True,
                     cache: MeasurementCache | None = None, seed: int = 0,
                     schema: str = DEFAULT_SCHEMA) -> Tree:
    """Trace one training step of ``model`` on random token ids (batch_size x seq_len) into a
    tree (see the module docstring for its layout, the loss and the replays).

    ``model``: a built-in name, local path or Hub name, a ``transformers`` config, or a model
    (with an LM head it is trained in place: its weights change; a base model's config is used
    to build the model with its head). ``optimizer``: ``"adamw"`` or ``"sgd"``
    (:data:`irene.tracing.optimizers.OPTIMIZERS`). ``timing``: replay every node alone under
    ``protocol``; with ``meter`` also ``ground_truth_energy`` (J per training step). Without
    timing the step runs on the meta device (shapes only). Other arguments as in
    :func:`irene.tracing.tracer.trace_model`.
    """
    from irene.tracing.tracer import (
        check_host,
        device_sync,
        name_of,
        replay_progress_bar,
        timed_measurements,
        trace_metadata,
    )
    from irene.tracing.train_replay import measure_step

    start = time.perf_counter()
    spec = get_optimizer(optimizer)
    rules = trace_rules(schema)
    if rules.name != DEFAULT_SCHEMA:
        raise ValueError(f"a training step is traced in schema {DEFAULT_SCHEMA} only, not "
                         f"{rules.name}")
    check_host(device, metered=meter is not None, timing=timing)
    protocol = protocol if protocol is not None else Protocol()
    name = model_name or name_of(model)
    built = prepare_training_model(model, device=device if timing else "meta", dtype=dtype,
                                   attn=attn, hub=hub, seed=seed)
    inputs = step_inputs(built, batch_size, seq_len, seed=seed)
    st = run_step(built, inputs, spec, record_inputs=timing, dedup=protocol.dedup)

    measurements = sampler = conditions = None
    if timing:
        cache = cache if cache is not None else MeasurementCache(enabled=protocol.dedup)
        try:
            measurements, sampler, conditions = timed_measurements(
                lambda cache, sampler, bar: measure_step(
                    st, meter=meter, protocol=protocol, cache=cache, sampler=sampler,
                    sync=device_sync(device), progress=bar),
                root_id=id(st.step), what=f"{name} {batch_size}x{seq_len} (whole training step)",
                device=device, protocol=protocol, cache=cache,
                progress=replay_progress_bar(name, batch_size, seq_len) if progress else None)
        finally:
            st.retained = None
    meta = trace_metadata(built, device=device, dtype=dtype, attn=attn, timing=timing, meter=meter,
                     protocol=protocol, sampler=sampler, counted_flops=0,
                     cache=cache if timing else None, seconds=time.perf_counter() - start,
                     schema=rules, traced_on=device if timing else "meta",
                     conditions=conditions.to_dict() if conditions is not None else None)
    meta.update(train_metadata(st))
    tree = build_tree(st.step, model_name=name, batch_size=batch_size, seq_len=seq_len,
                      measurements=measurements, meta=meta)
    label_passes(tree)
    return tree


def train_metadata(st: TracedStep) -> dict[str, Any]:
    """The root metadata a training-step tree adds to the forward tree's: ``phase``,
    ``optimizer``, the FLOP unit, ``flops_counted`` (MFLOP, the whole step) and ``train_step``
    (loss, optimiser settings, FLOPs counted per pass, in MFLOP)."""
    forward = st.capture.counted_flops
    backward = st.attribution.total_flops
    optimizer = st.optimizer_flops_counted
    return {
        "phase": PHASE,
        "optimizer": st.spec.name,
        "flops_counted": (forward + backward + optimizer) / MFLOP,
        "units_flops": TRAIN_FLOPS_UNIT,
        "train_step": {
            "loss": loss_description(st.model),
            "head": type(st.model).__name__,
            "optimizer": {"name": st.spec.label, **st.spec.settings},
            "dropout": False,
            "flops_counted": {"forward": forward / MFLOP, "backward": backward / MFLOP,
                              "optimizer": optimizer / MFLOP},
            "backward_unattributed_flops": st.attribution.unowned_flops / MFLOP,
        },
    }


def label_passes(tree: Tree) -> None:
    """Mark every node with the pass it belongs to (``extra["pass"]``) and set the FLOP unit."""
    tree.meta["units"] = {**tree.meta.get("units", {}), "flops": tree.meta.pop("units_flops")}
    for child in tree.root.children:
        for node in child.walk():
            node.extra["pass"] = child.scope
