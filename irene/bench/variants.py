"""The variants ``irene bench`` measures: one small, named recipe each.

A variant's ``prepare(model, inputs, device)`` receives a private copy of the reference model
(PyTorch eager, float32, with its language-model head, on ``device``) and the bench's fixed
inputs, and returns a :class:`Prepared`: ``run()`` performs one inference on those inputs and
returns the logits (batch x sequence x vocabulary), ``save(dir)`` writes the artefact a server
would load (its size on disk is reported), and ``notes`` say what the recipe did. Everything
``prepare`` does is the optimisation's own cost (export, compilation, quantisation, pruning),
timed and metered by the bench; for ``torch.compile`` that includes the first call, which is
when compilation happens.

A recipe that cannot run here raises :class:`VariantUnavailable` with the reason (a package is
missing, the device lacks the kernels) and the bench records it in that variant's row.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from irene.bench.catalog import CONTROL, REFERENCE, SUMMARIES
from irene.tracing.generation import cache_argument, is_decoder

#: the variant every other one is compared with
#: the fraction of weights ``prune-l1-30`` zeroes in each pruned layer
PRUNE_AMOUNT = 0.3
ONNX_HINT = "pip install -e '.[onnx]'"
OPENVINO_HINT = "pip install -e '.[openvino]'"


class VariantUnavailable(RuntimeError):
    """This variant cannot run here; the message says why (missing package, unsupported device)."""


@dataclass
class Prepared:
    """A variant ready to serve: see the module docstring.

    ``run()``: one inference on the bench's fixed inputs, returning the logits (a tensor of any
    float dtype, on any device); ``save(directory)``: write the artefact into an existing empty
    directory; ``dtype``: the precision it computes in; ``engine``: the runtime that executes it;
    ``notes``: what the recipe did, in words; ``cleanup()``: release what ``run`` holds beyond
    Python references (temporary files, compiler caches).
    """

    run: Callable[[], torch.Tensor]
    save: Callable[[Path], None]
    dtype: str = "float32"
    engine: str = "pytorch"
    notes: list[str] = field(default_factory=list)
    cleanup: Callable[[], None] | None = None


Prepare = Callable[[nn.Module, dict[str, Any], str], Prepared]


@dataclass(frozen=True)
class Variant:
    """A named recipe: ``summary`` is a short line for the help and the report; ``prepare``
    is the recipe (its docstring says exactly what it does)."""

    name: str
    summary: str
    prepare: Prepare


# --------------------------------------------------------------------------------------------
# shared pieces


def device_type(device: str) -> str:
    """``"cuda"`` for ``cuda``/``cuda:N``, else the part before the colon (``"cpu"``)."""
    return torch.device(device).type


def torch_runner(model: nn.Module, inputs: dict[str, Any]) -> Callable[[], torch.Tensor]:
    """``run()`` for a PyTorch model: one forward pass in inference mode, returning the logits."""

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return model(**inputs).logits

    return run


def save_pretrained(model: nn.Module) -> Callable[[Path], None]:
    """``save(dir)`` writing the model the way transformers ships it (safetensors)."""

    def save(directory: Path) -> None:
        from transformers.utils import logging as hf_logging

        shown = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            model.save_pretrained(directory, safe_serialization=True)
        finally:
            if shown:
                hf_logging.enable_progress_bar()

    return save


def save_state_dict(model: nn.Module, filename: str = "model.pt") -> Callable[[Path], None]:
    """``save(dir)`` with ``torch.save(state_dict)`` (for modules safetensors cannot hold)."""

    def save(directory: Path) -> None:
        torch.save(model.state_dict(), directory / filename)

    return save


class LogitsOnly(nn.Module):
    """``model`` as a function of ``input_ids`` alone returning the logits tensor (what the
    tracing exporters — TorchScript, ONNX, OpenVINO — need); the bench's other, non-tensor
    arguments (``use_cache=False``) are fixed."""

    def __init__(self, model: nn.Module, inputs: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.fixed = {k: v for k, v in inputs.items() if not isinstance(v, torch.Tensor)}
        extra = [k for k, v in inputs.items() if isinstance(v, torch.Tensor) and k != "input_ids"]
        if extra:
            raise VariantUnavailable(f"the exporters take input_ids only; this model also needs "
                                     f"{', '.join(extra)}")

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, **self.fixed).logits


def require(module: str, hint: str) -> Any:
    """Import ``module`` or raise :class:`VariantUnavailable` saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise VariantUnavailable(f"{module} is not installed ({hint})") from exc


