"""Replays of a training step's nodes, each measured alone (``trace_train_step(timing=True)``).

* a forward node: called on the inputs recorded at its first call, with gradients on and the
  recorded inputs that required gradients in the step requiring them again (so the replay
  builds the autograd graph as the step does); in-place primitives run without gradients;
* a backward node (:class:`BackwardReplay`): its forward is recomputed once on the recorded
  inputs (not timed), then ``torch.autograd.grad(outputs, inputs + parameters, recorded output
  gradients, retain_graph=True)`` is timed: the node's own backward kernels on the gradients
  that arrived at its outputs during the step; an output whose gradient came from another output
  of the same node (the logits of the loss) is left out;
* an ``Other`` backward leaf (:class:`NodeReplay`): its autograd nodes, kept from the step with
  the gradients they received, called one by one (the step's graph is retained until then);
* an optimiser leaf or module (:class:`OptimizerReplay`): a fresh optimiser of the same kind
  over those parameters (their gradients from the step; its state created by the first, untimed
  call) stepped; the ``optimizer`` node steps the whole optimiser, ``backward`` replays the
  whole backward pass, ``forward`` the whole forward pass with the loss, and ``step``
  (:class:`StepReplay`) a whole training step: ``zero_grad``, forward, ``backward()``,
  ``step()``.

What cannot be isolated: the engine sums the gradients of a tensor used by several primitives
between nodes, so a leaf's replay does not contain those additions (their FLOPs are the
producing primitive's, their time shows in the module replays); writing ``.grad`` (the first
step's gradients are stored without copying) and the operations outside any primitive (views,
transposes, copies) are in the module and pass replays only; on a GPU the default optimiser
updates all parameters with a few multi-tensor kernels, so per-parameter replays add up to
more than the ``optimizer`` node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map

from irene.measure import Measurement, MeasurementCache, Meter, Protocol, measure_callable
from irene.measure.sampler import Sampler
from irene.tracing.capture import Record, call_function, is_inplace, signature_of, tensors_in
from irene.tracing.optimizers import OptimizerSpec, trained_parameters, unique_parameters
from irene.tracing.train_capture import TracedStep


def recorded_call(record: Record) -> tuple[Callable, tuple, dict]:
    """(function, args, kwargs) a forward record was first called with (its recorded inputs)."""
    replay = record.replay
    if replay is None or getattr(replay, "func", None) is not call_function:
        raise RuntimeError(f"{record.scope}: no recorded inputs to replay")
    fn, args, kwargs = replay.args
    return fn, args, kwargs


def _with_grad_inputs(args: tuple, kwargs: dict, flags: list[bool], *,
                      inplace: bool) -> tuple[tuple, dict, list[torch.Tensor]]:
    """``args``/``kwargs`` with each tensor that required gradients in the step replaced by a
    leaf that requires them (a copy of it for an in-place call); returns the leaves too."""
    leaves: list[torch.Tensor] = []
    index = 0

    def swap(value: Any) -> Any:
        nonlocal index
        if not isinstance(value, torch.Tensor):
            return value
        flag = index < len(flags) and flags[index]
        index += 1
        if isinstance(value, nn.Parameter) or not flag:
            return value
        leaf = value.detach().requires_grad_(True)
        leaves.append(leaf)
        return leaf.clone() if inplace else leaf

    new_args, new_kwargs = tree_map(swap, (args, kwargs))
    return new_args, new_kwargs, leaves


def _parameters_of(fn: Callable, args: tuple, kwargs: dict) -> list[torch.Tensor]:
    """Trainable parameters a call uses: the module's, or the parameters passed to a function."""
    if isinstance(fn, nn.Module):
        return [p for p in fn.parameters() if p.requires_grad]
    seen: dict[int, torch.Tensor] = {}
    for t in tensors_in((args, kwargs)):
        if isinstance(t, nn.Parameter) and t.requires_grad:
            seen.setdefault(id(t), t)
    return list(seen.values())


