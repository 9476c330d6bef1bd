"""Tracer-side rules of each feature schema: which calls become leaves, how features are counted.

Two schemas are known to the tracer (``trace_model(..., schema=NAME)``, ``irene trace --schema``):

``irene`` (ours, the default)
    every module without child modules is a leaf, and so is every direct call of a non-leaf
    module that does floating-point work (``MatMul``, ``Softmax``, ``Add``, ``Mul``, ...) or is a
    look-up; FLOPs from torch's ``FlopCounterMode`` extended by :mod:`irene.tracing.flops`;
    ``mem_bytes``: bytes of each primitive call's distinct inputs, outputs and parameters; an inner
    node holds the sum over its leaves.

``irene2021`` (IrEne's published trees, Cao et al., ACL 2021)
    leaves are only the module classes IrEne treated as ML operations (:data:`IRENE_ML_MODULES`:
    Linear, LayerNorm, Embedding, Conv1D, Tanh, ...) and the functional ``matmul``/``bmm``
    (``MatMul``) and ``softmax`` (``Softmax``) called in a module's body. Everything else a module
    runs directly (residual adds, scaling, activation functions, mask arithmetic) is not a leaf:
    its FLOPs and bytes stay in that module, whose features are its own calls plus the sum of its
    children's, so a module's FLOPs exceed its children's sum as in IrEne's trees. A module left
    without any leaf (an activation module, dropout) is not a node either; what it ran is counted
    in its parent. FLOPs and bytes follow the per-operation table of IrEne's graph extractor
    (:func:`irene2021_call_cost`), where e.g. a layer norm is 8 FLOPs and 4 bytes-per-element
    passes, and a ``Linear`` on a 3-D input is a batched matmul that reads its weight once per
    batch row plus an in-place bias add. Two calls of one primitive in one module share IrEne's
    scope (``...attention.self.matmul`` twice). Module classes renamed since IrEne's
    transformers release keep IrEne's names (:data:`IRENE2021_INSTANCE_TYPES`).

A tree records its schema in ``meta["schema"] = {"name": ..., "version": ...}``. The schemas
themselves (names, versions, what they mean) are declared once, in :mod:`irene.schema`; this
module holds only the tracer's rules for each.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from irene.schema import DEFAULT_SCHEMA, SCHEMAS, Schema

#: what a leaf costs: (FLOPs, bytes) of one call; None means "count with FlopCounterMode"
CallCost = Callable[[str, tuple, dict, Any], tuple[int, int]]


@dataclass(frozen=True)
class TraceSchema:
    """The tracer's rules for one feature schema (see the module docstring).

    ``leaf_module``: whether a (non-root) module is an ``ml`` leaf. ``function_leaves``: op name
    -> instance type of the direct calls that become leaves (None: every call that does
    floating-point work, our rule). ``call_cost``: (FLOPs, bytes) of one call by its jit-style
    op name (None: ``FlopCounterMode`` and tensor bytes). ``instance_types``: class-name aliases.
    ``unique_function_scopes``: number repeated function scopes (``matmul``, ``matmul_1``).
    ``attention``: the attention implementations the schema can describe.
    """

    schema: Schema
    leaf_module: Callable[[nn.Module], bool]
    function_leaves: dict[str, str] | None = None
    composite_functions: dict[str, str] = field(default_factory=dict)
    call_cost: CallCost | None = None
    instance_types: dict[str, str] = field(default_factory=dict)
    unique_function_scopes: bool = True
    attention: tuple[str, ...] = ("eager", "sdpa")

    @property
    def name(self) -> str:
        return self.schema.name

    @property
    def record(self) -> dict[str, Any]:
        """What a tree's ``meta["schema"]`` holds."""
        return self.schema.to_dict()

    def instance_type(self, module: nn.Module) -> str:
        name = type(module).__name__
        return self.instance_types.get(name, name)


def has_no_children(module: nn.Module) -> bool:
    return next(module.children(), None) is None


# -- irene2021 ----------------------------------------------------------------------------------