def output_embeddings(model: nn.Module) -> nn.Module | None:
    """The language-model head (``get_output_embeddings()``), None when the model has none."""
    getter = getattr(model, "get_output_embeddings", None)
    return getter() if callable(getter) else None


def conv1d_class() -> type[nn.Module] | None:
    """transformers' GPT-2-style ``Conv1D`` (a Linear with a transposed weight), if importable."""
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:
        return None
    return Conv1D


def conv1d_to_linear(model: nn.Module) -> int:
    """Replace every transformers ``Conv1D`` in ``model`` by the equivalent ``nn.Linear``.

    GPT-2's ``Conv1D`` computes ``x @ W + b`` with ``W`` of shape (in, out): exactly an
    ``nn.Linear`` whose weight is ``W`` transposed. Tools that act on ``nn.Linear`` (dynamic
    quantisation, 2:4 sparsity) skip ``Conv1D``; after this they see those layers too.
    Returns the number of layers replaced.
    """
    conv1d = conv1d_class()
    if conv1d is None:
        return 0
    targets = [(name, module) for name, module in model.named_modules()
               if isinstance(module, conv1d)]
    for name, module in targets:
        weight = module.weight.detach()
        linear = nn.Linear(weight.shape[0], weight.shape[1], bias=module.bias is not None,
                           device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(weight.t())
            if module.bias is not None:
                linear.bias.copy_(module.bias.detach())
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attr, linear)
    return len(targets)


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Keep the exporters' progress lines and warnings off the console (errors still raise)."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def link_or_copy_tree(source: Path, target: Path) -> None:
    """Put every file of ``source`` into ``target`` (hard links where possible: no copy)."""
    for path in source.iterdir():
        if path.is_file():
            try:
                os.link(path, target / path.name)
            except OSError:
                shutil.copy2(path, target / path.name)


def check_cuda(device: str) -> None:
    """VariantUnavailable unless ``device`` is a CUDA device torch can use."""
    from irene.workload import device_problem

    if device_type(device) != "cuda":
        raise VariantUnavailable(f"needs a CUDA device; this run is on {device}")
    problem = device_problem(device)
    if problem:
        raise VariantUnavailable(problem)


# --------------------------------------------------------------------------------------------
# exporters (shared with the serving engines of :mod:`irene.serve.engines`, which export the
# KV-cache decoders below with dynamic lengths so one artefact serves prompts of any length)

#: torch.export's dynamic-shape spec (None: every shape static), keyed by forward's argument names
DynamicShapes = dict[str, Any] | None


class FirstWriteLayer(DynamicLayer):
    """transformers' ``DynamicLayer`` whose first update keeps the key/value tensors as they are.
    The stock layer starts from an empty tensor and concatenates, an op OpenVINO's converter
    rejects (a rank-1 empty tensor joined along axis -2); the values are identical."""

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            self.keys, self.values = key_states, value_states
            return self.keys, self.values
        return super().update(key_states, value_states, *args, **kwargs)


