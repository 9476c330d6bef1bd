"""Generation phases for the tracer: a prefill that fills a KV cache, and one decode step.

A *phase* says which workload a tree is (its root records ``meta["phase"]`` and
``meta["context_len"]``, both part of :class:`irene.tree.TreeKey`):

* ``forward``: one forward pass over ``seq_len`` tokens without a KV cache (the default; what
  IrEne measured);
* ``prefill``: a forward pass over ``seq_len`` prompt tokens that writes their keys and values into
  a ``transformers`` :class:`~transformers.DynamicCache` (``context_len`` tokens may already be in
  the cache: a chunked prefill; 0 by default);
* ``decode``: one generation step: ``batch_size`` sequences each feed **one** new token
  (``seq_len`` = 1) that attends to a cache already holding ``context_len`` tokens, i.e. to
  ``context_len + 1`` keys, and appends its key and value to the cache.

The cache is the model's own :class:`~transformers.DynamicCache` (built with the model's config, as
``generate`` does), filled through its public ``update`` with random keys and values of the shapes
the model's attention layers produce (found by running the model once on one token). A decode
step therefore runs exactly the code a real ``generate`` step runs: the attention reads all
``context_len + 1`` cached keys and values, and ``DynamicCache.update`` concatenates the new ones to
the old (a copy of the whole layer cache, which a ``StaticCache`` would avoid).

**Cache writes are leaves.** Every ``Cache.update`` call made by an attention module becomes a
``KVCacheUpdate`` leaf under that module: 0 FLOPs, and ``mem_bytes`` = the cached keys and values
it reads + the new keys and values + the grown cache it writes (for ``DynamicCache``: exactly the
traffic of its ``torch.cat``). A ``forward`` tree has no such leaf; a prefill tree has one per
layer and otherwise the same leaves and FLOPs as the forward pass over the same tokens.

**Replays never grow the cache.** The tracer replays nodes alone to time them. A node whose
inputs include the cache (attention modules, decoder layers, the whole model, ``KVCacheUpdate``)
would append to it on every replay; a :class:`StepCache` remembers its state when the step starts
and is put back into that state before every replay (capture calls ``reset_for_replay`` on every
recorded input that has it), so each replay sees the same cache of ``context_len`` tokens. Nothing
is copied: ``DynamicCache`` never writes into its tensors in place (``update`` concatenates into new
tensors), so restoring the layer attributes restores the state. Node signatures describe the cache
by its state at the start of the step (``irene_spec``), so identical layers still share one
measurement and different context lengths never do.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from transformers import DynamicCache

from irene.workload import CACHED_PHASES, Workload, WorkloadError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from irene.tracing.capture import ForwardCapture

#: instance type of the cache-write leaves
KV_CACHE_UPDATE = "KVCacheUpdate"

#: what ``flops`` and ``mem_bytes`` mean per phase (added to each tree's ``units``)
PHASE_UNITS: dict[str, dict[str, str]] = {
    "prefill": {
        "call": "one prefill: batch_size x seq_len prompt tokens written into the KV cache "
                "(which held context_len tokens before)",
        "mem_bytes": "MiB (2^20 bytes) per call: distinct inputs + outputs + parameters of each "
                     "primitive call; a KVCacheUpdate leaf reads the cached keys/values and the "
                     "new ones and writes the grown cache (DynamicCache's concatenation)",
    },
    "decode": {
        "call": "one decode step: batch_size sequences each feed 1 new token that attends to "
                "context_len cached tokens + itself",
        "mem_bytes": "MiB (2^20 bytes) per decode step: distinct inputs + outputs + parameters "
                     "of each primitive call — every weight matrix once per use, the attention "
                     "reads all context_len + 1 keys and values, and a KVCacheUpdate leaf per "
                     "layer reads the cached keys/values and the new ones and writes the grown "
                     "cache (DynamicCache's concatenation)",
    },
}


class PhaseError(ValueError):
    """A model that cannot be traced in a phase (no KV cache, too few positions); says why."""


def phase_units(phase: str) -> dict[str, str]:
    """Overrides of a tree's ``units`` for ``phase`` (empty for ``forward``)."""
    return dict(PHASE_UNITS.get(phase, {}))


