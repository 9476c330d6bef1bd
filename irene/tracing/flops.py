"""FLOPs and bytes of the forward pass: torch's ``FlopCounterMode`` plus formulas it leaves out.

Convention (stored in each tree's ``units`` metadata):

* one multiply-add is **2 FLOPs** (``FlopCounterMode``'s matrix products: ``mm``/``bmm``:
  ``2·m·n·k``); the bias of ``addmm``/``baddbmm`` (a ``Linear``/``Conv1D`` bias, ...) adds
  **1 FLOP per output element**;
* every elementary pointwise function on floating-point tensors (add, mul, div, exp, tanh, erf,
  sigmoid, rsqrt, pow, ...) is **1 FLOP per output element**; reductions (sum, mean, amax, ...)
  **1 FLOP per input element**; operations on integer/bool tensors, comparisons, selections
  (``where``, ``masked_fill``), copies, views, concatenation and embedding look-ups are **0**;
* fused kernels count their elementary steps per element: softmax / log-softmax **5** (max,
  subtract, exp, sum, divide), layer norm / group norm **5** (+1 for the weight, +1 for the
  bias), RMS norm **4** (+1 for the weight), batch norm at inference **2** (+2 affine), GELU
  **5** (erf form) or **9** (tanh form), SiLU **2**;
* scaled-dot-product attention: ``FlopCounterMode``'s two matrix products plus **6 FLOPs per
  attention score** (scale 1, softmax 5), +1 per score with an additive mask; causal masking is
  not discounted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.utils import flop_counter
from torch.utils._pytree import tree_leaves

aten = torch.ops.aten

FLOP_CONVENTION = (
    "1 multiply-add = 2 FLOPs (FlopCounterMode); addmm/baddbmm bias +1 per output element; "
    "pointwise functions on floating-point tensors 1 FLOP per output element, reductions 1 per "
    "input element; softmax 5, layer/group norm 5 (+1 weight, +1 bias), RMS norm 4 (+1 weight), "
    "GELU 5 (erf) or 9 (tanh), SiLU 2 per element; SDPA = its two matmuls + 6 per score; "
    "integer/bool ops, selections, copies, views and look-ups 0"
)

#: pointwise aten ops -> FLOPs per output element (in-place ``name_`` variants included)
POINTWISE_COST: dict[str, int] = {
    **dict.fromkeys([
        "add", "sub", "rsub", "mul", "div", "neg", "reciprocal", "pow", "sqrt", "rsqrt", "exp",
        "exp2", "expm1", "log", "log1p", "log2", "log10", "sin", "cos", "tan", "tanh",
        "sigmoid", "erf", "erfc", "erfinv", "abs", "clamp", "clamp_min", "clamp_max", "minimum",
        "maximum", "relu", "hardtanh", "leaky_relu", "elu", "celu", "selu", "threshold",
        "hardsigmoid", "hardswish", "square", "fmod", "remainder", "floor", "ceil", "round",
        "trunc", "frac", "sign", "atan", "asin", "acos", "sinh", "cosh", "atan2", "logit",
        "xlogy", "hypot", "copysign", "floor_divide", "true_divide",
    ], 1),
    "addcmul": 2, "addcdiv": 2, "lerp": 2, "softplus": 3, "mish": 5, "silu": 2,
    "log_sigmoid_forward": 4, "glu": 5,
}
#: reductions -> FLOPs per input element
REDUCTION_COST: dict[str, int] = {
    "sum": 1, "mean": 1, "amax": 1, "amin": 1, "prod": 1, "cumsum": 1, "cumprod": 1,
    "logsumexp": 3, "var": 3, "var_mean": 3, "std": 4, "std_mean": 4, "norm": 2,
    "linalg_vector_norm": 2, "max": 1, "min": 1, "nansum": 1,
}
SOFTMAX_COST = 5
NORM_COST = 5
RMS_NORM_COST = 4
BATCH_NORM_COST = 2
GELU_COST = {"none": 5, "tanh": 9}
ATTENTION_SCORE_COST = 6


def _first_tensor(value: Any) -> torch.Tensor | None:
    for leaf in tree_leaves(value):
        if isinstance(leaf, torch.Tensor):
            return leaf
    return None


def float_numel(value: Any) -> int:
    """Elements of the first tensor in ``value`` if it is floating point (or complex), else 0."""
    t = _first_tensor(value)
    if t is None or not (t.is_floating_point() or t.is_complex()):
        return 0
    return t.numel()


def raw_count(fn: Callable[..., int]) -> Callable[..., int]:
    fn._get_raw = True  # FlopCounterMode passes the tensors themselves, not their shapes
    return fn


def _pointwise(cost: int) -> Callable[..., int]:
    return raw_count(lambda *args, out_val=None, **kwargs: cost * float_numel(out_val))


def _reduction(cost: int) -> Callable[..., int]:
    def count(*args: Any, out_val: Any = None, **kwargs: Any) -> int:
        return cost * float_numel(args[0]) if float_numel(out_val) else 0
    return raw_count(count)


@raw_count
def _addmm(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *args: Any,
           out_val: Any = None, **kwargs: Any) -> int:
    return flop_counter.mm_flop(a.shape, b.shape) + float_numel(out_val)


@raw_count
def _baddbmm(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *args: Any,
             out_val: Any = None, **kwargs: Any) -> int:
    return flop_counter.bmm_flop(a.shape, b.shape) + float_numel(out_val)


@raw_count
def _softmax(*args: Any, out_val: Any = None, **kwargs: Any) -> int:
    return SOFTMAX_COST * float_numel(out_val)


@raw_count
def _layer_norm(x: torch.Tensor, shape: Any, weight: Any = None, bias: Any = None, *args: Any,
                out_val: Any = None, **kwargs: Any) -> int:
    per = NORM_COST + (weight is not None) + (bias is not None)
    return per * float_numel(x)


@raw_count
def _group_norm(x: torch.Tensor, weight: Any = None, bias: Any = None, *args: Any,
                out_val: Any = None, **kwargs: Any) -> int:
    per = NORM_COST + (weight is not None) + (bias is not None)
    return per * float_numel(x)


@raw_count
def _rms_norm(x: torch.Tensor, shape: Any, weight: Any = None, *args: Any, out_val: Any = None,
              **kwargs: Any) -> int:
    return (RMS_NORM_COST + (weight is not None)) * float_numel(x)


@raw_count
def _batch_norm(x: torch.Tensor, weight: Any = None, bias: Any = None, *args: Any,
                out_val: Any = None, **kwargs: Any) -> int:
    per = BATCH_NORM_COST + (weight is not None) + (bias is not None)
    return per * float_numel(x)


@raw_count
def _gelu(x: torch.Tensor, *args: Any, out_val: Any = None, approximate: str = "none",
          **kwargs: Any) -> int:
    if args:
        approximate = args[0]
    return GELU_COST.get(approximate, GELU_COST["none"]) * float_numel(out_val)


def sdpa_flops(q: torch.Size, k: torch.Size, v: torch.Size, *, masked: bool = False) -> int:
    """FLOPs of scaled-dot-product attention on (batch, heads, seq, dim) shapes (see module doc).

    Leading dimensions other than (batch, heads) are folded into the batch.
    """
    q4, k4, v4 = (as_4d(s) for s in (q, k, v))
    scores = q4[0] * q4[1] * q4[2] * k4[2]
    per_score = ATTENTION_SCORE_COST + (1 if masked else 0)
    return flop_counter.sdpa_flop_count(q4, k4, v4) + per_score * scores


def as_4d(shape: Iterable[int]) -> tuple[int, int, int, int]:
    dims = list(shape)
    while len(dims) < 4:
        dims.insert(0, 1)
    lead = 1
    for d in dims[:-3]:
        lead *= d
    return (lead, dims[-3], dims[-2], dims[-1])


def _sdpa_with(mask_position: int | None) -> Callable[..., int]:
    @raw_count
    def count(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *args: Any, out_val: Any = None,
              **kwargs: Any) -> int:
        mask = kwargs.get("attn_mask", kwargs.get("attn_bias"))
        if mask is None and mask_position is not None and len(args) > mask_position:
            mask = args[mask_position]
        return sdpa_flops(q.shape, k.shape, v.shape, masked=isinstance(mask, torch.Tensor))
    return count


def _packets(name: str) -> list[Any]:
    return [p for p in (getattr(aten, name, None), getattr(aten, name + "_", None))
            if p is not None]


def extra_flop_formulas() -> dict[Any, Callable[..., int]]:
    """Our formulas, as a ``custom_mapping`` for ``FlopCounterMode`` (aten packet -> formula)."""
    mapping: dict[Any, Callable[..., int]] = {}
    for name, cost in POINTWISE_COST.items():
        for packet in _packets(name):
            mapping[packet] = _pointwise(cost)
    for name, cost in REDUCTION_COST.items():
        packet = getattr(aten, name, None)
        if packet is not None:
            mapping[packet] = _reduction(cost)
    mapping[aten.addmm] = _addmm
    mapping[aten.baddbmm] = _baddbmm
    for name in ("_softmax", "_log_softmax", "_safe_softmax", "softmax", "log_softmax"):
        if hasattr(aten, name):
            mapping[getattr(aten, name)] = _softmax
    mapping[aten.native_layer_norm] = _layer_norm
    mapping[aten.native_group_norm] = _group_norm
    if hasattr(aten, "_fused_rms_norm"):
        mapping[aten._fused_rms_norm] = _rms_norm
    for name in ("_native_batch_norm_legit_no_training", "native_batch_norm"):
        mapping[getattr(aten, name)] = _batch_norm
    for packet in _packets("gelu"):
        mapping[packet] = _gelu
    # the CPU kernel of F.scaled_dot_product_attention, which FlopCounterMode does not know
    mapping[aten._scaled_dot_product_flash_attention_for_cpu] = _sdpa_with(None)
    mapping[aten._scaled_dot_product_flash_attention] = _sdpa_with(None)
    mapping[aten._scaled_dot_product_efficient_attention] = _sdpa_with(0)
    mapping[aten._scaled_dot_product_cudnn_attention] = _sdpa_with(0)
    return mapping


def flop_counter_mode() -> flop_counter.FlopCounterMode:
    """A silent ``FlopCounterMode`` extended with :func:`extra_flop_formulas`."""
    return flop_counter.FlopCounterMode(display=False, custom_mapping=extra_flop_formulas())


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct tensors (by identity) in ``tensors``: numel x element size."""
    seen: set[int] = set()
    total = 0
    for t in tensors:
        if id(t) in seen:
            continue
        seen.add(id(t))
        total += t.numel() * t.element_size()
    return total