class CachedDecoder(nn.Module):
    """One step of greedy decoding with a KV cache held in plain tensors, so the tracing
    exporters can take it: ``forward(input_ids, keys, values)`` runs ``input_ids`` (1 x n new
    tokens) after the ``past`` positions whose keys and values are given (each of shape layers
    x 1 x kv-heads x past x head-dim, stacked over the decoder layers) and returns the last
    position's logits (1 x vocabulary) with the keys and values of all past + n positions.
    Position ids run from ``past``; no attention mask (one unpadded sequence; the model's causal
    mask covers the new tokens). :class:`Prefill` is the first step, without a cache.

    Raises VariantUnavailable for a model whose cache is not one full-attention key/value pair
    per layer (sliding-window or recurrent layers)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.layers = cache_layer_count(model)
        self.cache_arg = cache_argument(model)
        self.fixed: dict[str, Any] = {"use_cache": True}
        if "logits_to_keep" in inspect.signature(model.forward).parameters:
            self.fixed["logits_to_keep"] = 1

    def decode(self, input_ids: torch.Tensor, cache: Cache,
               past: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run ``input_ids`` at positions ``past``, ``past + 1``, ... over ``cache`` (holding
        ``past`` positions): the last logits and the grown cache's stacked keys and values."""
        positions = (torch.arange(input_ids.shape[1], device=input_ids.device) + past)
        out = self.model(input_ids=input_ids, position_ids=positions.unsqueeze(0),
                         **{self.cache_arg: cache}, **self.fixed)
        layers = getattr(out, self.cache_arg).layers
        return (out.logits[:, -1], torch.stack([layer.keys for layer in layers]),
                torch.stack([layer.values for layer in layers]))

    def empty_cache(self) -> Cache:
        """A cache of :class:`FirstWriteLayer`, one per decoder layer, holding nothing yet."""
        return Cache(layers=[FirstWriteLayer() for _ in range(self.layers)])

    def forward(self, input_ids: torch.Tensor, keys: torch.Tensor,
                values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cache = self.empty_cache()
        for index in range(self.layers):
            cache.update(keys[index], values[index], index)
        return self.decode(input_ids, cache, keys.shape[3])


class Prefill(CachedDecoder):
    """:class:`CachedDecoder`'s first step: ``forward(input_ids)`` runs the prompt (1 x L) from
    position 0 and returns the last logits with the prompt's keys and values."""

    def forward(self, input_ids: torch.Tensor  # type: ignore[override]
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.decode(input_ids, self.empty_cache(), 0)


def cache_layer_count(model: nn.Module) -> int:
    """The number of key/value layers of ``model``'s KV cache; VariantUnavailable unless every
    one is a plain full-attention ``DynamicLayer`` (what :class:`CachedDecoder` rebuilds)."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False) or not is_decoder(model):
        raise VariantUnavailable(f"{type(model).__name__} has no causal self-attention with a "
                                 "KV cache: cached decoding serves decoder-only models")
    try:
        layers = DynamicCache(config=config).layers
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise VariantUnavailable(f"{type(model).__name__}: no KV cache layout ({exc})") from exc
    other = sorted({type(layer).__name__ for layer in layers if type(layer) is not DynamicLayer})
    if not layers or other:
        raise VariantUnavailable(f"{type(model).__name__}'s cache has {', '.join(other) or 'no'}"
                                 " layers; the cached decoders export full-attention layers only")
    return len(layers)


def decoder_dynamic_shapes(max_len: int) -> tuple[DynamicShapes, DynamicShapes]:
    """torch.export's dynamic shapes of :class:`Prefill` (prompt length 1 to ``max_len``) and
    of a one-token :class:`CachedDecoder` step (past length dynamic: a bounded ``Dim`` makes
    torch.export reject Llama-style grouped-query attention over guards it cannot prove)."""
    past = torch.export.Dim.DYNAMIC
    return ({"input_ids": {1: torch.export.Dim("seq", min=1, max=max_len)}},
            {"input_ids": None, "keys": {3: past}, "values": {3: past}})


def trace_torchscript(module: nn.Module, args: tuple[torch.Tensor, ...]
                      ) -> torch.jit.ScriptModule:
    """``torch.jit.trace`` of ``module`` on ``args``, then ``torch.jit.freeze`` (weights folded
    in as constants). GPT-2- and Llama-style decoders trace without shape-dependent Python
    branches on the traced lengths, so the trace also runs other sequence and cache lengths (the
    serving tests check this)."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, args, check_trace=False)
        return torch.jit.freeze(traced)


def export_onnx(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, *,
                dynamic_shapes: DynamicShapes = None) -> None:
    """Export ``module`` called on ``args`` to ``path`` with torch's ONNX exporter (dynamo,
    float32, weights as external data); ``dynamic_shapes``: torch.export's spec (None: static)."""
    with torch.no_grad(), quiet_exporter():
        torch.onnx.export(module, args, str(path), dynamo=True, external_data=True,
                          verbose=False, dynamic_shapes=dynamic_shapes)


def export_openvino(ov: Any, module: nn.Module, args: tuple[torch.Tensor, ...], *,
                    dynamic_shapes: DynamicShapes = None) -> Any:
    """An OpenVINO model of ``module`` called on ``args``, captured with ``torch.export`` (not
    OpenVINO's default TorchScript tracing, which lacks ops that transformers' attention masks
    use: aten::diff); ``dynamic_shapes``: torch.export's spec (None: static)."""
    with torch.no_grad(), quiet_exporter():
        exported = torch.export.export(module, args, dynamic_shapes=dynamic_shapes)
        return ov.convert_model(exported)


def compile_openvino(ov: Any, ov_model: Any) -> Any:
    """``ov_model`` compiled for OpenVINO's CPU plugin with torch's thread count, precision
    pinned to float32 (OpenVINO would otherwise pick bf16 on CPUs that have it)."""
    return ov.Core().compile_model(ov_model, "CPU", {
        "INFERENCE_NUM_THREADS": torch.get_num_threads(), "INFERENCE_PRECISION_HINT": "f32"})


# --------------------------------------------------------------------------------------------
# the recipes


def prepare_eager(model: nn.Module, inputs: dict[str, Any], device: str) -> Prepared:
    """The reference: PyTorch eager, float32, attention as separate matmul/softmax ops."""
    return Prepared(run=torch_runner(model, inputs), save=save_pretrained(model))


def prepare_sdpa(model: nn.Module, inputs: dict[str, Any], device: str) -> Prepared:
    """Eager PyTorch with fused ``scaled_dot_product_attention`` instead of separate ops."""
    try:
        model.set_attn_implementation("sdpa")
    except (ValueError, ImportError, AttributeError) as exc:
        raise VariantUnavailable(f"{type(model).__name__} has no SDPA attention: {exc}") from exc
    return Prepared(run=torch_runner(model, inputs), save=save_pretrained(model))


def _half_support(dtype: torch.dtype, device: str) -> str | None:
    """A note on how well ``device`` runs ``dtype`` (None: natively); raises when it cannot."""
    name = str(dtype).removeprefix("torch.")
    if device_type(device) == "cuda":
        if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            raise VariantUnavailable(f"this GPU ({torch.cuda.get_device_name(device)}) has no "
                                     "bfloat16 support (needs compute capability >= 8.0)")
        return None
    if device_type(device) != "cpu":
        return None
    probe = {torch.bfloat16: "_is_mkldnn_bf16_supported",
             torch.float16: "_is_mkldnn_fp16_supported"}[dtype]
    try:
        native = bool(getattr(torch.ops.mkldnn, probe)())
    except (AttributeError, RuntimeError):
        native = False
    if native:
        return None
    return (f"this CPU has no native {name} matrix instructions: torch converts to float32 "
            "around each op, so expect it slower than float32")


def _half(dtype: torch.dtype) -> Prepare:
    def prepare(model: nn.Module, inputs: dict[str, Any], device: str) -> Prepared:
        note = _half_support(dtype, device)
        model.to(dtype=dtype)
        return Prepared(run=torch_runner(model, inputs), save=save_pretrained(model),
                        dtype=str(dtype).removeprefix("torch."), notes=[note] if note else [])

    prepare.__doc__ = (f"Every weight and activation in {str(dtype).removeprefix('torch.')}: "
                       "half the bytes, less precision (the logits are compared in float32).")
    return prepare


def _cxx_compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def prepare_compile(model: nn.Module, inputs: dict[str, Any], device: str) -> Prepared:
    """``torch.compile`` (inductor, default mode, static shapes); compiled on the first call,
    which is made here, with an empty compiler cache, so compilation counts as preparation."""
    if device_type(device) == "cpu" and _cxx_compiler() is None:
        raise VariantUnavailable("torch.compile's CPU backend (inductor) needs a C++ compiler "
                                 "(g++ or clang++) and none is on PATH")
    compiled = torch.compile(model, dynamic=False)
    run = torch_runner(compiled, inputs)
    with warnings.catch_warnings(), _cold_inductor_cache():
        warnings.simplefilter("ignore")
        run()

    def cleanup() -> None:
        torch._dynamo.reset()

    return Prepared(run=run, save=save_pretrained(model), engine="torch.compile (inductor)",
                    notes=["compiled with an empty inductor cache (a cold start: a warm on-disk "
                           "cache makes preparation much faster)",
                           "size on disk: the weights; inductor's compiled-kernel cache is not "
                           "counted"], cleanup=cleanup)


def _cold_inductor_cache() -> contextlib.AbstractContextManager[None]:
    """A fresh, empty inductor cache directory for the block (deleted afterwards), so the
    preparation time is that of a first deployment, not of a machine that compiled this model
    before."""
    from torch._inductor import utils

    fresh = getattr(utils, "fresh_cache", None) or getattr(utils, "fresh_inductor_cache", None)
    if fresh is None:
        raise VariantUnavailable(f"torch {torch.__version__} has no fresh_cache: cannot time a "
                                 "cold compilation")
    return fresh()


def prepare_torchscript(model: nn.Module, inputs: dict[str, Any], device: str) -> Prepared:
    """``torch.jit.trace`` on the bench's input shape, then ``torch.jit.freeze`` (weights folded
    in as constants), run by the TorchScript interpreter."""
    ids = inputs["input_ids"]
    frozen = trace_torchscript(LogitsOnly(model, inputs).eval(), (ids,))

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return frozen(ids)

    def save(directory: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # said in the notes instead
            torch.jit.save(frozen, str(directory / "model.ts"))

    return Prepared(run=run, save=save, engine="TorchScript",
                    notes=["traced for the bench's input shape (batch x sequence)",
                           "TorchScript is deprecated upstream in favour of torch.export"])


def prepare_onnxruntime(model: nn.Module, inputs: dict[str, Any], device: str) -> Prepared:
    """Export with torch's ONNX exporter (``torch.onnx.export(dynamo=True)``, float32) and run
    with ONNX Runtime: the CPU execution provider on the CPU, the CUDA provider on a GPU (needs
    onnxruntime-gpu). Graph optimisations at ORT_ENABLE_ALL; as many threads as torch uses."""
    ort = require("onnxruntime", ONNX_HINT)
    require("onnx", ONNX_HINT)
    require("onnxscript", ONNX_HINT)
    on_cuda = device_type(device) == "cuda"
    if on_cuda and "CUDAExecutionProvider" not in ort.get_available_providers():
        raise VariantUnavailable("onnxruntime has no CUDA execution provider here (install "
                                 "onnxruntime-gpu instead of onnxruntime)")
    if device_type(device) not in ("cpu", "cuda"):
        raise VariantUnavailable(f"no ONNX Runtime execution provider chosen for {device}")
    workdir = Path(tempfile.mkdtemp(prefix="irene-bench-onnx-"))
    try:
        path = workdir / "model.onnx"
        ids = inputs["input_ids"]
        export_onnx(LogitsOnly(model, inputs).eval(), (ids,), path)
        session = ort_session(ort, path, device)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    run = _ort_cuda_runner(session, ids, device) if on_cuda else _ort_cpu_runner(session, ids)
    provider = session.get_providers()[0]
    return Prepared(run=run, save=lambda d: link_or_copy_tree(workdir, d),
                    engine=f"ONNX Runtime {ort.__version__} ({provider})",
                    notes=[f"exported for the bench's input shape; provider {provider}"],
                    cleanup=lambda: shutil.rmtree(workdir, ignore_errors=True))


def ort_session(ort: Any, path: Path, device: str) -> Any:
    """An ONNX Runtime session on ``path``: all graph optimisations, torch's thread count, the
    CUDA provider on a CUDA ``device``, else the CPU provider."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if device_type(device) == "cuda":
        index = torch.device(device).index or 0
        providers: list[Any] = [("CUDAExecutionProvider", {"device_id": index})]
    else:
        providers = ["CPUExecutionProvider"]
    return ort.InferenceSession(str(path), sess_options=options, providers=providers)


def _ort_cpu_runner(session: Any, ids: torch.Tensor) -> Callable[[], torch.Tensor]:
    feeds = {session.get_inputs()[0].name: ids.cpu().numpy()}
    output = session.get_outputs()[0].name

    def run() -> torch.Tensor:
        return torch.from_numpy(session.run([output], feeds)[0])

    return run


def _ort_cuda_runner(session: Any, ids: torch.Tensor, device: str) -> Callable[[], torch.Tensor]:
    """Inputs and outputs bound to torch CUDA tensors (no host copies inside the timed call)."""
    import numpy as np

    index = torch.device(device).index or 0
    first = session.run(None, {session.get_inputs()[0].name: ids.cpu().numpy()})[0]
    ids_gpu = ids.to(device).contiguous()
    out = torch.empty(tuple(first.shape), dtype=torch.float32, device=device)
    binding = session.io_binding()
    binding.bind_input(name=session.get_inputs()[0].name, device_type="cuda", device_id=index,
                       element_type=np.int64, shape=tuple(ids_gpu.shape),
                       buffer_ptr=ids_gpu.data_ptr())
    binding.bind_output(name=session.get_outputs()[0].name, device_type="cuda", device_id=index,
                        element_type=np.float32, shape=tuple(out.shape), buffer_ptr=out.data_ptr())

    def run() -> torch.Tensor:
        session.run_with_iobinding(binding)
        return out

    return run


def prepare_openvino(model: nn.Module, inputs: dict[str, Any], device: str) -> Prepared:
    """Capture with ``torch.export``, convert with ``openvino.convert_model`` and run on
    OpenVINO's CPU plugin, precision pinned to float32 (OpenVINO would otherwise pick bf16 on
    CPUs that have it)."""
    ov = require("openvino", OPENVINO_HINT)
    if device_type(device) != "cpu":
        raise VariantUnavailable(f"OpenVINO runs on Intel/x86 CPUs (and Intel GPUs/NPUs), not "
                                 f"{device}")
    ids = inputs["input_ids"]
    ov_model = export_openvino(ov, LogitsOnly(model, inputs).eval(), (ids,))
    compiled = compile_openvino(ov, ov_model)
    request = compiled.create_infer_request()
    feeds = {0: ids.numpy()}

    def run() -> torch.Tensor:
        request.infer(feeds)
        return torch.from_numpy(request.get_output_tensor(0).data)

    def save(directory: Path) -> None:
        ov.save_model(ov_model, str(directory / "model.xml"), compress_to_fp16=False)

    return Prepared(run=run, save=save, engine=f"OpenVINO {ov.get_version().split('-')[0]} (CPU)",
                    notes=["converted for the bench's input shape; inference precision f32"])


def prepare_int8_dynamic(model: nn.Module, inputs: dict[str, Any], device: str) -> Prepared:
    """Dynamic int8 quantisation (``torch.ao.quantization.quantize_dynamic``) of every
    ``nn.Linear``: int8 weights, activations quantised on the fly per call. GPT-2's ``Conv1D``
    layers are not ``nn.Linear``; they are converted to ``nn.Linear`` first (same maths) so the
    transformer blocks are quantised too, not only the LM head."""
    if device_type(device) != "cpu":
        raise VariantUnavailable("torch's dynamic int8 kernels (fbgemm/x86/qnnpack) run on the "
                                 f"CPU only; this run is on {device}")
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError as exc:
        raise VariantUnavailable(f"torch.ao.quantization.quantize_dynamic is gone from torch "
                                 f"{torch.__version__} (torchao replaces it)") from exc
    converted = conv1d_to_linear(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the API's deprecation notice: said in the row instead
        quantized = quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=True)
    count = sum(1 for m in quantized.modules() if type(m).__name__ == "Linear"
                and "quantized" in type(m).__module__)
    notes = [f"{count} Linear layers in int8 (LM head included)"]
    if converted:
        notes.append(f"{converted} GPT-2 Conv1D layers converted to nn.Linear first")
    notes.append("torch.ao.quantization is deprecated upstream in favour of torchao")
    return Prepared(run=torch_runner(quantized, inputs), save=save_state_dict(quantized),
                    dtype="int8/float32", notes=notes)


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every ``nn.Linear`` and GPT-2 ``Conv1D`` except the LM head (tied to the embedding in
    most models, where pruning it would prune the input embedding too)."""
    conv1d = conv1d_class()
    kinds: tuple[type[nn.Module], ...] = (nn.Linear,) if conv1d is None else (nn.Linear, conv1d)
    head = output_embeddings(model)
    return [(name, m) for name, m in model.named_modules() if isinstance(m, kinds)
            and m is not head]


def prepare_prune_l1(model: nn.Module, inputs: dict[str, Any], device: str) -> Prepared:
    """Zero the 30 % smallest-magnitude weights of each Linear/Conv1D layer (unstructured L1,
    ``torch.nn.utils.prune.l1_unstructured``), made permanent with ``prune.remove``; the LM
    head stays dense. Zeros are still stored and multiplied densely."""
    from torch.nn.utils import prune

    layers = prunable_layers(model)
    if not layers:
        raise VariantUnavailable("the model has no Linear/Conv1D layer to prune")
    zeros = total = 0
    for _, module in layers:
        prune.l1_unstructured(module, "weight", amount=PRUNE_AMOUNT)
        prune.remove(module, "weight")
        zeros += int((module.weight == 0).sum())
        total += module.weight.numel()
    notes = [f"{len(layers)} layers, {zeros / total:.1%} of their weights zero (LM head dense)",
             "dense kernels and a dense file: no speed-up or smaller file is expected"]
    return Prepared(run=torch_runner(model, inputs), save=save_pretrained(model), notes=notes)


def two_four_mask(weight: torch.Tensor) -> torch.Tensor:
    """Keep the 2 largest-magnitude weights of every 4 consecutive ones along the input
    dimension (the 2:4 pattern sparse tensor cores accelerate); a bool mask of ``weight``'s
    shape. The input dimension must be a multiple of 4."""
    out_features, in_features = weight.shape
    groups = weight.detach().abs().reshape(out_features, in_features // 4, 4)
    keep = groups.topk(2, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return mask.reshape(out_features, in_features)


def prepare_prune_2_4(model: nn.Module, inputs: dict[str, Any], device: str) -> Prepared:
    """2:4 semi-structured sparsity (half of every 4 weights zero, by magnitude) on every
    Linear/Conv1D except the LM head, stored as ``torch.sparse`` semi-structured tensors and run
    on sparse tensor cores: CUDA, compute capability >= 8.0, float16 (the kernels' dtype)."""
    check_cuda(device)
    capability = torch.cuda.get_device_capability(device)
    if capability < (8, 0):
        raise VariantUnavailable(f"2:4 sparse kernels need compute capability >= 8.0; this GPU "
                                 f"has {capability[0]}.{capability[1]}")
    from torch.sparse import to_sparse_semi_structured

    conv1d_to_linear(model)
    model.to(dtype=torch.float16)
    done, skipped = 0, []
    for name, module in prunable_layers(model):
        weight = module.weight.detach()
        if weight.shape[1] % 4:
            skipped.append(name)
            continue
        dense = weight * two_four_mask(weight)
        try:
            module.weight = nn.Parameter(to_sparse_semi_structured(dense), requires_grad=False)
            done += 1
        except (RuntimeError, ValueError):
            module.weight = nn.Parameter(dense, requires_grad=False)
            skipped.append(name)
    if not done:
        raise VariantUnavailable("no layer's shape fits torch's semi-structured sparse kernels")
    notes = [f"{done} layers 2:4 sparse in float16"]
    if skipped:
        notes.append(f"{len(skipped)} layers kept dense (2:4-masked) as their shapes do not fit "
                     "the kernels")
    return Prepared(run=torch_runner(model, inputs), save=_save_sparse(model), dtype="float16",
                    notes=notes)


def _save_sparse(model: nn.Module) -> Callable[[Path], None]:
    """``save(dir)``: a safetensors file with each semi-structured weight as its packed values
    and metadata (``NAME.packed``, ``NAME.meta``), the other tensors as they are."""

    def save(directory: Path) -> None:
        from safetensors.torch import save_file

        tensors: dict[str, torch.Tensor] = {}
        for name, tensor in model.state_dict().items():
            if hasattr(tensor, "packed") and hasattr(tensor, "meta"):
                tensors[f"{name}.packed"] = tensor.packed.contiguous().cpu()
                tensors[f"{name}.meta"] = tensor.meta.contiguous().cpu()
            elif tensor.data_ptr() not in {t.data_ptr() for t in tensors.values()}:
                tensors[name] = tensor.contiguous().cpu()
        save_file(tensors, str(directory / "model.safetensors"))

    return save


def prepare_random_init(model: nn.Module, inputs: dict[str, Any], device: str) -> Prepared:
    """A deliberately broken control, not an optimisation: every weight tensor redrawn from a
    normal distribution with that tensor's own mean and standard deviation (seed 1). Same
    architecture, speed and size; outputs unrelated to the reference. Its fidelity row shows
    what "nothing in common with the reference" looks like."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            std = float(param.float().std()) if param.numel() > 1 else 0.0
            fresh = torch.randn(param.shape, generator=generator) * std + float(param.mean())
            param.copy_(fresh.to(param.dtype))
    return Prepared(run=torch_runner(model, inputs), save=save_pretrained(model),
                    notes=["control: weights redrawn at random (not an optimisation)"])


#: the recipe of every variant of :mod:`irene.bench.catalog` (its docstring says more)
RECIPES: dict[str, Prepare] = {
    "eager": prepare_eager, "sdpa": prepare_sdpa, "bf16": _half(torch.bfloat16),
    "fp16": _half(torch.float16), "compile": prepare_compile,
    "torchscript": prepare_torchscript, "onnxruntime": prepare_onnxruntime,
    "openvino": prepare_openvino, "int8-dynamic": prepare_int8_dynamic,
    "prune-l1-30": prepare_prune_l1, "prune-2:4": prepare_prune_2_4,
    CONTROL: prepare_random_init,
}
assert list(RECIPES) == list(SUMMARIES), "every catalogued variant needs a recipe"
#: every variant, in the order the table lists them
VARIANTS: dict[str, Variant] = {name: Variant(name, SUMMARIES[name], RECIPES[name])
                                for name in SUMMARIES}


def parse_variants(text: str) -> list[str]:
    """Comma-separated variant names -> the list (order kept, duplicates dropped), the
    reference first; ValueError naming the unknown ones and listing the known ones."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError("no variant named")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; known: "
                         f"{', '.join(VARIANTS)}")
    names = list(dict.fromkeys(names))
    return [REFERENCE, *(n for n in names if n != REFERENCE)]
