"""The tracer: decompose a transformer into a model -> module -> ML-primitive tree with features.

Public interface::

    tree = trace_model("bert-base-uncased", batch_size=8, seq_len=128, timing=False)
    model = build_model("gpt2", attn="eager", dtype="float32", device="cpu")
    list_models(), BUILTIN_MODELS   # built-in architectures (name -> config factory)
"""

from irene.tracing.registry import (
    ALIASES,
    BUILTIN_MODELS,
    UnknownModelError,
    build_model,
    list_models,
    load_config,
)
from irene.tracing.trace import trace_model

__all__ = [
    "ALIASES",
    "BUILTIN_MODELS",
    "UnknownModelError",
    "build_model",
    "list_models",
    "load_config",
    "trace_model",
]
