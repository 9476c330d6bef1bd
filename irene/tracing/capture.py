"""Capture one forward pass as a call tree: modules (by scope) and the ML primitives they run.

How it works:

* forward pre/post hooks on every module keep a stack of module scopes ("root", "root.encoder",
  "root.encoder.layer.0", ...); a module's parent is the module that called it;
* a module without child modules (Linear, LayerNorm, Conv1D, GELUActivation, RMSNorm, ...) is a
  **leaf module**: everything it runs is one ``ml`` primitive; dropout-style modules that return
  their input untouched are marked ``identity`` and dropped later;
* a ``TorchFunctionMode`` sees every ``torch`` call made directly in the body of a non-leaf module
  (``torch.matmul``, ``F.softmax``, ``x + y``, ``F.scaled_dot_product_attention``, ...); each call
  that does floating-point work becomes a **function leaf** under that module (``.matmul``,
  ``.softmax``, ``.add``, ...), so every FLOP of the forward pass lands in exactly one leaf;
* known composite helpers of ``transformers`` (``apply_rotary_pos_emb``) are wrapped during the
  capture so their element-wise work forms one leaf (``ApplyRotaryPosEmb``);
* FLOPs come from torch's ``FlopCounterMode`` extended by :mod:`irene.tracing.flops`; each leaf
  gets the FLOPs counted while it ran;
* a :class:`~irene.tracing.schemas.TraceSchema` other than ours may redefine which modules and
  calls are leaves and cost every call by its own table (``irene2021``): then a call that is
  not a leaf is charged to the module that made it (``own_flops``/``own_mem_bytes``);
* with ``record_inputs`` each replayable node keeps a copy of the inputs of its first call (only
  the first node of each signature when ``dedup``), so it can later be replayed in isolation;
  a recorded input that holds state a call changes (the KV cache of a prefill or decode step,
  :mod:`irene.tracing.generation`) is not copied: it has ``reset_for_replay()``, called before
  every replay, and ``irene_spec()``, which describes it in signatures.

Signatures say which nodes do the same work, so that work is measured once (within a tree and,
through a shared cache, across the trees of a campaign). They describe the work, not the names:

* a **leaf** (leaf module, function, composite) is its primitive: the leaf module's class with its
  simple attributes (numbers, strings, tuples of them, functions by qualified name) and parameter
  shapes/dtypes, or the torch function's qualified name; plus the shapes, dtypes, strides and
  device type of every argument and the value of every plain argument;
* a **module** (and the model) is the work its forward pass did: the spec of its inputs and, in
  call order, every torch call made directly in its body (including calls that do no
  floating-point work: copies, views, masks; not reads of metadata such as ``x.shape``) and the
  signature of every child module it called.
  Its class name is not part of it, so ``BertLayer`` and ``RobertaLayer`` (the same code on the
  same shapes) share a signature, while eager and SDPA attention (different calls) do not.
  Python-level work between torch calls is assumed equal for equal torch calls.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves, tree_map

from irene.tracing.flops import flop_counter_mode, tensor_bytes
from irene.tracing.schemas import IRENE, TraceSchema, jit_op_name

#: torch function name (normalised) -> instance type of its leaf (IrEne's names where they exist)
FUNCTION_TYPES = {
    "matmul": "MatMul", "mm": "MatMul", "bmm": "MatMul", "baddbmm": "MatMul", "addmm": "MatMul",
    "einsum": "MatMul", "linear": "Linear", "bilinear": "Bilinear", "conv1d": "Conv1d",
    "conv2d": "Conv2d", "softmax": "Softmax", "log_softmax": "LogSoftmax", "gelu": "GELU",
    "silu": "SiLU", "relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid",
    "layer_norm": "LayerNorm", "rms_norm": "RMSNorm", "group_norm": "GroupNorm",
    "embedding": "Embedding", "scaled_dot_product_attention": "ScaledDotProductAttention",
    "div": "Div", "truediv": "Div", "sub": "Sub", "rsub": "Sub", "pow": "Pow", "rsqrt": "Rsqrt",
}
#: functions that become leaves even without floating-point work (memory-bound look-ups)
ALWAYS_LEAF = {"embedding", "embedding_bag"}
#: composite helpers of ``transformers`` modeling files captured as one leaf: name -> type
COMPOSITE_FUNCTIONS = IRENE.composite_functions
#: leaf modules that are the identity at inference, dropped even if they did not return input
IDENTITY_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                    nn.FeatureAlphaDropout, nn.Identity)
_DUNDER_ALIASES = {"radd": "add", "iadd": "add", "rsub": "rsub", "isub": "sub", "rmul": "mul",
                   "imul": "mul", "truediv": "div", "rtruediv": "div", "itruediv": "div",
                   "floordiv": "floor_divide", "rmatmul": "matmul", "ipow": "pow",
                   "rpow": "pow", "neg": "neg"}
MAX_SHAPES = 8  # tensor shapes kept per node for the ``input_shapes``/``output_shapes`` keys
#: calls that only read a tensor's metadata (``x.shape``, ``x.device``, ``x.size()``): no work,
#: so not part of a module's work signature (the calls they lead to are)
METADATA_CALLS = {"__get__", "size", "dim", "stride", "numel", "nelement", "ndimension",
                  "is_floating_point", "is_complex", "element_size", "is_contiguous",
                  "storage_offset", "get_device", "data_ptr", "__len__", "is_leaf"}


@dataclass
class Record:
    """One node of the captured call tree (before pruning and measuring).

    ``kind``: "model", "module", "leaf" (leaf module), "function" or "composite".
    ``flops``: FLOPs (not MFLOP) of all calls; ``mem_bytes``: bytes of inputs, outputs and
    parameters of every call (leaves only); ``calls``: calls during the forward pass.
    ``replay``: calls the node once on the inputs recorded at its first call (None when not
    recorded). ``signature``: hex digest identifying identical work (same primitive or module
    structure, input shapes/dtypes/strides, parameter shapes). ``own_flops``/``own_mem_bytes``:
    FLOPs and bytes of a module's direct calls that are not leaves (schemas with a cost table
    only; 0 otherwise).
    """

    scope: str
    kind: str
    instance_type: str
    parent: Record | None
    op: str | None = None
    module: nn.Module | None = None
    children: list[Record] = field(default_factory=list)
    calls: int = 0
    flops: int = 0
    mem_bytes: int = 0
    num_parameters: int = 0
    input_shapes: list[list[int]] = field(default_factory=list)
    output_shapes: list[list[int]] = field(default_factory=list)
    dtype: str | None = None
    signature: str | None = None
    replay: Callable[[], Any] | None = None
    identity: bool = False
    own_flops: int = 0
    own_mem_bytes: int = 0

    @property
    def is_leaf(self) -> bool:
        return self.kind in ("leaf", "function", "composite")

    def walk(self) -> Iterator[Record]:
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass
class _Frame:
    record: Record | None  # None: a module called inside an opaque leaf (not a node)
    flops_before: int = 0
    first: bool = False
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    #: first call of a module: the spec of its inputs and, in call order, every torch call of
    #: its body (a tuple) and every child module it called (the child's Record), for its work
    #: signature (see the module docstring)
    input_spec: tuple = ()
    body: list = field(default_factory=list)


def normalise_name(func: Any) -> str:
    """``torch.Tensor.__iadd__`` -> "add", ``F.softmax`` -> "softmax", ``Tensor.mul_`` -> "mul"."""
    name = getattr(func, "__name__", None) or type(func).__name__
    if name.startswith("__") and name.endswith("__"):
        core = name[2:-2]
        return _DUNDER_ALIASES.get(core, core)
    if name.endswith("_") and not name.startswith("_"):
        return name[:-1]
    return name


def is_inplace(func: Any) -> bool:
    name = getattr(func, "__name__", "")
    return (name.startswith("__i") and name.endswith("__")) or \
        (name.endswith("_") and not name.startswith("_"))


def function_type(op: str) -> str:
    """Instance type of a function leaf: IrEne-style names (MatMul, Softmax), else CamelCase."""
    if op in FUNCTION_TYPES:
        return FUNCTION_TYPES[op]
    return "".join(part.capitalize() for part in op.split("_") if part) or "Function"


def tensors_in(value: Any) -> list[torch.Tensor]:
    return [t for t in tree_leaves(value) if isinstance(t, torch.Tensor)]


def _shapes(tensors: list[torch.Tensor]) -> list[list[int]]:
    return [list(t.shape) for t in tensors[:MAX_SHAPES]]


def _dtype_of(*groups: list[torch.Tensor]) -> str | None:
    for group in groups:
        for t in group:
            if t.is_floating_point():
                return str(t.dtype).replace("torch.", "")
    for group in groups:
        for t in group:
            return str(t.dtype).replace("torch.", "")
    return None


def _spec(value: Any) -> Any:
    """A hashable description of an argument: tensors by shape/dtype/stride, objects by type."""
    if isinstance(value, torch.Tensor):
        return ("T", tuple(value.shape), str(value.dtype), tuple(value.stride()),
                value.device.type, isinstance(value, nn.Parameter))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_spec(v) for v in value))
    if isinstance(value, dict):  # an ``eps=`` keyword is a stability epsilon (see above)
        return ("dict", tuple((str(k), _spec(v)) for k, v in value.items()
                              if k not in EPSILON_NAMES))
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (torch.dtype, torch.device, torch.Size, slice)):
        return str(value)
    state = getattr(value, "irene_spec", None)
    if callable(state):  # a stateful input (a KV cache): described by the state it starts from
        return ("state", type(value).__qualname__, state())
    return ("obj", type(value).__module__, type(value).__qualname__)


_SKIPPED_ATTRS = {"training", "layer_idx", "layer_id", "idx", "index", "layer_number"}
#: numerical-stability epsilons: their value never changes the work (one add of a scalar), so
#: ``LayerNorm(eps=1e-12)`` and ``LayerNorm(eps=1e-5)`` share a signature (BERT and RoBERTa)
EPSILON_NAMES = {"eps", "epsilon", "variance_epsilon", "layer_norm_eps", "layer_norm_epsilon",
                 "norm_eps", "rms_norm_eps"}
_SIMPLE = (bool, int, float, str, type(None))


def _attribute_value(value: Any) -> Any:
    """A module attribute as a plain value for its signature, or ``_NOT_SIMPLE``: numbers,
    strings, None, tuples/lists of them (``normalized_shape``, a convolution's ``stride``) and
    plain functions (by qualified name)."""
    if isinstance(value, _SIMPLE):
        return value
    if isinstance(value, (tuple, list)) and all(isinstance(v, _SIMPLE) for v in value):
        return tuple(value)
    if isinstance(value, types.FunctionType):
        return f"fn:{value.__module__}.{value.__qualname__}"
    return _NOT_SIMPLE


_NOT_SIMPLE = object()


def _module_structure(module: nn.Module) -> tuple:
    """Class, simple attributes and parameter shapes of a module and all its submodules.

    Per-layer indices (``layer_idx``, ...) are left out so identical layers share a signature.
    """
    parts = []
    for name, sub in module.named_modules():
        values = ((k, _attribute_value(v)) for k, v in vars(sub).items()
                  if k not in _SKIPPED_ATTRS and k not in EPSILON_NAMES
                  and not k.startswith("_"))
        attrs = tuple(sorted((k, v) for k, v in values if v is not _NOT_SIMPLE))
        params = tuple((n, tuple(p.shape), str(p.dtype))
                       for n, p in sub.named_parameters(recurse=False))
        parts.append((name, type(sub).__module__, type(sub).__qualname__, attrs, params))
    return tuple(parts)


def signature_of(*parts: Any) -> str:
    """A stable hex digest of ``parts`` (a tuple of plain values)."""
    return hashlib.md5(repr(parts).encode("utf-8")).hexdigest()


def _clone_inputs(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Copies of the tensors in ``args``/``kwargs`` (parameters and buffers kept as they are)."""
    def copy(value: Any) -> Any:
        if isinstance(value, nn.Parameter):
            return value
        if isinstance(value, torch.Tensor):
            return value.detach().clone()
        return value
    return tree_map(copy, args), tree_map(copy, kwargs)


class ForwardCapture(TorchFunctionMode):
    """Records the call tree of one forward pass of ``model`` (use as a context manager).

    After the ``with`` block, :attr:`root` is the model's :class:`Record` and
    :attr:`counted_flops` the FlopCounterMode total of the whole pass.
    """

    def __init__(self, model: nn.Module, *, record_inputs: bool = False,
                 dedup: bool = True, schema: TraceSchema = IRENE,
                 substitutes: dict[str, Callable[..., Any]] | None = None) -> None:
        super().__init__()
        self.model = model
        self.schema = schema
        self.substitutes = substitutes or {}  # op -> what runs in its place (meta device)
        self.record_inputs = record_inputs
        self.dedup = dedup
        self.names = {m: name for name, m in model.named_modules()}
        self.records: dict[tuple[nn.Module, int], Record] = {}
        self.root: Record | None = None
        self.counted_flops = 0
        self._stack: list[_Frame] = []
        self._opaque = 0
        self._internal = False
        self._scopes = {"root" if not n else f"root.{n}" for n in self.names.values()}
        self._claimed: set[str] = set()  # module scopes given to a record
        self._recorded_signatures: set[str] = set()
        self._recorded_work: set[str] = set()  # work signatures of modules with recorded inputs
        self._counter = flop_counter_mode() if schema.call_cost is None else None
        self._costed_flops = 0  # total FLOPs charged by the schema's cost table
        self._exit = contextlib.ExitStack()

    # -- context management ----------------------------------------------------------------

    def __enter__(self) -> ForwardCapture:
        try:
            for module in self.names:
                self._exit.callback(module.register_forward_pre_hook(
                    self._pre_hook, with_kwargs=True).remove)
                self._exit.callback(module.register_forward_hook(
                    self._post_hook, with_kwargs=True, always_call=True).remove)
            self._patch_composites()
            if self._counter is not None:
                self._exit.enter_context(self._counter)
            super().__enter__()
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            super().__exit__(*exc)
        finally:
            self.counted_flops = self._flops()
            self._exit.close()

    def _patch_composites(self) -> None:
        """Wrap known composite helpers in the modeling modules of the model's classes."""
        module_names = {type(m).__module__ for m in self.names}
        for module_name in module_names:
            pymod = sys.modules.get(module_name)
            for fn_name, itype in self.schema.composite_functions.items():
                original = getattr(pymod, fn_name, None)
                if original is None or not callable(original) or \
                        getattr(original, "_irene_wrapped", False):
                    continue
                wrapper = self._composite_wrapper(fn_name, itype, original)
                setattr(pymod, fn_name, wrapper)
                self._exit.callback(setattr, pymod, fn_name, original)

    def _composite_wrapper(self, fn_name: str, itype: str, original: Callable) -> Callable:
        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return self._run_leaf_call("composite", fn_name, itype, original, args, kwargs,
                                       inplace=False)
        wrapper._irene_wrapped = True
        return wrapper

    # -- bookkeeping -----------------------------------------------------------------------

    def _flops(self) -> int:
        if self._counter is None:
            return self._costed_flops
        return self._counter.get_total_flops()

    def _unique_scope(self, base: str) -> str:
        scope, n = base, 0
        while scope in self._scopes:
            n += 1
            scope = f"{base}_{n}"
        self._scopes.add(scope)
        return scope

    def _current(self) -> Record | None:
        return self._stack[-1].record if self._stack else None

    def _note_in_body(self, entry: Any) -> None:
        """Add a child module's record or a torch call to the current module's body (first
        call only)."""
        frame = self._stack[-1] if self._stack else None
        if frame is not None and frame.first and frame.record is not None:
            frame.body.append(entry)

    def _set_work_signature(self, record: Record, frame: _Frame) -> None:
        """Give a module the signature of the work its first call did (see the module
        docstring), and make sure the first module of each work signature can be replayed: the
        inputs kept at its start are dropped when that work is already kept, and taken now
        (after the call; shapes and dtypes are what they were) when the class-based choice
        skipped them."""
        body = tuple(("module", e.signature) if isinstance(e, Record) else e
                     for e in frame.body)
        record.signature = signature_of("work", record.kind, frame.input_spec, body)
        if not self.record_inputs:
            return
        if record.replay is not None:
            if self.dedup and record.signature in self._recorded_work:
                record.replay = None
            self._recorded_work.add(record.signature)
        elif record.signature not in self._recorded_work and record.module is not None:
            self._recorded_work.add(record.signature)
            cargs, ckwargs = _clone_inputs(frame.args, frame.kwargs)
            record.replay = functools.partial(call_function, record.module, cargs, ckwargs)

    def _should_record(self, signature: str) -> bool:
        if not self.record_inputs:
            return False
        if self.dedup and signature in self._recorded_signatures:
            return False
        self._recorded_signatures.add(signature)
        return True

    # -- module hooks ----------------------------------------------------------------------

    def _record_for(self, module: nn.Module) -> Record:
        """The record of ``module`` called from the current module (one per calling parent).

        A module instance shared by several parents (e.g. one activation object used by every
        block) gets one node under each parent, named after the parent's attribute.
        """
        parent = self._current()
        key = (module, id(parent))
        record = self.records.get(key)
        if record is not None:
            return record
        is_root = module is self.model
        leaf = not is_root and self.schema.leaf_module(module)
        record = Record(scope=self._scope_for(module, parent),
                        kind="model" if is_root else ("leaf" if leaf else "module"),
                        instance_type=self.schema.instance_type(module), parent=parent,
                        module=module,
                        num_parameters=sum(p.numel() for p in module.parameters()))
        self.records[key] = record
        if is_root:
            self.root = record
        elif parent is not None:
            parent.children.append(record)
        return record

    def _scope_for(self, module: nn.Module, parent: Record | None) -> str:
        if module is self.model:
            return "root"
        canonical = f"root.{self.names[module]}"
        if canonical not in self._claimed and \
                (parent is None or canonical.startswith(parent.scope + ".")):
            self._claimed.add(canonical)
            return canonical
        path = None
        if parent is not None and parent.module is not None:
            path = next((n for n, c in parent.module.named_modules(remove_duplicate=False)
                         if c is module and n), None)
        base = f"{parent.scope}.{path}" if path else canonical
        if base not in self._scopes:
            self._scopes.add(base)
            return base
        return self._unique_scope(base)

    def _pre_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self._internal = True
        try:
            if self._opaque or (self._stack and self._stack[-1].record is None) or \
                    (not self._stack and module is not self.model):
                self._stack.append(_Frame(None))
                return
            record = self._record_for(module)
            record.calls += 1
            self._note_in_body(record)
            frame = _Frame(record, self._flops(), record.calls == 1, args, kwargs)
            if frame.first:
                inputs = tensors_in((args, kwargs))
                record.input_shapes = _shapes(inputs)
                frame.input_spec = (_spec(args), _spec(kwargs))
                # a module's signature is replaced by its work signature when its call ends;
                # this one (class, attributes, parameters, inputs) decides whose inputs to keep
                record.signature = signature_of(record.kind, _module_structure(module),
                                                *frame.input_spec)
                if self._should_record(record.signature):
                    cargs, ckwargs = _clone_inputs(args, kwargs)
                    record.replay = replay_of(module, cargs, ckwargs)
            if record.kind == "leaf":
                self._opaque += 1
            self._stack.append(frame)
        finally:
            self._internal = False

    def _post_hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        self._internal = True
        try:
            frame = self._stack.pop()
            record = frame.record
            if record is None:
                return
            outputs = tensors_in(output)
            if frame.first:
                record.output_shapes = _shapes(outputs)
                record.dtype = _dtype_of(outputs, tensors_in((args, kwargs)))
            if record.kind != "leaf":
                if frame.first:
                    self._set_work_signature(record, frame)
                return
            self._opaque -= 1
            flops = self._flops() - frame.flops_before
            inputs = tensors_in((frame.args, frame.kwargs))
            if self._counter is not None:  # a cost table charged the calls as they ran
                record.flops += flops
                params = list(module.parameters())
                record.mem_bytes += tensor_bytes([*inputs, *outputs, *params])
            if frame.first:
                returned_input = bool(inputs) and output is inputs[0]
                record.identity = isinstance(module, IDENTITY_MODULES) or \
                    (returned_input and flops == 0)
        finally:
            self._internal = False

    # -- functional primitives -------------------------------------------------------------

    def __torch_function__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if self._internal or not self._stack:
            return func(*args, **kwargs)
        if self.schema.call_cost is not None:
            return self._costed_call(func, args, kwargs)
        if self._opaque or self._stack[-1].record is None:
            return func(*args, **kwargs)
        op = normalise_name(func)
        return self._run_leaf_call("function", op, function_type(op), func, args, kwargs,
                                   inplace=is_inplace(func))

    def _costed_call(self, func: Callable, args: tuple, kwargs: dict) -> Any:
        """A call under a schema with a cost table: a function leaf if the schema says so (in a
        module's body), else its cost is charged to the innermost recorded node running it."""
        op = normalise_name(func)
        leaves = self.schema.function_leaves or {}
        if op in leaves and not self._opaque and self._stack[-1].record is not None:
            return self._run_leaf_call("function", op, leaves[op], func, args, kwargs,
                                       inplace=is_inplace(func))
        out = self.substitutes.get(op, func)(*args, **kwargs)
        target = next((f.record for f in reversed(self._stack) if f.record is not None), None)
        if target is not None:
            flops, nbytes = self.schema.call_cost(jit_op_name(func), args, kwargs, out)
            self._costed_flops += flops
            if target.is_leaf:
                target.flops += flops
                target.mem_bytes += nbytes
            else:
                target.own_flops += flops
                target.own_mem_bytes += nbytes
        return out

    def _run_leaf_call(self, kind: str, op: str, itype: str, func: Callable, args: tuple,
                       kwargs: dict, *, inplace: bool, extra_bytes: int = 0) -> Any:
        """Run one direct call of a non-leaf module; keep it as a leaf if it did any work.

        ``extra_bytes``: bytes the call moves beyond its tensor arguments and results (the
        cached keys and values a KV-cache update copies).
        """
        parent = self._current()
        if self._opaque or parent is None:
            return func(*args, **kwargs)
        qualname = f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', op)}"
        if getattr(func, "__name__", None) not in METADATA_CALLS:
            self._internal = True
            try:
                self._note_in_body((kind, qualname, _spec(args), _spec(kwargs)))
            finally:
                self._internal = False
        before_inputs = _clone_inputs(args, kwargs) if inplace and self.record_inputs else None
        before = self._flops()
        self._opaque += 1
        try:
            out = self.substitutes.get(op, func)(*args, **kwargs)
        finally:
            self._opaque -= 1
        nbytes = None
        if self.schema.call_cost is not None:
            flops, nbytes = self.schema.call_cost(jit_op_name(func), args, kwargs, out)
            self._costed_flops += flops
        else:
            flops = self._flops() - before
            if flops == 0 and kind == "function" and op not in ALWAYS_LEAF:
                return out
        self._internal = True
        try:
            self._add_leaf(kind, op, itype, func, args, kwargs, out, flops, before_inputs,
                           parent, nbytes, extra_bytes)
        finally:
            self._internal = False
        return out

    def _add_leaf(self, kind: str, op: str, itype: str, func: Callable, args: tuple,
                  kwargs: dict, out: Any, flops: int, before_inputs: tuple | None,
                  parent: Record, nbytes: int | None = None, extra_bytes: int = 0) -> None:
        """A function/composite leaf under ``parent``; its ``mem_bytes`` is ``nbytes`` (default:
        the bytes of its distinct inputs and outputs) plus ``extra_bytes`` (what the call moves
        beyond its tensor arguments, e.g. a KV cache it reads and grows)."""
        inputs = tensors_in((args, kwargs))
        outputs = tensors_in(out)
        params = {id(t): t for t in inputs if isinstance(t, nn.Parameter)}
        base = f"{parent.scope}.{op}"
        scope = self._unique_scope(base) if self.schema.unique_function_scopes else base
        record = Record(scope=scope, kind=kind,
                        instance_type=itype, parent=parent, op=op, calls=1, flops=flops,
                        mem_bytes=(tensor_bytes([*inputs, *outputs]) if nbytes is None
                                   else nbytes) + extra_bytes,
                        num_parameters=sum(p.numel() for p in params.values()),
                        input_shapes=_shapes(inputs), output_shapes=_shapes(outputs),
                        dtype=_dtype_of(outputs, inputs))
        qualname = f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', op)}"
        spec_source = before_inputs if before_inputs is not None else (args, kwargs)
        record.signature = signature_of(kind, qualname, _spec(spec_source[0]),
                                        _spec(spec_source[1]))
        if self._should_record(record.signature):
            cargs, ckwargs = before_inputs or _clone_inputs(args, kwargs)
            record.replay = replay_of(func, cargs, ckwargs)
        parent.children.append(record)


def replay_of(fn: Callable, args: tuple, kwargs: dict) -> Callable[[], Any]:
    """A callable running ``fn(*args, **kwargs)``; every object among ``fn`` and the arguments
    that has ``reset_for_replay()`` (a KV cache) is reset before each call, so every replay
    starts from the same state."""
    stateful = {id(v): v for v in (fn, *tree_leaves((args, kwargs)))
                if not isinstance(v, (torch.Tensor, nn.Module))
                and callable(getattr(v, "reset_for_replay", None))}
    if not stateful:
        return functools.partial(call_function, fn, args, kwargs)
    return functools.partial(_call_from_start, tuple(stateful.values()), fn, args, kwargs)


def call_function(fn: Callable, args: tuple, kwargs: dict) -> Any:
    return fn(*args, **kwargs)


def _call_from_start(stateful: tuple, fn: Callable, args: tuple, kwargs: dict) -> Any:
    for value in stateful:
        value.reset_for_replay()
    return fn(*args, **kwargs)
