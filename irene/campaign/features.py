"""Features without compute: the tree of a plan item traced on fake tensors, for planning.

``--dry-run`` and ``--budget-minutes`` need every item's nodes (signatures, FLOPs, bytes, calls)
before anything is measured. :func:`features_tree` traces the item under torch's
``FakeTensorMode``: the model is built and run on tensors that have shapes, dtypes and strides
but no storage, so no memory is used and no arithmetic is done (a 2.7 B-parameter model at
batch 32 x 512 tokens traces in about a second on a laptop). The capture, FLOP counter and
signatures are the tracer's own, so node counts, FLOPs, bytes and signatures are those of a real
trace on the same device type (``tests/campaign/test_campaign.py`` checks it). When fake tensors
cannot run a model (data-dependent Python control flow), the item is traced for real with
``timing=False`` on the CPU instead. Prefill, decode and training-step items are always traced
that way (their KV cache and backward pass are not run on fake tensors): real weights on the
CPU, built once per model and reused across the item's cells.

A CUDA item is faked on CUDA where torch has CUDA (its signatures then match the measuring
run's, so cached measurements are recognised), else on the CPU: counts, FLOPs and bytes are the
same, but signatures carry the device type, so cache matches are not checked then.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any

from irene.campaign.plan import PlanItem
from irene.tree import Tree


def planning_device(device: str) -> str:
    """The device fake tensors are made on for ``device``: itself, or cpu without CUDA."""
    from irene.workload import device_problem

    return "cpu" if device_problem(device) else device


class FeaturePass:
    """Traces plan items on fake tensors, reusing each fake model across an item's cells."""

    def __init__(self, *, hub: bool = False) -> None:
        self.hub = hub
        self._models: dict[tuple, Any] = {}
        self.fallbacks: list[str] = []

    def tree(self, item: PlanItem) -> Tree:
        """The features-only tree of ``item`` (fake tensors; real CPU trace as fallback, and
        for the phases other than forward)."""
        if item.workload.phase != "forward":
            return self._real_tree(item)
        try:
            return self._fake_tree(item)
        except Exception as exc:  # noqa: BLE001 - any failure of fake tensors: trace for real
            self.fallbacks.append(f"{item.label()}: fake tensors failed ({type(exc).__name__}: "
                                  f"{str(exc)[:120]}); traced on the CPU instead")
            return self._real_tree(item)

    def _fake_tree(self, item: PlanItem) -> Tree:
        import torch
        from torch._subclasses.fake_tensor import FakeTensorMode

        from irene.tracing.build import build_tree, prune
        from irene.tracing.capture import ForwardCapture
        from irene.tracing.registry import make_inputs, torch_dtype

        w = item.workload
        device = planning_device(w.device)
        key = (item.source, w.dtype, w.attn, device)
        entry = self._models.get(key)
        if entry is None:
            mode = FakeTensorMode(allow_non_fake_inputs=True)
            with mode, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = _fake_model(item, hub=self.hub)
                _to_fake(model, device, torch_dtype(w.dtype))
            entry = self._models[key] = (mode, model)
        mode, model = entry
        with mode, torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inputs = make_inputs(model, w.batch_size, w.seq_len)
            capture = ForwardCapture(model, record_inputs=False)
            with capture:
                model(**inputs)
        root = capture.root
        if root is None or not prune(root):
            raise ValueError(f"{item.label()}: the forward pass ran no primitive")
        return build_tree(root, model_name=item.model, batch_size=w.batch_size,
                          seq_len=w.seq_len, meta={"planning": "fake tensors", "device": w.device,
                                                   "dtype": w.dtype, "attn": w.attn})

    def _real_tree(self, item: PlanItem) -> Tree:
        """A features-only trace with real weights on the CPU (not the meta device: the
        signatures must name the device type a measuring run has)."""
        from irene.tracing import model_for, trace

        key = ("real", *item.model_key[:3], item.model_key[4])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = self._models.get(key)
            if model is None:  # one model with real weights at a time (they hold memory)
                for other in [k for k in self._models if k[0] == "real"]:
                    del self._models[other]
                model = self._models[key] = model_for(item.workload, item.source,
                                                      device="cpu", hub=self.hub)
            return trace(model, replace(item.workload, device="cpu"), timing=False,
                         model_name=item.model, hub=self.hub)

    def clear(self) -> None:
        """Forget the fake models (they hold no tensor memory, only Python objects)."""
        self._models.clear()


def _fake_model(item: PlanItem, *, hub: bool) -> Any:
    """The base model of ``item`` built as :func:`irene.tracing.registry.build_model` builds it
    (float32 on the CPU, eval mode, no KV cache), inside an active fake-tensor mode."""
    from transformers import AutoModel

    from irene.tracing.registry import load_config

    config = load_config(item.source, hub=hub)
    config.use_cache = False
    model = AutoModel.from_config(config, attn_implementation=item.workload.attn)
    model.eval()
    model.config.name_or_path = item.source
    return model


def _to_fake(model: Any, device: str, dtype: Any) -> None:
    """``model.to(device, dtype)`` for a model of fake tensors, in place: floating-point
    parameters and buffers converted as ``Module.to`` does, shared (tied) parameters kept
    shared. (``Module.to`` itself cannot swap fake parameters.)"""
    from torch import nn

    converted: dict[int, Any] = {}

    def convert(tensor: Any) -> Any:
        key = id(tensor)
        if key not in converted:
            new = tensor.to(device=device, dtype=dtype if tensor.is_floating_point() else None)
            if isinstance(tensor, nn.Parameter):
                new = nn.Parameter(new, requires_grad=tensor.requires_grad)
            converted[key] = new
        return converted[key]

    for module in model.modules():
        for name, tensor in list(module._parameters.items()):
            if tensor is not None:
                module._parameters[name] = convert(tensor)
        for name, tensor in list(module._buffers.items()):
            if tensor is not None:
                module._buffers[name] = convert(tensor)
