"""The tracer: decompose a transformer into a model -> module -> ML-primitive tree with features.

Public interface::

    tree = trace("bert-base-uncased", Workload(batch_size=8, seq_len=128), timing=False)
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


def __getattr__(name: str):
    """``trace`` and ``trace_model`` are imported on first use: they need torch, which the
    registry (used to build command lines and list models) does not."""
    if name == "trace":
        from irene.tracing.entry import trace

        return trace
    if name == "trace_model":
        from irene.tracing.tracer import trace_model

        return trace_model
    raise AttributeError(f"module 'irene.tracing' has no attribute {name!r}")


__all__ = [
    "ALIASES",
    "BUILTIN_MODELS",
    "UnknownModelError",
    "build_model",
    "list_models",
    "load_config",
    "trace",
    "trace_model",
]
