"""One model per runtime engine, decoding greedily one token at a time.

The exports are :mod:`irene.bench.variants`' (the same TorchScript trace, ONNX export and
OpenVINO conversion ``irene bench`` times), made with a dynamic sequence length so one artefact
serves prompts of any length. Every runtime runs the same computation per generated token: a
forward pass over the whole sequence so far (no KV cache: the exported graphs take
``input_ids`` alone) returning the last position's logits, then the argmax. The runtimes
therefore do the same work and differ only in how they execute it; absolute costs are those of
a cache-less server (higher than with a KV cache, and growing with the sequence).
"""

from __future__ import annotations

import inspect
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from irene.bench.variants import (
    ONNX_HINT,
    OPENVINO_HINT,
    LogitsOnly,
    VariantUnavailable,
    check_cuda,
    compile_openvino,
    device_type,
    export_onnx,
    export_openvino,
    ort_session,
    require,
    trace_torchscript,
)

RUNTIMES = ("torch", "torchscript", "onnxruntime", "openvino")
#: tokens of the sample sequence the exporters trace with
SAMPLE_LEN = 16

LastLogits = Callable[[np.ndarray], np.ndarray]


class EngineUnavailable(VariantUnavailable):
    """This runtime cannot serve here (missing package, unsupported device); says why."""


@dataclass
class Engine:
    """A loaded model: ``last_logits(ids)`` maps token ids (int64, shape 1 x L) to the logits of
    the last position (float32, vocabulary); ``max_len`` is the longest sequence it takes;
    ``vocab_limit`` the ids it may generate (the tokenizer's); ``cleanup()`` removes its files."""

    runtime: str
    description: str
    device: str
    max_len: int
    last_logits: LastLogits
    weights: str = ""
    vocab_limit: int | None = None
    notes: list[str] = field(default_factory=list)
    cleanup: Callable[[], None] | None = None

    def next_token(self, ids: list[int]) -> int:
        """The greedy next token after ``ids`` (restricted to ids below ``vocab_limit``)."""
        logits = self.last_logits(np.asarray([ids], dtype=np.int64))
        if self.vocab_limit is not None:
            logits = logits[: self.vocab_limit]
        return int(np.argmax(logits))

    def generate(self, ids: list[int], max_new_tokens: int) -> list[int]:
        """``max_new_tokens`` greedy tokens after ``ids`` (the in-process reference of the
        server's work)."""
        out: list[int] = []
        for _ in range(max_new_tokens):
            out.append(self.next_token(ids + out))
        return out


def _wrapper(model: nn.Module, sample: torch.Tensor) -> nn.Module:
    """:class:`LogitsOnly` returning the last position's logits only when the model can
    (``logits_to_keep=1``: the LM head is not applied to the other positions)."""
    fixed: dict[str, object] = {"input_ids": sample, "use_cache": False}
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        fixed["logits_to_keep"] = 1
    return LogitsOnly(model, fixed).eval()


def _torch(wrapper: nn.Module, device: str) -> LastLogits:
    def run(ids: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = wrapper(torch.from_numpy(ids).to(device))
        return out[0, -1].float().cpu().numpy()

    return run


def _torchscript(wrapper: nn.Module, sample: torch.Tensor, device: str) -> LastLogits:
    frozen = trace_torchscript(wrapper, sample)

    def run(ids: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = frozen(torch.from_numpy(ids).to(device))
        return out[0, -1].float().cpu().numpy()

    return run


def _onnxruntime(wrapper: nn.Module, sample: torch.Tensor, device: str,
                 max_len: int) -> tuple[LastLogits, str, Callable[[], None]]:
    ort = require("onnxruntime", ONNX_HINT)
    require("onnx", ONNX_HINT)
    require("onnxscript", ONNX_HINT)
    if device_type(device) == "cuda" and \
            "CUDAExecutionProvider" not in ort.get_available_providers():
        raise EngineUnavailable("onnxruntime has no CUDA execution provider here (install "
                                "onnxruntime-gpu instead of onnxruntime)")
    workdir = Path(tempfile.mkdtemp(prefix="irene-serve-onnx-"))
    try:
        path = workdir / "model.onnx"
        export_onnx(wrapper, sample, path, max_len=max_len)
        session = ort_session(ort, path, device)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    name, output = session.get_inputs()[0].name, session.get_outputs()[0].name

    def run(ids: np.ndarray) -> np.ndarray:
        return session.run([output], {name: ids})[0][0, -1]

    description = f"ONNX Runtime {ort.__version__} ({session.get_providers()[0]})"
    return run, description, lambda: shutil.rmtree(workdir, ignore_errors=True)


def _openvino(wrapper: nn.Module, sample: torch.Tensor, device: str,
              max_len: int) -> tuple[LastLogits, str]:
    ov = require("openvino", OPENVINO_HINT)
    if device_type(device) != "cpu":
        raise EngineUnavailable(f"OpenVINO runs on the CPU here, not {device}")
    compiled = compile_openvino(ov, export_openvino(ov, wrapper, sample, max_len=max_len))
    request = compiled.create_infer_request()

    def run(ids: np.ndarray) -> np.ndarray:
        request.infer({0: ids})
        return np.array(request.get_output_tensor(0).data[0, -1])

    return run, f"OpenVINO {ov.get_version().split('-')[0]} (CPU, f32)"


def load_engine(model_name: str, runtime: str, *, device: str = "cpu",
                seed: int = 0) -> Engine:
    """Load ``model_name`` (see :func:`irene.bench.run.load_model`: never downloaded) and
    prepare it for ``runtime`` on ``device``. EngineUnavailable (or VariantUnavailable) with
    the reason when the runtime cannot run here; ValueError for an unknown runtime."""
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
    wrapper = _wrapper(model, sample)
    cleanup = None
    if runtime == "torch":
        run, description = _torch(wrapper, device), f"PyTorch {torch.__version__} eager"
    elif runtime == "torchscript":
        run, description = _torchscript(wrapper, sample, device), "TorchScript (traced, frozen)"
    elif runtime == "onnxruntime":
        run, description, cleanup = _onnxruntime(wrapper, sample, device, max_len)
    else:
        run, description = _openvino(wrapper, sample, device, max_len)
    return Engine(runtime=runtime, description=description, device=device, max_len=max_len,
                  last_logits=run, weights=weights, cleanup=cleanup,
                  notes=["greedy decoding, a full forward pass per token (no KV cache)"])
