"""FLOPs of the loss and of the backward kernels: formulas ``FlopCounterMode`` does not have.

Same convention as :mod:`irene.tracing.flops` (1 multiply-add = 2 FLOPs, pointwise functions 1
FLOP per output element, reductions 1 per input element, selections, copies and look-ups 0).
Backward kernels that autograd runs as ordinary ops (``mm`` for the weight and input gradients
of a linear layer, ``sum`` for a bias gradient, ``mul``/``div``/``add`` for element-wise
derivatives, the ``add`` that sums the gradients of a tensor used twice) are counted by those
ops' formulas. The fused kernels below count their elementary steps per element:

* softmax backward **4** (``y·(g − Σ g·y)``: multiply, row sum, subtract, multiply); log-softmax
  backward **4** (exp, row sum, multiply, subtract);
* layer / group norm backward **10** per element for the input gradient (normalise 2, ``g·w``
  1, ``g·w·x̂`` 1, two row means 2, combine 4), **+2** for the weight gradient (multiply, sum),
  **+1** for the bias gradient (sum); RMS norm backward **7** (+2 weight);
* GELU backward **11** (erf form: cdf 4, pdf 4, combine 3) or **18** (tanh form); tanh and
  sigmoid backward **3**; SiLU backward **6**; ReLU (threshold) backward **1**;
* embedding backward **1** per gradient element (the gradient rows are added into the weight
  gradient; the forward look-up counts 0);
* scaled-dot-product attention backward: ``FlopCounterMode``'s five matrix products (the
  recomputed scores, dV, dP, dQ, dK) plus **6 per attention score** (recompute the
  probabilities 3, ``P·(dP − D)`` 2, scale 1), +1 per score with an additive mask;
* the loss: negative log-likelihood forward **1** per target (sum of the picked log
  probabilities), backward **1** per target (scatter of the scaled gradient).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils import flop_counter

from irene.tracing.flops import as_4d, extra_flop_formulas, float_numel, raw_count

aten = torch.ops.aten

BACKWARD_FLOP_CONVENTION = (
    "backward: autograd's own ops by the forward formulas (mm for weight and input gradients, "
    "sum for bias gradients, add for summed gradients); softmax/log-softmax backward 4, "
    "layer/group norm backward 10 (+2 weight, +1 bias), RMS norm backward 7 (+2 weight), GELU "
    "backward 11 (erf) or 18 (tanh), tanh/sigmoid 3, SiLU 6, ReLU 1 per element; embedding "
    "backward 1 per gradient element; SDPA backward = its five matmuls + 6 per score; NLL loss "
    "1 per target forward and backward"
)

SOFTMAX_BACKWARD_COST = 4
NORM_BACKWARD_COST = 10
NORM_WEIGHT_GRAD_COST = 2
NORM_BIAS_GRAD_COST = 1
RMS_NORM_BACKWARD_COST = 7
GELU_BACKWARD_COST = {"none": 11, "tanh": 18}
ATTENTION_BACKWARD_SCORE_COST = 6
#: pointwise backward kernels -> FLOPs per element of the gradient they return
POINTWISE_BACKWARD_COST = {"tanh_backward": 3, "sigmoid_backward": 3, "silu_backward": 6,
                           "threshold_backward": 1}


def _numel(t: Any) -> int:
    return t.numel() if isinstance(t, torch.Tensor) else 0


def _mask(output_mask: Any, index: int) -> bool:
    return bool(output_mask[index]) if output_mask is not None else True


@raw_count
def _softmax_backward(grad: torch.Tensor, *args: Any, out_val: Any = None, **kwargs: Any) -> int:
    return SOFTMAX_BACKWARD_COST * float_numel(grad)


@raw_count
def _layer_norm_backward(grad: torch.Tensor, x: torch.Tensor, shape: Any, mean: Any, rstd: Any,
                         weight: Any = None, bias: Any = None, output_mask: Any = None,
                         *args: Any, out_val: Any = None, **kwargs: Any) -> int:
    return _norm_backward(float_numel(x), input_grad=_mask(output_mask, 0),
                          weight_grad=weight is not None and _mask(output_mask, 1),
                          bias_grad=bias is not None and _mask(output_mask, 2))


@raw_count
def _group_norm_backward(grad: torch.Tensor, x: torch.Tensor, mean: Any, rstd: Any,
                         weight: Any = None, *args: Any, out_val: Any = None,
                         **kwargs: Any) -> int:
    # (N, C, HxW, group, output_mask) follow the weight; the bias is not passed
    output_mask = args[4] if len(args) > 4 else kwargs.get("output_mask")
    return _norm_backward(float_numel(x), input_grad=_mask(output_mask, 0),
                          weight_grad=weight is not None and _mask(output_mask, 1),
                          bias_grad=output_mask is not None and _mask(output_mask, 2))


def _norm_backward(elements: int, *, input_grad: bool, weight_grad: bool,
                   bias_grad: bool) -> int:
    per = (NORM_BACKWARD_COST if input_grad else 0) + \
        (NORM_WEIGHT_GRAD_COST if weight_grad else 0) + (NORM_BIAS_GRAD_COST if bias_grad else 0)
    return per * elements


@raw_count
def _rms_norm_backward(grad: torch.Tensor, x: torch.Tensor, shape: Any, rstd: Any,
                       weight: Any = None, output_mask: Any = None, *args: Any,
                       out_val: Any = None, **kwargs: Any) -> int:
    per = RMS_NORM_BACKWARD_COST if _mask(output_mask, 0) else 0
    if weight is not None and _mask(output_mask, 1):
        per += NORM_WEIGHT_GRAD_COST
    return per * float_numel(x)


@raw_count
def _gelu_backward(grad: torch.Tensor, x: torch.Tensor, *args: Any, out_val: Any = None,
                   approximate: str = "none", **kwargs: Any) -> int:
    if args:
        approximate = args[0]
    return GELU_BACKWARD_COST.get(approximate, GELU_BACKWARD_COST["none"]) * float_numel(grad)


def _pointwise_backward(cost: int) -> Callable[..., int]:
    return raw_count(lambda grad, *args, out_val=None, **kwargs: cost * float_numel(grad))


@raw_count
def _embedding_backward(grad: torch.Tensor, *args: Any, out_val: Any = None,
                        **kwargs: Any) -> int:
    return float_numel(grad)


@raw_count
def _nll_loss(x: torch.Tensor, target: torch.Tensor, *args: Any, out_val: Any = None,
              **kwargs: Any) -> int:
    return _numel(target)


@raw_count
def _nll_loss_backward(grad: torch.Tensor, x: torch.Tensor, target: torch.Tensor, *args: Any,
                       out_val: Any = None, **kwargs: Any) -> int:
    return _numel(target)


def sdpa_backward_flops(grad_out: torch.Size, q: torch.Size, k: torch.Size, v: torch.Size, *,
                        masked: bool = False) -> int:
    """FLOPs of scaled-dot-product attention backward (see the module docstring)."""
    g4, q4, k4, v4 = (as_4d(s) for s in (grad_out, q, k, v))
    scores = q4[0] * q4[1] * q4[2] * k4[2]
    per_score = ATTENTION_BACKWARD_SCORE_COST + (1 if masked else 0)
    return flop_counter.sdpa_backward_flop_count(g4, q4, k4, v4) + per_score * scores


def _sdpa_backward_with(mask_position: int | None) -> Callable[..., int]:
    @raw_count
    def count(grad: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              *args: Any, out_val: Any = None, **kwargs: Any) -> int:
        mask = kwargs.get("attn_mask", kwargs.get("attn_bias"))
        if mask is None and mask_position is not None and len(args) > mask_position:
            mask = args[mask_position]
        return sdpa_backward_flops(grad.shape, q.shape, k.shape, v.shape,
                                   masked=isinstance(mask, torch.Tensor))
    return count


def backward_flop_formulas() -> dict[Any, Callable[..., int]]:
    """Formulas for the loss and the backward kernels (aten packet -> formula)."""
    mapping: dict[Any, Callable[..., int]] = {
        aten._softmax_backward_data: _softmax_backward,
        aten._log_softmax_backward_data: _softmax_backward,
        aten.native_layer_norm_backward: _layer_norm_backward,
        aten.native_group_norm_backward: _group_norm_backward,
        aten.gelu_backward: _gelu_backward,
        aten.embedding_dense_backward: _embedding_backward,
        aten.nll_loss_forward: _nll_loss,
        aten.nll_loss2d_forward: _nll_loss,
        aten.nll_loss_backward: _nll_loss_backward,
        aten.nll_loss2d_backward: _nll_loss_backward,
        # (grad_out, q, k, v, out, logsumexp, dropout_p, is_causal, *, attn_mask, scale)
        aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_backward_with(None),
        aten._scaled_dot_product_flash_attention_backward: _sdpa_backward_with(None),
        # (grad_out, q, k, v, attn_bias, ...)
        aten._scaled_dot_product_efficient_attention_backward: _sdpa_backward_with(0),
        # (grad_out, q, k, v, out, logsumexp, philox_seed, philox_offset, attn_bias, ...)
        aten._scaled_dot_product_cudnn_attention_backward: _sdpa_backward_with(4),
    }
    if hasattr(aten, "_fused_rms_norm_backward"):
        mapping[aten._fused_rms_norm_backward] = _rms_norm_backward
    for name, cost in POINTWISE_BACKWARD_COST.items():
        mapping[getattr(aten, name)] = _pointwise_backward(cost)
    return mapping


def training_flop_counter_mode() -> flop_counter.FlopCounterMode:
    """A silent ``FlopCounterMode`` with the forward formulas of :mod:`irene.tracing.flops` and
    the loss and backward formulas of this module."""
    return flop_counter.FlopCounterMode(
        display=False, custom_mapping={**extra_flop_formulas(), **backward_flop_formulas()})
