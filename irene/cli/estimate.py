"""``irene estimate MODEL``: predict a model's energy without a meter.

Four modes:

* on a GPU without a predictor (``--batch-size --seq-len [--gpu GPU] [--runtime R]``, or a
  generation ``--prompt-len --new-tokens``): every node's energy, time and power from the
  hardware model (:mod:`irene.cli.estimate_gpu`);
* one call (``--batch-size --seq-len --predictor``): trace MODEL and predict every node; with
  ``--phase`` a prefill, a decode step (``--context-len``) or a training step (``--phase
  train``, with the split between forward, backward and optimiser);
* a generation (``--prompt-len --new-tokens --predictor``): a prefill, then one decode step
  per new token (:mod:`irene.generation`);
* serving (``--serving vllm --gpu``): serving the LLM on GPUs, from the shipped predictor
  learned from public measurements (:mod:`irene.serving.estimate`).
"""

from __future__ import annotations

import argparse

from irene.cli import UserError
from irene.cli.options import (
    add_force_option,
    add_json_option,
    add_trace_options,
    add_view_options,
    check_outputs,
    console,
    depth,
    dimension,
    number_at_most,
    positive_int,
    print_result,
)
from irene.cli.phases import (
    add_generation_arguments,
    add_phase_arguments,
    phase_context_lens,
    phase_options,
    run_generation,
)
from irene.limits import MAX_DIMENSION

SERVING_FORMATS = ("bf16", "fp8", "mxfp4")
#: the serving mode's workload when --prompt-len / --new-tokens are not given
SERVING_PROMPT_LEN, SERVING_NEW_TOKENS = 1000, 500
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
                   help="tokens per sequence of one call")
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
    add_generation_arguments(p)
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
    if args.serving:
        return run_serving(args)
    stray = _given(args, SERVING_ONLY)
    if stray:
        raise UserError(f"{', '.join(stray)} only apply with --serving vllm")
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
    if args.prompt_len is not None or args.new_tokens is not None:
        if args.phase != "forward":
            raise UserError("--phase is for one call; a generation (--prompt-len, --new-tokens) "
                            "is a prefill and its decode steps")
        return run_generation(args)
    if args.batch_size is None or args.seq_len is None:
        raise UserError("give --batch-size and --seq-len (one call), or --prompt-len and "
                        "--new-tokens (a generation), or --serving vllm")
    return run_trace(args)


def run_trace(args: argparse.Namespace) -> int:
    from irene.estimate import EstimateError, estimate_tree
    from irene.report import energy_for
    from irene.report.breakdown import explain_tree
    from irene.report.terminal import render_breakdown
    from irene.tree import write_trees

    phase = phase_options(args)
    (context_len,) = phase_context_lens(args)
    if args.steps is not None and phase["phase"] != "train":
        raise UserError("--steps needs --phase train (energy of N training steps)")
    check_outputs(args)
    out = console()
    notes = console(stderr=True) if args.json else out  # keep stdout pure JSON with --json
    try:
        tree = estimate_tree(args.model_name, args.batch_size, args.seq_len, args.predictor,
                             device=args.device, dtype=args.dtype or "float32", attn=args.attn,
                             progress=not (args.json or args.quiet), hub=not args.offline,
                             warn=lambda text: notes.print(text, style="yellow", markup=False),
                             context_len=context_len, **phase)
    except (EstimateError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    breakdown = explain_tree(tree, source="predicted", depth=depth(args), top=args.top)
    split = None
    if phase["phase"] == "train":
        from irene.report.training import training_split

        split = training_split(tree, source="predicted", depth=depth(args) or 3,
                               steps=args.steps or 1)
    if args.json or args.quiet:
        from irene.report.breakdown import breakdown_json

        data = breakdown_json(breakdown, note=energy_for(tree, breakdown.source))
        if split is not None:
            from irene.report.training import split_json

            data["training"] = split_json(split, top=args.top)
        print_result(args, data, breakdown.total_j * (args.steps or 1))
    else:
        render_breakdown(breakdown, out)
        if split is not None:
            from irene.report.training import render_training

            render_training(split, out, top=args.top)
    if args.output:
        write_trees([tree], args.output)
        notes.print(f"wrote the predicted tree to {args.output}")
    if args.html:
        from irene.report.html import write_report

        write_report([tree], args.html)
        notes.print(f"wrote {args.html}")
    return 0


def run_serving(args: argparse.Namespace) -> int:
    from irene.hardware.gpus import GpuSpecError, load_gpu_spec
    from irene.hardware.params import ParamsFormatError
    from irene.serving.estimate import ServingEstimateError, estimate_serving
    from irene.serving.report import estimate_json, render_estimate

    stray = _given(args, TRACE_ONLY)
    if stray:
        raise UserError(f"{', '.join(stray)} do not apply with --serving (it predicts from "
                        "the shipped serving predictor, no tree is traced)")
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
