"""``irene estimate MODEL``: predict a model's energy without a meter.

Four modes:

* on a GPU without a predictor (``--batch-size --seq-len [--gpu GPU] [--runtime R]``, or a
  generation ``--prompt-len --new-tokens``): every node's energy, time and power from the
  hardware model (:mod:`irene.cli.estimate_gpu`);
* one call (``--batch-size --seq-len --predictor``): trace MODEL and predict every node; with
  ``--phase`` a prefill, a decode step (``--context-len``) or a training step (``--phase
  train``, with the split between forward, backward and optimiser)
  (:mod:`irene.cli.estimate_predictor`);
* a generation (``--prompt-len --new-tokens --predictor``): a prefill, then one decode step
  per new token (:mod:`irene.cli.estimate_generation`);
* serving (``--serving vllm --gpu``): serving the LLM on GPUs, from the shipped predictor
  learned from public measurements (:mod:`irene.cli.estimate_serving`).

This module builds the parser and sends each invocation to its mode.
"""

from __future__ import annotations

import argparse

from irene.cli import UserError
from irene.cli.estimate_serving import SERVING_FORMATS, SERVING_NEW_TOKENS, SERVING_PROMPT_LEN
from irene.cli.options import (
    add_force_option,
    add_json_option,
    add_trace_options,
    add_view_options,
    dimension,
    number_at_most,
    positive_int,
    positive_number,
)
from irene.cli.phases import add_phase_arguments
from irene.limits import DEFAULT_TOLERANCE_PCT, MAX_DECODE_POINTS, MAX_DIMENSION

#: options of the tracing modes that --serving does not use
TRACE_ONLY = ("batch_size", "seq_len", "predictor", "output", "html", "steps", "phase",
              "optimizer", "context_len", "plot", "runtime")
#: options of the serving mode that the tracing modes do not use
SERVING_ONLY = ("num_gpus", "concurrency", "serving_predictor")
#: options of the GPU mode (no --predictor) that the predictor modes do not use
GPU_ONLY = ("gpu", "runtime", "gpu_spec")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "estimate", help="predict a model's energy without a meter (a call, a generation, "
                         "serving)",
        description="Trace MODEL (features only, no meter) at one batch size and sequence "
                    "length, predict every node with a trained predictor and print the "
                    "breakdown; the tree is traced with the schema the predictor was trained "
                    "on. --phase prefill/decode/train estimates one such call (a training step "
                    "with the split between forward, backward and optimiser). With --prompt-len "
                    "and --new-tokens: the energy of generating text (a prefill, then one "
                    "decode step per new token), per phase and per token. With --serving vllm: "
                    "the energy per token of serving MODEL with vLLM on GPUs, from the hardware "
                    "model fitted to the public ML.ENERGY v3, v2 and v1 measurements "
                    "(Apache-2.0).")
    p.add_argument("model_name", metavar="MODEL",
                   help="built-in model name (see `irene models`), a directory with "
                        "config.json, or a config.json")
    p.add_argument("--batch-size", type=dimension, default=None,
                   help="sequences per call (required with --seq-len; a generation: default 1)")
    p.add_argument("--seq-len", type=dimension, default=None,
                   help="tokens per sequence of one call (--phase decode: 1, the default)")
    p.add_argument("--predictor", metavar="DIR",
                   help="a model directory written by `irene train` (tracing modes); without "
                        "it: every node's energy, time and power on --gpu from the hardware "
                        "model")
    p.add_argument("--runtime", default="eager",
                   help="without --predictor: the runtime that drives the GPU, eager (PyTorch, "
                        "the default), compile (CUDA graphs) or vllm")
    add_trace_options(p, schema=False, extra_dtypes=SERVING_FORMATS,
                      dtype_help="tracing: float32 (default), float16, bfloat16; with "
                                 "--serving: the served weight format bf16, fp8 or mxfp4 "
                                 "(default: the checkpoint's, bf16 for a plain config)")
    add_phase_arguments(p, sweep=False)
    p.add_argument("--steps", type=positive_int, default=None, metavar="N",
                   help="with --phase train: also the energy of N training steps")
    group = p.add_argument_group(
        "generation", "estimate generating text: a prefill of the prompt, then one decode step "
                      "per new token (see the README's generation section)")
    group.add_argument("--prompt-len", type=dimension, default=None, metavar="P",
                       help="prompt tokens per sequence")
    group.add_argument("--new-tokens", type=dimension, default=None, metavar="N",
                       help="tokens generated per sequence (decode steps at context lengths "
                            "P … P+N-1)")
    group.add_argument("--decode-tolerance", type=positive_number,
                       default=DEFAULT_TOLERANCE_PCT, metavar="PCT",
                       help="the decode sum is refined (more traced context lengths, at most "
                            f"{MAX_DECODE_POINTS}) until two rules agree within PCT percent "
                            f"(default {DEFAULT_TOLERANCE_PCT:g})")
    group.add_argument("--plot", metavar="FIGURE.png",
                       help="also draw energy per token against context length and the "
                            "prefill/decode split (.png or .svg)")
    add_view_options(p)
    add_json_option(p, quiet="the total energy in J (a call or --steps N training steps; a "
                               "generation: all of it; --serving: J per output token)")
    p.add_argument("-o", "--output", metavar="TREES.jsonl",
                   help="also save the predicted tree(s) (JSONL)")
    p.add_argument("--html", metavar="REPORT.html", help="also write an HTML report")
    p.add_argument("--offline", action="store_true", help="never look MODEL up on the Hub")
    add_force_option(p)
    s = p.add_argument_group("serving (--serving vllm; --prompt-len and --new-tokens give the "
                             f"request, default {SERVING_PROMPT_LEN} and "
                             f"{SERVING_NEW_TOKENS} tokens)")
    s.add_argument("--serving", choices=("vllm",),
                   help="estimate LLM serving with vLLM instead of tracing")
    s.add_argument("--gpu", help="GPU model (H100, H100-PCIe, H200, B200, A100, A100-40GB, A40, "
                                 "L40S, L4, V100, RTX-4090, RTX-3090); measured under vLLM: "
                                 "H100, B200, A100-40GB; others from their data sheets; without "
                                 "--predictor and --serving: every node on that GPU (default "
                                 "H100)")
    s.add_argument("--gpu-spec", metavar="FILE",
                   help="a GPU of your own from a JSON/YAML file (irene.hardware.gpus."
                        "load_gpu_spec: name, tflops, memory_bandwidth_gb_s, memory_gb, "
                        "power_limit_w, or base + overrides)")
    s.add_argument("--num-gpus", type=positive_int,
                   help="GPUs of one instance (tensor parallel; experts spread over all); "
                        "default: the fewest that hold the weights")
    s.add_argument("--concurrency", type=number_at_most(MAX_DIMENSION), default=64.0,
                   help="sequences decoded together (vLLM's running batch; default 64)")
    s.add_argument("--serving-predictor", metavar="FILE",
                   help="a hardware parameter JSON (scripts/fit_hardware.py; default: the one "
                        "shipped with irene)")
    p.set_defaults(func=run)


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> list[str]:
    defaults = {"concurrency": 64.0, "phase": "forward", "runtime": "eager"}
    return ["--" + n.replace("_", "-") for n in names
            if getattr(args, n, None) not in (None, defaults.get(n))]