def _irene_ml_modules() -> tuple[type, ...]:
    """Module classes IrEne's extractor treated as ML operations (its ``is_ml_operation``)."""
    classes: list[type] = [nn.Linear, nn.LayerNorm, nn.Embedding, nn.BatchNorm1d, nn.Conv1d,
                           nn.MaxPool1d, nn.AvgPool1d, nn.LSTM, nn.Tanh, nn.LogSigmoid, nn.ReLU,
                           nn.Sigmoid, nn.GELU, nn.LeakyReLU]
    try:
        from transformers.pytorch_utils import Conv1D
        classes.append(Conv1D)
    except ImportError:  # pragma: no cover - transformers always ships Conv1D
        pass
    return tuple(classes)


IRENE_ML_MODULES = _irene_ml_modules()

#: transformers 5 class names -> the names IrEne's trees use for the same modules
IRENE2021_INSTANCE_TYPES = {
    "GPT2Block": "Block", "GPT2Attention": "Attention", "GPT2MLP": "MLP",
    "DistilBertSelfAttention": "MultiHeadSelfAttention",
}

_BINARY_PASSES = {"add": 2, "add_": 2, "div": 2, "pow": 2, "sub": 2,
                  "mul": 3, "mul_": 3, "rsub": 3}
# unary ops: (FLOPs per element, element passes over memory), both on the first input
_UNARY = {"softmax": (5, 3), "layer_norm": (8, 4), "gelu": (6, 2), "relu": (1, 2),
          "tanh": (4, 1), "abs": (1, 1), "max": (1, 1), "min": (1, 1), "mean": (1, 1),
          "sum": (1, 1)}
_JIT_DUNDER = {"__add__": "add", "__radd__": "add", "__iadd__": "add_", "__sub__": "sub",
               "__rsub__": "rsub", "__isub__": "sub_", "__mul__": "mul", "__rmul__": "mul",
               "__imul__": "mul_", "__truediv__": "div", "__itruediv__": "div_",
               "__pow__": "pow", "__rpow__": "pow", "__matmul__": "matmul",
               "__rmatmul__": "matmul"}


def jit_op_name(func: Any) -> str:
    """The op name ``torch.jit.trace`` records for ``func``: ``x += y`` -> ``add_``, ``1 - x`` ->
    ``rsub``, ``F.softmax`` -> ``softmax``, ``Tensor.mul_`` -> ``mul_``."""
    name = getattr(func, "__name__", None) or type(func).__name__
    return _JIT_DUNDER.get(name, name)


def _numel(t: torch.Tensor) -> int:
    return math.prod(t.shape)


def _first_tensor(values: Any) -> torch.Tensor | None:
    for value in values:
        if isinstance(value, torch.Tensor):
            return value
        if isinstance(value, (list, tuple)):
            inner = _first_tensor(value)
            if inner is not None:
                return inner
    return None


def _matmul_cost(a_shape: Any, b_shape: Any, out_shape: Any,
                 itemsize: int) -> tuple[int, int]:
    """IrEne's matmul/bmm: batch x (2·m·n·p FLOPs, m·n + n·p + m·p elements of memory).

    IrEne handled 2-D x 2-D, 3-D x 2-D and 4-D x 4-D; other ranks use the same formula with the
    broadcast batch dimensions folded into the batch.
    """
    a = [1, *a_shape] if len(a_shape) == 1 else list(a_shape)
    b = [*b_shape, 1] if len(b_shape) == 1 else list(b_shape)
    m, n, p = a[-2], a[-1], b[-1]
    batch = math.prod(out_shape) // max(m * p, 1) if len(out_shape) >= 2 else 1
    return 2 * batch * m * n * p, batch * (m * n + n * p + m * p) * itemsize


def _addmm_cost(m1_shape: Any, out_shape: Any, itemsize: int) -> tuple[int, int]:
    n, m = m1_shape
    p = out_shape[-1]
    return 2 * n * m * p, (m * n + m * p + n * p) * itemsize


