"""The tracer: decompose a transformer into a model -> module -> ML-primitive tree with features.

Public interface::

    tree = trace("bert-base-uncased", Workload(batch_size=8, seq_len=128), timing=False)
    tree = trace_model("bert-base-uncased", batch_size=8, seq_len=128, timing=False)  # one call
    model_for(Workload(phase="train"), "gpt2", device="cpu")  # the model a workload runs on
    model = build_model("gpt2", attn="eager", dtype="float32", device="cpu")
    list_models(), BUILTIN_MODELS   # built-in architectures (name -> config factory)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from irene.tracing.registry import (
    ALIASES,
    BUILTIN_MODELS,
    UnknownModelError,
    build_model,
    list_models,
    load_config,
)

if TYPE_CHECKING:
    from irene.tree import Tree
    from irene.workload import Workload


def trace(model: Any, workload: Workload, **how: Any) -> Tree:
    """The one entry point: the tree of ``workload`` on ``model`` (a name, a config or a built
    model, see :func:`model_for`): a forward pass, a prefill or a decode step
    (:func:`irene.tracing.tracer.trace_model`) or a training step
    (:func:`irene.tracing.train_step.trace_train_step`). ``how``: how it is traced and measured
    (``timing``, ``meter``, ``protocol``, ``cache``, ``progress``, ``model_name``, ``hub``,
    ``seed``, ``schema``), as ``trace_model`` takes them."""
    common = dict(device=workload.device, dtype=workload.dtype, attn=workload.attn, **how)
    if workload.phase == "train":
        from irene.tracing.train_step import trace_train_step

        return trace_train_step(model, workload.batch_size, workload.seq_len,
                                optimizer=workload.optimizer, **common)
    from irene.tracing.tracer import trace_model

    return trace_model(model, workload.batch_size, workload.seq_len, phase=workload.phase,
                       context_len=workload.context_len, **common)


def model_for(workload: Workload, source: str, *, device: str, hub: bool = True,
              seed: int = 0) -> Any:
    """The model ``workload`` is traced on, random weights (``seed``) on ``device``
    (``"meta"``: shapes only) in the workload's dtype and attention: the base model, or for a
    training step the model with its language-modelling head."""
    builder = build_model
    if workload.phase == "train":
        from irene.tracing.train_step import build_training_model as builder
    return builder(source, attn=workload.attn, dtype=workload.dtype, device=device, hub=hub,
                   seed=seed)


def __getattr__(name: str) -> Any:
    """``trace_model`` is imported on first use: it needs torch, which the registry (used to
    build command lines and list models) does not."""
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
    "model_for",
    "trace",
    "trace_model",
]