def run(args: argparse.Namespace) -> int:
    """Send ``irene estimate`` to its mode (see the module docstring)."""
    if args.serving:
        from irene.cli.estimate_serving import run_serving

        stray = _given(args, TRACE_ONLY)
        if stray:
            raise UserError(f"{', '.join(stray)} do not apply with --serving (it predicts from "
                            "the shipped serving predictor, no tree is traced)")
        return run_serving(args)
    stray = _given(args, SERVING_ONLY)
    if stray:
        raise UserError(f"{', '.join(stray)} only apply with --serving vllm")
    generation = args.prompt_len is not None or args.new_tokens is not None
    if generation and args.phase != "forward":
        raise UserError("--phase is for one call; a generation (--prompt-len, --new-tokens) is "
                        "a prefill and its decode steps")
    if generation and (args.prompt_len is None or args.new_tokens is None):
        raise UserError("a generation needs both --prompt-len and --new-tokens")
    if args.phase == "decode" and args.seq_len is None:
        args.seq_len = 1  # a decode step feeds one token per sequence (irene.workload)
    if not generation and (args.batch_size is None or args.seq_len is None):
        raise UserError("give --batch-size and --seq-len (one call), or --prompt-len and "
                        "--new-tokens (a generation), or --serving vllm")
    if args.predictor is None:
        from irene.cli.estimate_gpu import run_gpu

        return run_gpu(args)
    if args.dtype in SERVING_FORMATS:
        raise UserError(f"--dtype {args.dtype} is a served weight format (with --serving); "
                        "tracing takes float32, float16 or bfloat16")
    stray = _given(args, GPU_ONLY)
    if stray:
        raise UserError(f"{', '.join(stray)} apply without --predictor (the hardware model) or "
                        "with --serving")
    if generation:
        from irene.cli.estimate_generation import run_generation

        return run_generation(args)
    from irene.cli.estimate_predictor import run_call

    return run_call(args)