def forward_replay(record: Record, flags: list[bool]) -> Callable[[], None]:
    """Replay a forward node as the step runs it: gradients on, inputs requiring them again."""
    fn, args, kwargs = recorded_call(record)
    if is_inplace(fn):
        return lambda: _no_grad_call(fn, args, kwargs)
    new_args, new_kwargs, _ = _with_grad_inputs(args, kwargs, flags, inplace=False)

    def call() -> None:
        with torch.enable_grad():
            fn(*new_args, **new_kwargs)
    return call


def _no_grad_call(fn: Callable, args: tuple, kwargs: dict) -> None:
    with torch.no_grad():
        fn(*args, **kwargs)


class BackwardReplay:
    """Time the backward of one node alone (see the module doc): the forward is recomputed on
    the recorded inputs once, then each call is one ``torch.autograd.grad`` over that graph."""

    def __init__(self, record: Record, flags: list[bool], grads: dict[int, torch.Tensor]) -> None:
        self.fn, self.args, self.kwargs = recorded_call(record)
        self.scope = record.scope
        self.flags = flags
        self.grads = grads
        self._graph: tuple[list, list, list] | None = None

    def prepare(self) -> None:
        """Recompute the forward with gradients and keep its graph."""
        inplace = is_inplace(self.fn)
        with torch.enable_grad():
            args, kwargs, leaves = _with_grad_inputs(self.args, self.kwargs, self.flags,
                                                     inplace=inplace)
            out = self.fn(*args, **kwargs)
        outputs = tensors_in(out)
        chosen = [(outputs[i], g) for i, g in sorted(self.grads.items())
                  if i < len(outputs) and outputs[i].requires_grad]
        chosen = independent_outputs(chosen)
        targets = leaves + _parameters_of(self.fn, self.args, self.kwargs)
        if not chosen or not targets:
            raise RuntimeError(f"{self.scope}: nothing to differentiate in the replay")
        self._graph = ([o for o, _ in chosen], [g for _, g in chosen], targets)

    def __call__(self) -> None:
        if self._graph is None:
            self.prepare()
        assert self._graph is not None
        outputs, grads, targets = self._graph
        torch.autograd.grad(outputs, targets, grads, retain_graph=True, allow_unused=True)

    def release(self) -> None:
        """Drop the recomputed graph (its saved tensors)."""
        self._graph = None