def _linear_cost(args: tuple, kwargs: dict, out: torch.Tensor) -> tuple[int, int]:
    """``F.linear`` as IrEne's torch traced it: ``addmm`` for a 2-D input with a bias, else
    ``matmul(input, weight.t())`` followed by an in-place bias ``add_``."""
    x = args[0]
    weight = args[1] if len(args) > 1 else kwargs["weight"]
    bias = args[2] if len(args) > 2 else kwargs.get("bias")
    itemsize = weight.element_size()
    if x.dim() == 2 and bias is not None:
        return _addmm_cost(x.shape, out.shape, x.element_size())
    flops, nbytes = _matmul_cost(x.shape, tuple(reversed(weight.shape)), out.shape, itemsize)
    if bias is not None:
        flops += _numel(out)
        nbytes += 2 * _numel(out) * out.element_size()
    return flops, nbytes


def irene2021_call_cost(op: str, args: tuple, kwargs: dict, out: Any) -> tuple[int, int]:
    """(FLOPs, bytes) of one call under IrEne's per-operation table (its ``op_counter``).

    Binary element-wise ops: 1 FLOP per output element and 2 (add, sub, div, pow) or 3 (mul,
    rsub) output-sized passes over memory; unary ops per input element: softmax 5 FLOPs / 3
    passes, layer norm 8 / 4, GELU 6 / 2, tanh 4 / 1, ReLU 1 / 2, reductions 1 / 1; matmul,
    bmm, addmm and linear see :func:`_matmul_cost`, :func:`_linear_cost`; embedding: 0 FLOPs,
    the indices plus the output; clone 2 passes, copy_ 2 passes, 0 FLOPs. Every other op costs
    nothing, as in IrEne (in-place ``div_``/``sub_`` included).
    """
    result = out if isinstance(out, torch.Tensor) else _first_tensor(
        out if isinstance(out, (list, tuple)) else [out])
    if op in _BINARY_PASSES:
        if result is None:
            return 0, 0
        vol = _numel(result)
        return vol, _BINARY_PASSES[op] * vol * result.element_size()
    if op in _UNARY:
        x = _first_tensor(args) if args else _first_tensor(kwargs.values())
        if x is None:
            return 0, 0
        per_flop, passes = _UNARY[op]
        vol = _numel(x)
        return per_flop * vol, passes * vol * x.element_size()
    if op in ("matmul", "bmm"):
        return _matmul_cost(args[0].shape, args[1].shape, result.shape,
                            args[1].element_size())
    if op == "addmm":
        return _addmm_cost(args[1].shape, result.shape, args[1].element_size())
    if op == "linear":
        return _linear_cost(args, kwargs, result)
    if op == "embedding":
        ids = args[0] if args else kwargs["input"]
        return 0, _numel(ids) * ids.element_size() + _numel(result) * result.element_size()
    if op in ("clone", "copy_"):
        x = args[0]
        return 0, 2 * _numel(x) * x.element_size()
    return 0, 0


IRENE = TraceSchema(schema=SCHEMAS["irene"], leaf_module=has_no_children,
                    composite_functions={"apply_rotary_pos_emb": "ApplyRotaryPosEmb"})
IRENE2021 = TraceSchema(
    schema=SCHEMAS["irene2021"],
    leaf_module=lambda module: isinstance(module, IRENE_ML_MODULES),
    function_leaves={"matmul": "MatMul", "bmm": "MatMul", "softmax": "Softmax"},
    call_cost=irene2021_call_cost, instance_types=IRENE2021_INSTANCE_TYPES,
    unique_function_scopes=False, attention=("eager",))  # IrEne had no fused attention

#: schema name -> the tracer's rules for it (one per schema of irene.schema)
TRACE_RULES: dict[str, TraceSchema] = {s.name: s for s in (IRENE, IRENE2021)}
assert set(TRACE_RULES) == set(SCHEMAS), "every schema needs tracer rules"


def trace_rules(name: str | TraceSchema = DEFAULT_SCHEMA) -> TraceSchema:
    """The tracer's rules for schema ``name``; ValueError naming the known schemas otherwise."""
    if isinstance(name, TraceSchema):
        return name
    if name not in TRACE_RULES:
        raise ValueError(f"unknown schema {name!r}; known: {', '.join(TRACE_RULES)}")
    return TRACE_RULES[name]