# --------------------------------------------------------------------------------------------
# the cache


@dataclass
class _CacheState:
    """The attributes of every layer of a cache at one moment (references, not copies)."""

    layers: list[tuple[Any, dict[str, Any]]]
    spec: tuple

    @classmethod
    def of(cls, cache: DynamicCache) -> _CacheState:
        layers = [(layer, dict(vars(layer))) for layer in cache.layers]
        return cls(layers=layers, spec=cache_spec(cache))

    def restore(self, cache: DynamicCache) -> None:
        del cache.layers[len(self.layers):]
        for index, (layer, attributes) in enumerate(self.layers):
            cache.layers[index] = layer
            vars(layer).clear()
            vars(layer).update(attributes)


def cache_spec(cache: DynamicCache) -> tuple:
    """A hashable description of a cache's state: per layer its class, key/value shapes, dtype."""
    layers = []
    for layer in cache.layers:
        keys = getattr(layer, "keys", None)
        values = getattr(layer, "values", None)
        if isinstance(keys, torch.Tensor) and isinstance(values, torch.Tensor):
            layers.append((type(layer).__name__, tuple(keys.shape), tuple(values.shape),
                           str(keys.dtype)))
        else:
            layers.append((type(layer).__name__, None))
    return (type(cache).__name__, tuple(layers))


class StepCache(DynamicCache):
    """The model's :class:`~transformers.DynamicCache` for one traced step.

    It behaves exactly as a ``DynamicCache`` (same layers, same ``update``), and in addition:
    :meth:`mark_step_start` remembers the state, :meth:`reset_for_replay` puts it back (called
    before every replay of a node that takes the cache), :meth:`irene_spec` describes that state
    for node signatures, and while :meth:`observed_by` a capture, each ``update`` becomes a
    ``KVCacheUpdate`` leaf of the module that calls it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._start: _CacheState | None = None
        self._capture: ForwardCapture | None = None
        super().__init__(*args, **kwargs)

    def mark_step_start(self) -> None:
        """Remember the current state as the one every replay starts from."""
        self._start = _CacheState.of(self)

    def reset_for_replay(self) -> None:
        """Put the cache back into the state of :meth:`mark_step_start`."""
        if self._start is None:
            raise RuntimeError("StepCache.reset_for_replay before mark_step_start")
        self._start.restore(self)

    def irene_spec(self) -> tuple:
        """The state at the start of the step (what a node taking the cache works on)."""
        return self._start.spec if self._start is not None else cache_spec(self)

    def seq_lengths(self) -> list[int]:
        """Cached tokens per layer (0 for a layer not written yet)."""
        return [layer.get_seq_length() if layer.is_initialized else 0 for layer in self.layers]

    @contextlib.contextmanager
    def observed_by(self, capture: ForwardCapture) -> Iterator[None]:
        """Turn every ``update`` into a ``KVCacheUpdate`` leaf of ``capture`` while inside."""
        self._capture = capture
        try:
            yield
        finally:
            self._capture = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        capture = self._capture
        if capture is None:
            return DynamicCache.update(self, key_states, value_states, layer_idx, *args,
                                       **kwargs)
        # The arguments after the new keys and values are what the attention module hands on
        # to the cache layer (transformers >= 5.x: its own keyword arguments, position ids
        # included). A DynamicLayer does not read them, so they ride on the handle: the leaf's
        # tensors -- its bytes, shapes and signature -- are the keys and values it moves.
        handle = LayerHandle(self, layer_idx, passed_on=(args, kwargs))
        return capture._run_leaf_call(
            "composite", "kv_cache_update", KV_CACHE_UPDATE, kv_cache_update,
            (handle, key_states, value_states), {}, inplace=False,
            extra_bytes=handle.cached_bytes())


@dataclass(frozen=True)
class LayerHandle:
    """One layer of a :class:`StepCache`, as the recorded input of a ``KVCacheUpdate`` leaf.

    Its signature is the cache's state at the start of the step (not the layer index), so the
    cache writes of identical layers share one measurement. ``passed_on``: the further
    (positional, keyword) arguments the attention module gave ``Cache.update``, handed on to the
    layer's ``update`` unchanged (not counted as the leaf's inputs: a ``DynamicLayer`` does not
    read them).
    """

    cache: StepCache
    layer_idx: int
    passed_on: tuple[tuple, dict] = field(default_factory=lambda: ((), {}),
                                           compare=False)

    def irene_spec(self) -> tuple:
        return self.cache.irene_spec()

    def reset_for_replay(self) -> None:
        self.cache.reset_for_replay()

    def cached_bytes(self) -> int:
        """Bytes of the keys and values this layer holds now (read by the next update)."""
        if self.layer_idx >= len(self.cache.layers):
            return 0
        layer = self.cache.layers[self.layer_idx]
        return sum(t.numel() * t.element_size() for t in (getattr(layer, "keys", None),
                                                         getattr(layer, "values", None))
                   if isinstance(t, torch.Tensor))


def kv_cache_update(handle: LayerHandle, key_states: torch.Tensor, value_states: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``DynamicCache.update`` of one layer (what a ``KVCacheUpdate`` leaf runs and replays)."""
    args, kwargs = handle.passed_on
    return DynamicCache.update(handle.cache, key_states, value_states, handle.layer_idx, *args,
                               **kwargs)


