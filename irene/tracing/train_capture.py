"""Capture a training step's forward pass and attribute its backward pass to the same nodes.

:class:`TrainingCapture` is the forward capture of :mod:`irene.tracing.capture` run with
gradients on. While the forward pass runs it also records, for every primitive (leaf) call, the
autograd nodes the call created: the graph is walked back from the call's outputs and stops at
the autograd nodes of the call's inputs and at parameters, so each node belongs to exactly one
primitive (or to none, for work done outside any primitive: views, transposes, copies).

:class:`BackwardAttribution` then runs the backward pass under a FLOP counter with a pre-hook on
every autograd node: the FLOPs counted from one node's start to the next node's start go to the
primitive that owns the first. That span includes the addition of the node's output gradient
into the gradient of a tensor used more than once (the engine sums them right after the node
runs), so the sum over several consumers is paid by the consumers.

Compared with ``FlopCounterMode``'s own module attribution (a module is "entered" in backward
when the gradient of its output arrives and "left" when the gradients of all its inputs are
ready), this attributes per primitive, including the functional ones (``matmul``, ``softmax``,
``add``) that a module calls directly; the module totals then follow by summing, as in the
forward tree.

For the replays of the backward pass (see :mod:`irene.tracing.train_step`) the capture also keeps,
for every node whose inputs are recorded, which of its inputs required gradients, and the
gradient that arrived at each of its outputs during the real backward pass.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from irene.tracing.backward_flops import training_flop_counter_mode
from irene.tracing.capture import ForwardCapture, Record, tensors_in
from irene.tracing.flops import tensor_bytes
from irene.tracing.optimizers import OptimizerSpec

#: autograd node type that writes a parameter's ``.grad`` (stops the ownership walk)
_ACCUMULATE = "AccumulateGrad"


def _is_accumulate(node: Any) -> bool:
    return type(node).__name__ == _ACCUMULATE


def graph_nodes(roots: Iterable[Any]) -> list[Any]:
    """Every autograd node reachable from ``roots`` (grad_fn objects), each once."""
    seen: set[int] = set()
    out = []
    stack = [r for r in roots if r is not None]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        out.append(node)
        stack.extend(fn for fn, _ in node.next_functions if fn is not None)
    return out


class TrainingCapture(ForwardCapture):
    """A :class:`~irene.tracing.capture.ForwardCapture` for a forward pass run with gradients.

    Use it like the forward capture (``with TrainingCapture(model) as c: loss = ...``), then
    read :attr:`owners` (autograd node -> leaf :class:`Record`), :attr:`other` (``id(module
    record)`` -> the record that owns the nodes of the module's own operations outside any
    primitive; not in the forward tree), :attr:`backward_bytes`
    (``id(record)`` -> bytes a backward call of the leaf reads and writes, summed over calls),
    :attr:`grad_flags` (``id(record)`` -> which input tensors of its first call required
    gradients) and,
    after the backward pass, :attr:`output_grads` (``id(record)`` -> {output index: gradient}).
    """

    def __init__(self, model: nn.Module, *, record_inputs: bool = False,
                 dedup: bool = True) -> None:
        super().__init__(model, record_inputs=record_inputs, dedup=dedup)
        self._counter = training_flop_counter_mode()  # the loss needs the NLL formula
        self.owners: dict[Any, Record] = {}
        self.backward_bytes: dict[int, int] = {}
        self.grad_flags: dict[int, list[bool]] = {}
        self.output_grads: dict[int, dict[int, torch.Tensor]] = {}
        self.other: dict[int, Record] = {}
        self._boundaries: list[set[Any] | None] = []

    # -- module hooks ----------------------------------------------------------------------

    def _pre_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        super()._pre_hook(module, args, kwargs)
        self._internal = True
        try:
            frame = self._stack[-1]
            record = frame.record
            boundary = None
            if record is not None:
                inputs = tensors_in((args, kwargs))
                if frame.first:
                    self.grad_flags[id(record)] = [t.requires_grad for t in inputs]
                if record.kind == "leaf":
                    boundary = _grad_fns(inputs)
            self._boundaries.append(boundary)
        finally:
            self._internal = False

    def _post_hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        frame = self._stack[-1] if self._stack else None
        boundary = self._boundaries.pop() if self._boundaries else None
        super()._post_hook(module, args, kwargs, output)
        record = frame.record if frame is not None else None
        if record is None:
            return
        self._internal = True
        try:
            outputs = tensors_in(output)
            if record.kind == "leaf" and boundary is not None:
                self._claim(record, outputs, boundary)
                self._add_backward_bytes(record, tensors_in((args, kwargs)), outputs,
                                         list(module.parameters()))
            if frame.first and record.replay is not None:
                self._hook_output_grads(record, outputs)
        finally:
            self._internal = False

    # -- functional primitives -------------------------------------------------------------

    def _run_leaf_call(self, kind: str, op: str, itype: str, func: Any, args: tuple,
                       kwargs: dict, *, inplace: bool) -> Any:
        parent = self._current()
        if self._opaque or parent is None:
            return super()._run_leaf_call(kind, op, itype, func, args, kwargs, inplace=inplace)
        was_internal, self._internal = self._internal, True
        try:
            inputs = tensors_in((args, kwargs))
            boundary = _grad_fns(inputs)
            flags = [t.requires_grad for t in inputs]
            sizes = [(t, t.requires_grad) for t in inputs]
        finally:
            self._internal = was_internal
        count = len(parent.children)
        out = super()._run_leaf_call(kind, op, itype, func, args, kwargs, inplace=inplace)
        was_internal, self._internal = self._internal, True
        try:
            outputs = tensors_in(out)
            if len(parent.children) == count:  # no forward FLOPs: not a leaf
                if any(t.grad_fn is not None and t.grad_fn not in boundary for t in outputs):
                    self._claim(self._other_record(parent), outputs, boundary)
                return out
            record = parent.children[-1]
            self._claim(record, outputs, boundary)
            params = [t for t, _ in sizes if isinstance(t, nn.Parameter)]
            self._add_backward_bytes(record, inputs, outputs, params, flags=flags)
            self.grad_flags[id(record)] = flags
            if record.replay is not None:
                self._hook_output_grads(record, outputs)
        finally:
            self._internal = was_internal
        return out

    # -- bookkeeping -----------------------------------------------------------------------

    def _other_record(self, module: Record) -> Record:
        """The backward-only leaf of ``module``'s own operations outside any primitive (views,
        expands, copies: no forward FLOPs, but e.g. an expand's gradient is a sum)."""
        record = self.other.get(id(module))
        if record is None:
            record = Record(scope=self._unique_scope(f"{module.scope}.other"), kind="function",
                            instance_type="Other", parent=module, op="other", calls=1)
            self.other[id(module)] = record
        return record

    def _claim(self, record: Record, outputs: list[torch.Tensor], boundary: set[Any]) -> None:
        """Give ``record`` every autograd node created by its call: walk back from the outputs,
        stopping at the inputs' nodes, parameters and nodes another primitive already owns."""
        stack = [t.grad_fn for t in outputs if t.grad_fn is not None]
        while stack:
            node = stack.pop()
            if node is None or node in boundary or node in self.owners or \
                    _is_accumulate(node):
                continue
            self.owners[node] = record
            stack.extend(fn for fn, _ in node.next_functions)

    def _add_backward_bytes(self, record: Record, inputs: list[torch.Tensor],
                            outputs: list[torch.Tensor], params: list[torch.Tensor], *,
                            flags: list[bool] | None = None) -> None:
        """Bytes one backward call of a leaf reads and writes: the gradients of its outputs,
        its inputs and parameters (saved for backward), and the gradients it writes for the
        inputs and parameters that require them (each distinct tensor once)."""
        flags = flags if flags is not None else [t.requires_grad for t in inputs]
        with_grad = [t for t, f in zip(inputs, flags, strict=True) if f]
        with_grad += [p for p in params if p.requires_grad]
        grad_outputs = [t for t in outputs if t.requires_grad]
        read = tensor_bytes([*inputs, *params])
        self.backward_bytes[id(record)] = self.backward_bytes.get(id(record), 0) + read + \
            tensor_bytes(grad_outputs) + tensor_bytes(with_grad)

    def _hook_output_grads(self, record: Record, outputs: list[torch.Tensor]) -> None:
        store = self.output_grads.setdefault(id(record), {})
        for index, tensor in enumerate(outputs):
            if tensor.requires_grad:
                tensor.register_hook(functools.partial(_keep_grad, store, index))


