"""Tracing on the ``meta`` device: structure and features without weights or compute.

A features-only trace needs shapes, not values: on ``torch.device("meta")`` every tensor has a
shape and a dtype but no storage, so building a 70B-parameter model costs no memory and its
forward pass runs no arithmetic, while ``FlopCounterMode``, the byte counts and the call tree see
exactly the same operations as on a real device.

What cannot run on meta is code whose *control flow* reads tensor values (``.item()``, ``if
t.all():``); on meta it raises instead of silently taking another branch. The known helpers of
``transformers`` that do this on our inputs are replaced, while any trace runs (real or meta,
so both run the same code), by the answer a real run on our inputs gives (:data:`META_SHIMS`);
calls whose meta implementation differs from the real kernel run the real kernel's meta
implementation instead (:data:`META_SUBSTITUTES`). The tests compare meta traces with real ones
node by node. An unknown value-dependent op raises :class:`MetaTraceError`.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn


class MetaTraceError(RuntimeError):
    """The forward pass read tensor values, which the meta device does not have."""


def _not_packed(position_ids: torch.Tensor) -> None:
    """``find_packed_sequence_indices`` on our inputs: one sequence per row (position ids
    0..seq_len-1), so never packed — what the real function returns for them."""
    return None


#: (module, attribute, replacement): value-dependent helpers answered for our inputs on meta
META_SHIMS: list[tuple[str, str, Callable[..., Any]]] = [
    ("transformers.masking_utils", "find_packed_sequence_indices", _not_packed),
]


def fused_attention_on_meta(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           attn_mask: torch.Tensor | None = None, dropout_p: float = 0.0,
                           is_causal: bool = False, scale: float | None = None,
                           enable_gqa: bool = False) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` as the fused kernel a real device runs.

    On meta, torch falls back to the math decomposition (two ``bmm``, a scale per element of q
    and k, ``_safe_softmax``), which the FLOP counter counts differently from the fused kernel
    that CPU and CUDA run; calling the fused CPU kernel's meta implementation gives the same
    output shape and the same count (:func:`irene.tracing.flops.sdpa_flops`).
    """
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        groups = query.shape[-3] // key.shape[-3]
        key = key.repeat_interleave(groups, dim=-3)
        value = value.repeat_interleave(groups, dim=-3)
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        attn_mask = attn_mask.to(query.dtype)  # the additive mask the kernel is given
    out = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        query, key, value, dropout_p, is_causal, attn_mask=attn_mask, scale=scale)
    return out[0]


#: torch function name -> what runs in its place on meta (same shapes and counts as real)
META_SUBSTITUTES: dict[str, Callable[..., Any]] = {
    "scaled_dot_product_attention": fused_attention_on_meta,
}


def is_on_meta(model: nn.Module) -> bool:
    """Whether ``model``'s parameters (or buffers) live on the meta device."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device.type == "meta"
    return False


@contextlib.contextmanager
def meta_shims() -> Iterator[None]:
    """Replace the helpers of :data:`META_SHIMS` while the block runs; restore them after."""
    with contextlib.ExitStack() as stack:
        for module_name, attr, replacement in META_SHIMS:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            original = getattr(module, attr, None)
            if original is None:
                continue
            setattr(module, attr, replacement)
            stack.callback(setattr, module, attr, original)
        yield


def is_value_dependent_error(exc: BaseException) -> bool:
    """Whether ``exc`` is torch refusing to read values of a meta tensor."""
    text = str(exc)
    return isinstance(exc, (RuntimeError, NotImplementedError)) and "meta" in text and (
        "item()" in text or "data-dependent" in text or "Cannot copy out of meta" in text
        or "not implemented" in text.lower())
