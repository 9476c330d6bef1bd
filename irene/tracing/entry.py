"""``trace(model, workload)``: the one entry point that traces any :class:`~irene.workload.Workload`
into a tree: a forward pass, a prefill or a decode step (:func:`irene.tracing.tracer.trace_model`)
or a training step (:func:`irene.tracing.train_step.trace_train_step`)."""

from __future__ import annotations

from typing import Any

from irene.tree import Tree
from irene.workload import Workload


def trace(model: Any, workload: Workload, **how: Any) -> Tree:
    """The tree of ``workload`` on ``model`` (a name, a config or a built model; a training
    step wants the model with its language-modelling head). ``how``: how it is traced and
    measured (``timing``, ``meter``, ``protocol``, ``cache``, ``progress``, ``model_name``,
    ``hub``, ``seed``, ``schema``), as :func:`irene.tracing.tracer.trace_model` takes them."""
    common = dict(device=workload.device, dtype=workload.dtype, attn=workload.attn, **how)
    if workload.phase == "train":
        from irene.tracing.train_step import trace_train_step

        return trace_train_step(model, workload.batch_size, workload.seq_len,
                                optimizer=workload.optimizer, **common)
    from irene.tracing.tracer import trace_model

    return trace_model(model, workload.batch_size, workload.seq_len, phase=workload.phase,
                       context_len=workload.context_len, **common)