def _keep_grad(store: dict[int, torch.Tensor], index: int, grad: torch.Tensor) -> None:
    store[index] = grad.detach().clone()


def _grad_fns(tensors: list[torch.Tensor]) -> set[Any]:
    """The autograd nodes of ``tensors`` (the set holds them, so their identity is stable)."""
    return {t.grad_fn for t in tensors if t.grad_fn is not None}


class BackwardAttribution:
    """Run a backward pass and count its FLOPs per owner of each autograd node.

    ``owners`` maps autograd nodes to the :class:`Record` they belong to (see
    :class:`TrainingCapture`). The FLOPs counted while a node runs go to its owner. The
    additions that sum the gradients of a tensor used several times happen between two nodes
    (the engine adds each arriving gradient into the waiting one): when the gradients come from
    one primitive (GELU's formula uses its input three times) that primitive pays; when they
    come from several (a layer norm's output feeds the query, key, value and the residual) the
    primitive that produced the tensor pays, so each consumer's backward stays its own; for a
    parameter used twice (tied weights) the primitive whose gradient arrived last pays.

    After :meth:`run`: :attr:`flops` maps ``id(record)`` to its backward FLOPs, :attr:`ran`
    holds ``id(record)`` of every owner whose nodes ran, :attr:`unowned_flops` the FLOPs of
    nodes no record owns, and :attr:`total_flops` everything counted. For the owners whose ids
    are in ``record_for``, :attr:`recorded_calls` keeps each of their nodes with the gradients
    it received, in the order they ran (to call them again; needs ``retain_graph``).
    """

    def __init__(self, owners: dict[Any, Record], *,
                 record_for: set[int] | None = None) -> None:
        self.owners = owners
        self.record_for = record_for or set()
        self.recorded_calls: dict[int, list[tuple[Any, tuple]]] = {}
        self.flops: dict[int, int] = {}
        self.ran: set[int] = set()
        self.unowned_flops = 0
        self.total_flops = 0
        self._counter = training_flop_counter_mode()
        self._last = 0
        # who the FLOPs counted since the last hook belong to: [(owner, weight), ...]
        self._pending: list[tuple[Record | None, int]] = []
        self._senders: dict[tuple[int, int], list[Record | None]] = {}

    def _flush(self) -> None:
        total = self._counter.get_total_flops()
        delta, self._last = total - self._last, total
        if not delta:
            return
        weights = sum(w for _, w in self._pending)
        if not self._pending or weights <= 0:
            self.unowned_flops += delta
            return
        given = 0
        for index, (owner, weight) in enumerate(self._pending):
            share = delta - given if index == len(self._pending) - 1 else \
                delta * weight // weights
            given += share
            if owner is None:
                self.unowned_flops += share
            else:
                self.flops[id(owner)] = self.flops.get(id(owner), 0) + share

    def _before(self, node: Any, grad_outputs: Any) -> None:
        self._flush()
        owner = self.owners.get(node)
        self._pending = [(owner, 1)]
        if owner is not None:
            self.ran.add(id(owner))
            if id(owner) in self.record_for:
                grads = tuple(None if g is None else g.detach().clone() for g in grad_outputs)
                self.recorded_calls.setdefault(id(owner), []).append((node, grads))

    def _after(self, node: Any, grad_inputs: Any, grad_outputs: Any) -> None:
        self._flush()
        own = self.owners.get(node)
        pending = []
        for (target, slot), grad in zip(node.next_functions, grad_inputs, strict=False):
            if target is None or grad is None:
                continue
            senders = self._senders.setdefault((id(target), slot), [])
            if senders:  # this gradient is added to one that is waiting for ``target``
                pending.append((self._summed_by(target, own, senders), grad.numel()))
            senders.append(own)
        self._pending = pending or [(own, 1)]

    def _summed_by(self, target: Any, sender: Record | None,
                   senders: list[Record | None]) -> Record | None:
        """Who pays for adding ``sender``'s gradient to those ``senders`` already sent to
        ``target``: the sender when every one came from it (a primitive that uses its input
        several times), else the owner of ``target`` (the producer of the tensor), or the sender
        when ``target`` is a parameter or belongs to no record."""
        owner = self.owners.get(target)
        if owner is None or _is_accumulate(target) or all(s is sender for s in senders):
            return sender
        return owner

    def run(self, loss: torch.Tensor, *, retain_graph: bool = False) -> None:
        """``loss.backward()`` with every node of its graph attributed (``retain_graph``: keep
        the graph's saved tensors, to call recorded nodes again)."""
        handles = []
        nodes = graph_nodes([loss.grad_fn])  # held: node identity must stay stable
        try:
            for node in nodes:
                handles.append(node.register_prehook(functools.partial(self._before, node)))
                handles.append(node.register_hook(functools.partial(self._after, node)))
            with self._counter:
                self._last, self._pending = 0, []
                loss.backward(retain_graph=retain_graph)
                self._flush()
            self.total_flops = self._counter.get_total_flops()
        finally:
            for handle in handles:
                handle.remove()


@dataclass
class TracedStep:
    """Everything :func:`irene.tracing.train_step.run_step` produced: the records of the step
    and what the replays of :mod:`irene.tracing.train_replay` need."""

    model: Any
    inputs: dict[str, Any]
    spec: OptimizerSpec
    capture: TrainingCapture
    attribution: BackwardAttribution
    step: Record
    forward: Record
    backward: Record
    optimizer: Record
    source: dict[int, Record]  # id(backward record) -> the forward / Other record it mirrors
    optimizer_flops_counted: int
    retained: torch.Tensor | None = None  # the step's loss while its graph is retained
