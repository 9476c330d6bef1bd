"""``irene estimate MODEL --serving vllm --gpu GPU``: the energy per token of serving an LLM
with vLLM, from the hardware model fitted to public measurements (:mod:`irene.serving.estimate`)."""

from __future__ import annotations

import argparse

from irene.cli import UserError
from irene.cli.options import console, print_result

#: the served weight formats (--dtype with --serving)
SERVING_FORMATS = ("bf16", "fp8", "mxfp4")
#: the serving mode's workload when --prompt-len / --new-tokens are not given
SERVING_PROMPT_LEN, SERVING_NEW_TOKENS = 1000, 500


def run_serving(args: argparse.Namespace) -> int:
    """Predict serving MODEL with vLLM on --gpu (or --gpu-spec) and print it (or --json)."""
    from irene.hardware.gpus import GpuSpecError, load_gpu_spec
    from irene.hardware.params import ParamsFormatError
    from irene.serving.estimate import ServingEstimateError, estimate_serving
    from irene.serving.report import estimate_json, render_estimate

    if not args.gpu and not args.gpu_spec:
        raise UserError("--serving vllm needs --gpu (H100, B200, A100-40GB measured; others "
                        "from their data sheets) or --gpu-spec FILE")
    if args.gpu and args.gpu_spec:
        raise UserError("--gpu and --gpu-spec: give one of them")
    if args.dtype in ("float32",):
        raise UserError("--dtype float32: vLLM serves these models in bf16, fp8 or mxfp4")
    try:
        gpu = load_gpu_spec(args.gpu_spec) if args.gpu_spec else args.gpu
        estimate = estimate_serving(
            args.model_name, gpu=gpu, num_gpus=args.num_gpus,
            concurrency=args.concurrency,
            prompt_len=args.prompt_len or SERVING_PROMPT_LEN,
            new_tokens=args.new_tokens or SERVING_NEW_TOKENS, weight_format=args.dtype,
            predictor=args.serving_predictor, hub=not args.offline)
    except (ServingEstimateError, ParamsFormatError, GpuSpecError) as exc:
        raise UserError(str(exc)) from exc
    if not print_result(args, estimate_json(estimate), estimate.joules_per_token):
        render_estimate(estimate, console(), top=args.top)
    return 0