def independent_outputs(pairs: list[tuple[torch.Tensor, torch.Tensor]]
                        ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Drop the outputs another output depends on (a loss computed from the logits it also
    returns): their gradient came through that output, and feeding both would count it twice."""
    if len(pairs) < 2:
        return pairs
    reach = [_reachable(t.grad_fn) for t, _ in pairs]
    return [pair for j, pair in enumerate(pairs)
            if not any(i != j and pair[0].grad_fn in reach[i] for i in range(len(pairs)))]


def _reachable(node: Any) -> set[Any]:
    seen: set[Any] = set()
    stack = [fn for fn, _ in node.next_functions] if node is not None else []
    while stack:
        current = stack.pop()
        if current is None or current in seen:
            continue
        seen.add(current)
        stack.extend(fn for fn, _ in current.next_functions)
    return seen


class NodeReplay:
    """Call the autograd nodes of an ``Other`` leaf, kept from the step with the gradients they
    received, in the order they ran (the step's graph is retained while they are measured)."""

    def __init__(self, calls: list[tuple[Any, tuple]]) -> None:
        self.calls = calls

    def __call__(self) -> None:
        for node, grads in self.calls:
            node(*grads)

    def release(self) -> None:
        self.calls = []


class OptimizerReplay:
    """Step a fresh optimiser of ``spec`` over ``params`` (their gradients from the step); the
    first call creates its state."""

    def __init__(self, spec: OptimizerSpec, params: list[nn.Parameter]) -> None:
        self.spec, self.params = spec, params
        self._optimizer: torch.optim.Optimizer | None = None

    def __call__(self) -> None:
        if self._optimizer is None:
            self._optimizer = self.spec.make(self.params)
        self._optimizer.step()

    def release(self) -> None:
        self._optimizer = None


class StepReplay:
    """One whole training step: ``zero_grad``, forward with loss, ``backward()``, ``step()``."""

    def __init__(self, model: nn.Module, inputs: dict[str, Any], spec: OptimizerSpec) -> None:
        self.model, self.inputs, self.spec = model, inputs, spec
        self._optimizer: torch.optim.Optimizer | None = None

    def __call__(self) -> None:
        if self._optimizer is None:
            self._optimizer = self.spec.make(p for _, p in unique_parameters(self.model))
        self._optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = self.model(**self.inputs).loss
        loss.backward()
        self._optimizer.step()

    def release(self) -> None:
        self._optimizer = None


# --------------------------------------------------------------------------------------------
# measuring


@dataclass
class _Planned:
    """One node to measure: its record, the dedup key and how to build its replay."""

    record: Record
    signature: str | None
    make: Callable[[], Callable[[], None]]


def _donors(forward: Record) -> dict[str, Record]:
    """Forward signature -> the record whose inputs were recorded (dedup keeps one)."""
    return {r.signature: r for r in forward.walk()
            if r.replay is not None and r.signature is not None}


def _donor(record: Record, donors: dict[str, Record]) -> Record:
    if record.replay is not None:
        return record
    donor = donors.get(record.signature) if record.signature is not None else None
    if donor is None:
        raise RuntimeError(f"{record.scope}: no recorded inputs to replay")
    return donor


def plan_replays(st: TracedStep) -> list[_Planned]:
    """Every node of the step with its replay, in the order they are measured: forward,
    backward, optimiser (which changes the parameters), then the whole step."""
    capture = st.capture
    donors = _donors(st.forward)
    others = {id(r) for r in capture.other.values()}
    plans: list[_Planned] = []
    for record in st.forward.walk():
        flags = capture.grad_flags.get(id(record), [])
        plans.append(_Planned(
            record, None if record.signature is None else
            signature_of("train-forward", record.signature, tuple(flags)),
            lambda r=record, f=flags: forward_replay(_donor(r, donors), f)))
    for record in st.backward.walk():
        source = st.source[id(record)]
        if id(source) in others:
            calls = st.attribution.recorded_calls.get(id(source), [])
            plans.append(_Planned(record, record.signature, lambda c=calls: NodeReplay(c)))
            continue
        flags = capture.grad_flags.get(id(source), [])

        def make(src: Record = source, f: list[bool] = flags) -> BackwardReplay:
            donor = _donor(src, donors)
            return BackwardReplay(donor, f, capture.output_grads.get(id(donor), {}))
        plans.append(_Planned(record, record.signature, make))
    named = dict(trained_parameters(st.model))
    for record in st.optimizer.walk():
        params = [named[r.scope[len("optimizer."):]] for r in record.walk() if r.is_leaf]
        plans.append(_Planned(record, record.signature,
                              lambda p=params: OptimizerReplay(st.spec, p)))
    plans.append(_Planned(st.step, None, lambda: StepReplay(st.model, st.inputs, st.spec)))
    return plans


def measure_step(st: TracedStep, *, meter: Meter | None, protocol: Protocol,
                 cache: MeasurementCache, sampler: Sampler | None,
                 sync: Callable[[], None] | None,
                 progress: Callable[[list], Iterable] | None = None) -> dict[int, Measurement]:
    """Replay and measure every node of the step; keyed by ``id(record)``. Identical nodes are
    measured once through ``cache``; each replay's graph or optimiser is dropped once measured."""
    results: dict[int, Measurement] = {}
    plans = plan_replays(st)
    for plan in (progress(plans) if progress is not None else plans):
        if plan.record is st.optimizer:  # the Other leaves are measured: free the step's graph
            st.retained = None
            st.attribution.recorded_calls.clear()

        def measure(make: Callable[[], Callable[[], None]] = plan.make) -> Measurement:
            replay = make()
            try:
                return measure_callable(replay, meter=meter, protocol=protocol, sync=sync,
                                        sampler=sampler)
            finally:
                release = getattr(replay, "release", None)
                if release is not None:
                    release()

        results[id(plan.record)] = cache.get_or_measure(plan.signature, measure)
    return results
