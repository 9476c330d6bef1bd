"""The variants ``irene bench`` knows, by name, with the one-line summary the help and the report
show (the recipes themselves are in :mod:`irene.bench.variants`; this list imports nothing
heavy, so building the command line stays fast)."""

from __future__ import annotations

#: the reference every variant is compared with
REFERENCE = "eager"
#: a deliberately broken variant: the fidelity numbers must catch it
CONTROL = "random-init"

#: every variant, in the order the table lists them
SUMMARIES: dict[str, str] = {
    "eager": "the reference: PyTorch eager, float32, unfused attention",
    "sdpa": "PyTorch eager with fused scaled_dot_product_attention",
    "bf16": "weights and activations in bfloat16",
    "fp16": "weights and activations in float16",
    "compile": "torch.compile (inductor), compiled from an empty cache",
    "torchscript": "torch.jit.trace + torch.jit.freeze",
    "onnxruntime": "torch.onnx.export + ONNX Runtime (CPU, or CUDA with onnxruntime-gpu)",
    "openvino": "torch.export + OpenVINO CPU plugin, f32",
    "int8-dynamic": "dynamic int8 quantisation of every Linear (GPT-2 Conv1D converted)",
    "prune-l1-30": "30 % unstructured magnitude pruning of Linear/Conv1D weights",
    "prune-2:4": "2:4 semi-structured sparsity, float16 (CUDA, sm80+)",
    CONTROL: "broken control: weights redrawn at random",
}

#: the variants run when none are named: every optimisation (not the control)
DEFAULT_VARIANTS: tuple[str, ...] = tuple(v for v in SUMMARIES if v != CONTROL)