# --------------------------------------------------------------------------------------------
# the step's inputs


@dataclass
class Step:
    """The inputs of one traced call and, for cached phases, its :class:`StepCache`."""

    phase: str
    inputs: dict[str, Any]
    cache: StepCache | None = None
    cached_before: list[int] = field(default_factory=list)

    def observing(self, capture: ForwardCapture) -> contextlib.AbstractContextManager:
        """While the captured call runs: cache writes become leaves (nothing for ``forward``)."""
        if self.cache is None:
            return contextlib.nullcontext()
        return self.cache.observed_by(capture)

    def check_written(self, seq_len: int, name: str) -> None:
        """After the captured call: every layer's cache grew by ``seq_len`` tokens, else the
        model did not use the KV cache (raises PhaseError)."""
        if self.cache is None:
            return
        after = self.cache.seq_lengths()
        before = self.cached_before + [0] * (len(after) - len(self.cached_before))
        grown = [a - b for a, b in zip(after, before, strict=False)]
        if len(after) < len(self.cached_before) or any(g != seq_len for g in grown if g):
            raise PhaseError(f"{name}: the model did not write its KV cache as a decoder does "
                             f"(cached tokens per layer {self.cached_before} -> {after}); "
                             f"phase {self.phase} needs a decoder with a KV cache")
        if not any(grown):
            raise PhaseError(f"{name} did not use the KV cache: phase {self.phase} needs a "
                             "decoder-only model (GPT-2, Llama, GPT-NeoX, Phi, ...)")

    def restore(self) -> None:
        """Put the cache back as it was before the captured call."""
        if self.cache is not None:
            self.cache.reset_for_replay()


