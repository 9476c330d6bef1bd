"""One model per runtime engine, decoding greedily with a KV cache.

Every runtime runs the same two computations, :mod:`irene.bench.variants`' cached decoders: a
*prefill* over the prompt returning the last position's logits and the prompt's keys and values
(stacked per layer: layers x 1 x kv-heads x length x head-dim), then one *step* per new token
that feeds that token and the cache and returns the next logits and the cache one position
longer; the argmax of each logits vector is the next token. TorchScript, ONNX Runtime and
OpenVINO run the exports of those two modules (the same TorchScript trace, ONNX export and
OpenVINO conversion ``irene bench`` times), made with a dynamic prompt length and a dynamic
cache length so one pair of artefacts serves prompts of any length; PyTorch runs them eagerly.
The runtimes therefore do the same work and differ only in how they execute it. The cache is
held by each request's decoder, in the runtime's own arrays, between steps.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from irene.bench.variants import (
    ONNX_HINT,
    OPENVINO_HINT,
    CachedDecoder,
    Prefill,
    VariantUnavailable,
    check_cuda,
    compile_openvino,
    decoder_dynamic_shapes,
    device_type,
    export_onnx,
    export_openvino,
    ort_session,
    require,
    trace_torchscript,
)
from irene.serve import RUNTIMES

#: tokens of the sample prompt the exporters trace with
SAMPLE_LEN = 16

#: a runtime's KV cache between steps: its (keys, values) arrays, opaque to the engine
KV = tuple[Any, Any]
#: ``prefill(ids)``: token ids (int64, 1 x L) -> (last logits as float32 numpy, vocabulary; KV)
PrefillFn = Callable[[np.ndarray], tuple[np.ndarray, KV]]
#: ``step(token, kv)``: one token id (int64, 1 x 1) after ``kv`` -> (last logits; longer KV)
StepFn = Callable[[np.ndarray, KV], tuple[np.ndarray, KV]]


class EngineUnavailable(VariantUnavailable):
    """This runtime cannot serve here (missing package, unsupported device); says why."""


@dataclass
class Engine:
    """A loaded model: ``prefill`` and ``step`` (see :data:`PrefillFn`, :data:`StepFn`);
    ``max_len`` is the longest sequence it takes (prompt + new tokens); ``vocab_limit`` the ids
    it may generate (the tokenizer's); ``cleanup()`` removes its files."""

    runtime: str
    description: str
    device: str
    max_len: int
    prefill: PrefillFn
    step: StepFn
    weights: str = ""
    vocab_limit: int | None = None
    notes: list[str] = field(default_factory=list)
    cleanup: Callable[[], None] | None = None

    def greedy(self, logits: np.ndarray) -> int:
        """The argmax of ``logits``, restricted to ids below ``vocab_limit``."""
        if self.vocab_limit is not None:
            logits = logits[: self.vocab_limit]
        return int(np.argmax(logits))

    def decode(self, ids: list[int]) -> Iterator[int]:
        """The greedy tokens after ``ids``, one per ``next()``: the first runs the prefill, each
        later one a cached step; the cache lives in the generator and is freed with it. Ask for
        at most ``max_len - len(ids)`` tokens."""
        logits, kv = self.prefill(np.asarray([ids], dtype=np.int64))
        while True:
            token = self.greedy(logits)
            yield token
            logits, kv = self.step(np.asarray([[token]], dtype=np.int64), kv)

    def generate(self, ids: list[int], max_new_tokens: int) -> list[int]:
        """``max_new_tokens`` greedy tokens after ``ids`` (the in-process reference of the
        server's work)."""
        return list(itertools.islice(self.decode(ids), max_new_tokens))


def _torch_pair(prefill: Callable[..., Any], step: Callable[..., Any],
                device: str) -> tuple[PrefillFn, StepFn]:
    """``prefill``/``step`` around torch callables (eager modules or TorchScript): the cache
    stays in torch tensors on ``device``; only the logits are copied to numpy."""

    def run_prefill(ids: np.ndarray) -> tuple[np.ndarray, KV]:
        with torch.inference_mode():
            logits, keys, values = prefill(torch.from_numpy(ids).to(device))
        return logits[0].float().cpu().numpy(), (keys, values)

    def run_step(token: np.ndarray, kv: KV) -> tuple[np.ndarray, KV]:
        with torch.inference_mode():
            logits, keys, values = step(torch.from_numpy(token).to(device), *kv)
        return logits[0].float().cpu().numpy(), (keys, values)

    return run_prefill, run_step


def _torchscript(prefill: nn.Module, step: nn.Module, sample: torch.Tensor,
                 device: str) -> tuple[PrefillFn, StepFn]:
    """Both decoders traced (the step on the sample prompt's cache) and frozen."""
    with torch.no_grad():
        _, keys, values = prefill(sample)
    return _torch_pair(trace_torchscript(prefill, (sample,)),
                       trace_torchscript(step, (sample[:, -1:], keys, values)), device)


def _onnxruntime(prefill: nn.Module, step: nn.Module, sample: torch.Tensor, device: str,
                 max_len: int) -> tuple[PrefillFn, StepFn, str, Callable[[], None]]:
    ort = require("onnxruntime", ONNX_HINT)
    require("onnx", ONNX_HINT)
    require("onnxscript", ONNX_HINT)
    if device_type(device) == "cuda" and \
            "CUDAExecutionProvider" not in ort.get_available_providers():
        raise EngineUnavailable("onnxruntime has no CUDA execution provider here (install "
                                "onnxruntime-gpu instead of onnxruntime)")
    prefill_shapes, step_shapes = decoder_dynamic_shapes(max_len)
    workdir = Path(tempfile.mkdtemp(prefix="irene-serve-onnx-"))
    try:
        with torch.no_grad():
            _, keys, values = prefill(sample)
        (workdir / "prefill").mkdir()
        (workdir / "step").mkdir()
        export_onnx(prefill, (sample,), workdir / "prefill" / "model.onnx",
                    dynamic_shapes=prefill_shapes)
        export_onnx(step, (sample[:, -1:], keys, values), workdir / "step" / "model.onnx",
                    dynamic_shapes=step_shapes)
        first = ort_session(ort, workdir / "prefill" / "model.onnx", device)
        then = ort_session(ort, workdir / "step" / "model.onnx", device)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    prefill_input = first.get_inputs()[0].name
    step_inputs = [i.name for i in then.get_inputs()]

    def run_prefill(ids: np.ndarray) -> tuple[np.ndarray, KV]:
        logits, keys, values = first.run(None, {prefill_input: ids})
        return logits[0], (keys, values)

    def run_step(token: np.ndarray, kv: KV) -> tuple[np.ndarray, KV]:
        logits, keys, values = then.run(None, dict(zip(step_inputs, (token, *kv), strict=True)))
        return logits[0], (keys, values)

    description = f"ONNX Runtime {ort.__version__} ({then.get_providers()[0]})"
    return run_prefill, run_step, description, lambda: shutil.rmtree(workdir, ignore_errors=True)


def _openvino(prefill: nn.Module, step: nn.Module, sample: torch.Tensor, device: str,
              max_len: int) -> tuple[PrefillFn, StepFn, str]:
    ov = require("openvino", OPENVINO_HINT)
    if device_type(device) != "cpu":
        raise EngineUnavailable(f"OpenVINO runs on the CPU here, not {device}")
    prefill_shapes, step_shapes = decoder_dynamic_shapes(max_len)
    with torch.no_grad():
        _, keys, values = prefill(sample)
    first = compile_openvino(ov, export_openvino(ov, prefill, (sample,),
                                                 dynamic_shapes=prefill_shapes))
    then = compile_openvino(ov, export_openvino(ov, step, (sample[:, -1:], keys, values),
                                                dynamic_shapes=step_shapes))
    first_request, step_request = first.create_infer_request(), then.create_infer_request()

    def run_prefill(ids: np.ndarray) -> tuple[np.ndarray, KV]:
        # infer() returns copies (share_outputs=False): the cache outlives the request buffers
        logits, keys, values = first_request.infer({0: ids}).to_tuple()
        return logits[0], (keys, values)

    def run_step(token: np.ndarray, kv: KV) -> tuple[np.ndarray, KV]:
        logits, keys, values = step_request.infer({0: token, 1: kv[0], 2: kv[1]}).to_tuple()
        return logits[0], (keys, values)

    return run_prefill, run_step, f"OpenVINO {ov.get_version().split('-')[0]} (CPU, f32)"


def load_engine(model_name: str, runtime: str, *, device: str = "cpu",
                seed: int = 0) -> Engine:
    """Load ``model_name`` (see :func:`irene.bench.run.load_model`: never downloaded) and
    prepare its cached decoders for ``runtime`` on ``device``. EngineUnavailable (or
    VariantUnavailable) with the reason when the runtime cannot run here or the model has no
    KV cache the decoders can hold; ValueError for an unknown runtime."""
    from irene.bench.run import load_model
    from irene.tracing.registry import max_sequence_length

    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if device_type(device) == "cuda":
        check_cuda(device)
    model, weights = load_model(model_name, device=device, seed=seed)
    max_len = max_sequence_length(model.config) or 2048
    sample = torch.randint(0, model.config.vocab_size, (1, min(SAMPLE_LEN, max_len)),
                           generator=torch.Generator().manual_seed(seed)).to(device)
    prefill, step = Prefill(model).eval(), CachedDecoder(model).eval()
    cleanup = None
    if runtime == "torch":
        (run_prefill, run_step), description = (_torch_pair(prefill, step, device),
                                                f"PyTorch {torch.__version__} eager")
    elif runtime == "torchscript":
        run_prefill, run_step = _torchscript(prefill, step, sample, device)
        description = "TorchScript (traced, frozen)"
    elif runtime == "onnxruntime":
        run_prefill, run_step, description, cleanup = _onnxruntime(prefill, step, sample,
                                                                   device, max_len)
    else:
        run_prefill, run_step, description = _openvino(prefill, step, sample, device, max_len)
    return Engine(runtime=runtime, description=description, device=device, max_len=max_len,
                  prefill=run_prefill, step=run_step, weights=weights, cleanup=cleanup,
                  notes=["greedy decoding with a KV cache: one prefill over the prompt, then "
                         "one cached step per new token"])