def prepare_step(model: PreTrainedModel, phase: str, batch_size: int, seq_len: int,
                 context_len: int = 0, *, seed: int = 0) -> Step:
    """The inputs of one ``phase`` call of ``model``: random token ids (batch_size x seq_len)
    and, for ``prefill``/``decode``, a :class:`StepCache` already holding ``context_len`` tokens
    per sequence (random keys and values), marked as the state every replay starts from.
    WorkloadError for a phase, sequence and context length that are no workload of one call."""
    from irene.tracing.registry import make_inputs

    Workload(phase=phase, batch_size=batch_size, seq_len=seq_len, context_len=context_len)
    if phase == "train":
        raise WorkloadError("phase", "must be forward, prefill or decode for one call (a "
                                     "training step: irene.tracing.trace)", phase)
    inputs = make_inputs(model, batch_size, seq_len, seed=seed, context_len=context_len)
    if phase not in CACHED_PHASES:
        return Step(phase, inputs)
    config = model.config
    if getattr(config, "is_encoder_decoder", False) or not is_decoder(model):
        raise PhaseError(f"{type(model).__name__} has no causal self-attention that uses a KV "
                         f"cache: phase {phase} is traced for decoder-only models that have one "
                         "(GPT-2, Llama, GPT-NeoX, Phi, ...)")
    cache = StepCache(config=config)
    if context_len:
        fill_cache(model, cache, batch_size, context_len, seed=seed)
    cache.mark_step_start()
    inputs.update({cache_argument(model): cache, "use_cache": True})
    return Step(phase, inputs, cache, cache.seq_lengths())


def cache_argument(model: PreTrainedModel) -> str:
    """The keyword of ``model.forward`` that takes the KV cache: ``cache`` where transformers
    has it (it deprecates ``past_key_values`` in favour of ``cache``, to be removed in 5.40),
    else ``past_key_values`` (earlier 5.x)."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def is_decoder(model: PreTrainedModel) -> bool:
    """Whether ``model`` has causal self-attention (an attention module with ``is_causal``
    True, as ``transformers`` marks decoder attention; BERT-style encoders have it False)."""
    return any(getattr(module, "is_causal", None) is True for module in model.modules())


def kv_shapes(model: PreTrainedModel) -> list[tuple[tuple[int, ...], tuple[int, ...],
                                                     torch.dtype] | None]:
    """Per layer, the (key, value) shapes and dtype one cached token has for a batch of one,
    found by running ``model`` on one token with a fresh ``DynamicCache`` (None: a layer that
    caches nothing). Raises PhaseError when the model writes no cache."""
    device = next(model.parameters()).device
    probe = DynamicCache(config=model.config)
    ids = torch.ones((1, 1), dtype=torch.long, device=device)
    with torch.no_grad():
        model(input_ids=ids, use_cache=True, **{cache_argument(model): probe})
    shapes = []
    for layer in probe.layers:
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if isinstance(keys, torch.Tensor) and isinstance(values, torch.Tensor) and keys.numel():
            shapes.append((tuple(keys.shape), tuple(values.shape), keys.dtype))
        else:
            shapes.append(None)
    if not any(shapes):
        raise PhaseError(f"{type(model).__name__} did not use the KV cache: prefill and decode "
                         "are traced for decoder-only models (GPT-2, Llama, GPT-NeoX, Phi, ...)")
    return shapes


def fill_cache(model: PreTrainedModel, cache: DynamicCache, batch_size: int, context_len: int,
               *, seed: int = 0) -> None:
    """Write ``context_len`` tokens of random keys and values (standard normal, seeded) for
    ``batch_size`` sequences into every layer of ``cache``, through ``Cache.update``."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed + 1)
    for layer_idx, shapes in enumerate(kv_shapes(model)):
        if shapes is None:
            continue
        key_shape, value_shape, dtype = shapes
        keys = _random(_resized(key_shape, batch_size, context_len), dtype, device, generator)
        values = _random(_resized(value_shape, batch_size, context_len), dtype, device,
                         generator)
        DynamicCache.update(cache, keys, values, layer_idx)


def _resized(shape: tuple[int, ...], batch_size: int, tokens: int) -> tuple[int, ...]:
    """(1, heads, 1, dim) -> (batch_size, heads, tokens, dim)."""
    return (batch_size, *shape[1:-2], tokens, shape[-1])


def _random(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device,
            generator: torch.Generator) -> torch.Tensor:
    if device.type == "meta":
        return torch.empty(shape, dtype=dtype, device=device)
    return torch.randn(shape, generator=generator).to(device=device, dtype=dtype)
