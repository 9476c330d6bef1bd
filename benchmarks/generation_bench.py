"""Benchmark of generation tracing and estimates on TinyLlama-1.1B (built-in config, no weights
downloaded).

Prints, with the machine load (``uptime``) before and after, on one torch thread:

1. **decode step**: features-only trace (``irene trace TinyLlama-1.1B --phase decode --batch-size 8
   --context-len 1024 --no-timing``) of one decode step at batch 8, context 1024 — median of
   ``--runs`` traces of an already built model (building the model is timed once, apart);
2. **generation estimate**: the whole ``irene estimate TinyLlama-1.1B --prompt-len 512
   --new-tokens 256 --predictor P --json``, in this process, model building included — median of
   ``--runs`` runs. ``P`` is trained here on a small generation data set (forward, prefill and
   decode trees of two tiny Llama-shaped models) traced with the **simulated meter**: its energies
   are SYNTHETIC (time x a constant power), so the estimate's joules say nothing about real
   hardware; only the timings are the point.

3. **decode sum accuracy** (``--parts sum``): on a tiny Llama (2 layers, hidden 64), the decode
   sum against the sum of every step's prediction, beside the simplest baselines (the middle
   step times N; the least-squares line through the same 3 points), for predictors with linear
   and with log-space leaves trained on the synthetic data set above, and several (P, N).

The timings are measured two ways: with real (random) weights on the CPU — how this branch
traces — and on the meta device (shapes, no weights, no arithmetic: the model is built under
``torch.device("meta")`` and traced with ``device="meta"``), which is what features-only traces
cost once the meta-device tracer is merged. The script checks that both give the same FLOPs and
bytes for the decode step.

    python benchmarks/generation_bench.py              # 3 runs of each
    python benchmarks/generation_bench.py --runs 1 --skip-real
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

MODEL = "TinyLlama-1.1B"


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def timed(fn, runs: int) -> tuple[list[float], object]:
    """Wall times (s) of ``runs`` calls of ``fn`` and its last result."""
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def show(label: str, times: list[float]) -> None:
    runs = ", ".join(f"{t:.2f}" for t in times)
    print(f"  {label:58s} median {statistics.median(times):7.2f} s   (runs: {runs})")


def meta_model(name: str):
    """``name``'s base model on the meta device (no weights), as the meta-device tracer builds
    it."""
    import torch
    from transformers import AutoModel

    from irene.tracing.registry import load_config

    config = load_config(name, hub=False)
    config.use_cache = False
    with torch.device("meta"):
        model = AutoModel.from_config(config, attn_implementation="eager")
    model.eval()
    model.config.name_or_path = name
    return model


def train_synthetic_predictor(directory: Path) -> Path:
    """A structure-only predictor (model_specs + generation) trained on forward, prefill and
    decode trees of two tiny Llama-shaped models measured with the SIMULATED meter."""
    import transformers as T

    from irene.cli import main

    data = directory / "generation-simulated.jsonl"
    shapes = [(64, 4, 2, 172, 2), (128, 8, 2, 344, 3)]
    simulated = ["--meter", "simulated", "--runs", "1", "--warmup", "0",
                 "--min-run-seconds", "0.001", "--offline", "-o", str(data)]
    for hidden, heads, kv, inner, layers in shapes:
        config_dir = directory / f"tiny-llama-{hidden}"
        T.LlamaConfig(vocab_size=1000, hidden_size=hidden, num_attention_heads=heads,
                      num_key_value_heads=kv, intermediate_size=inner,
                      num_hidden_layers=layers, max_position_embeddings=2048
                      ).save_pretrained(config_dir)
        for phase in ("forward", "prefill"):
            _quiet(main, ["trace", str(config_dir), "--phase", phase, "--batch-sizes", "1,4",
                          "--seq-lens", "16,128", *simulated])
        _quiet(main, ["trace", str(config_dir), "--phase", "decode", "--batch-sizes", "1,4",
                      "--context-lens", "16,256,1024", *simulated])
    predictor = directory / "predictor"
    # log-space leaves: power laws of the features, positive when extrapolated to a 1.1B model
    _quiet(main, ["train", str(data), str(predictor), "--set",
                  'feature_sets=["model_specs", "generation"]', "--set", "leaf_fit=log"])
    return predictor


def _quiet(fn, *args):
    err = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stderr(err), \
            contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        code = fn(*args)
    if code:
        raise SystemExit(f"irene {args[0][0]} failed (exit code {code}): {err.getvalue()[-800:]}")


def bench_decode(runs: int, real: bool) -> None:
    from irene.tracing import build_model, trace_model

    print("\n1. decode step, features only: TinyLlama-1.1B, batch 8, context 1024 "
          "(1 new token per sequence)")
    trees = {}
    if real:
        start = time.perf_counter()
        model = build_model(MODEL, hub=False)
        show("build the model with random weights (once)", [time.perf_counter() - start])
        times, trees["real"] = timed(lambda: trace_model(
            model, 8, 1, timing=False, phase="decode", context_len=1024, model_name=MODEL),
            runs)
        show("trace, real weights on CPU (this branch's trace --no-timing)", times)
        del model
    times, trees["meta"] = timed(lambda: trace_model(
        meta_model(MODEL), 8, 1, timing=False, phase="decode", context_len=1024,
        device="meta", model_name=MODEL), runs)
    show("build on meta + trace on meta (after the meta-device merge)", times)
    root = trees["meta"].root.features
    print(f"  decode step: {root['flops'] / 1e3:.2f} GFLOP, {root['mem_bytes'] / 1024:.3f} GiB "
          f"read+written, {len(list(trees['meta'].nodes()))} nodes")
    if "real" in trees:
        same = all(trees["real"].root.features[k] == root[k] for k in ("flops", "mem_bytes"))
        print(f"  real and meta decode trees: same FLOPs and bytes: {same}")
    del trees


def bench_estimate(runs: int, real: bool, predictor: Path) -> None:
    from irene.cli import main
    from irene.generation import estimate_generation

    print("\n2. irene estimate TinyLlama-1.1B --prompt-len 512 --new-tokens 256 (batch 1), "
          "predictor trained here on SYNTHETIC (simulated-meter) data")
    argv = ["estimate", MODEL, "--prompt-len", "512", "--new-tokens", "256", "--predictor",
            str(predictor), "--offline", "--json"]
    if real:
        outputs: list[str] = []

        def run_cli() -> None:
            buffer, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(err):
                code = main(argv)
            if code:
                raise SystemExit(f"irene estimate exited {code}: {err.getvalue()[-800:]}")
            outputs.append(buffer.getvalue())

        times, _ = timed(run_cli, runs)
        show("the whole command, real weights on CPU (this branch)", times)
        report(json.loads(outputs[-1]))

    def run_meta():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return estimate_generation(meta_model(MODEL), str(predictor), prompt_len=512,
                                       new_tokens=256, device="meta", progress=False,
                                       warn=lambda text: None, model_name=MODEL)

    times, estimate = timed(run_meta, runs)
    show("the same estimate on meta (after the meta-device merge)", times)
    report(estimate.to_json(depth=0))


def bench_sum(predictor_dir: Path, data: Path) -> None:
    import math

    import numpy as np
    import transformers as T

    from irene.estimate import estimate_tree
    from irene.generation import decode_context_lens, estimate_generation
    from irene.model import IreneRegressor
    from irene.tree import read_trees

    print("\n3. decode sum vs every step (tiny Llama, batch 2; SYNTHETIC predictors): error %")
    model = T.AutoModel.from_config(T.LlamaConfig(
        vocab_size=1000, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=172, num_hidden_layers=2, max_position_embeddings=2048)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predictors = {"log-space leaves": IreneRegressor.load(str(predictor_dir)),
                      "linear leaves": IreneRegressor(
                          feature_sets=["model_specs", "generation"], leaf_fit="relative"
                      ).fit(read_trees(data))}
    print(f"  {'predictor':17s} {'P':>4s} {'N':>4s} {'traced':>6s} {'rule':>9s} "
          f"{'estimate':>9s} {'middle×N':>9s} {'line(3)':>9s}")
    for label, predictor in predictors.items():
        for prompt, new in ((8, 200), (64, 400), (512, 256)):
            def step(length: int, predictor=predictor) -> float:
                return estimate_tree(model, 2, 1, predictor, progress=False,
                                     warn=lambda text: None, phase="decode",
                                     context_len=length).root.predicted_energy

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                exact = math.fsum(step(x) for x in range(prompt, prompt + new))
                est = estimate_generation(model, predictor, prompt_len=prompt, new_tokens=new,
                                          batch_size=2, progress=False, warn=lambda t: None)
            three = decode_context_lens(prompt, new)
            slope, intercept = np.polyfit(three, [step(x) for x in three], 1)
            line = new * (intercept + slope * (prompt + (new - 1) / 2))  # Σ of the line
            middle = step(three[1]) * new
            pct = [100 * (value - exact) / exact for value in (est.decode_j, middle, line)]
            print(f"  {label:17s} {prompt:4d} {new:4d} {len(est.context_lens):6d} "
                  f"{pct[0]:+9.4f} {100 * est.sum_error_j / exact:9.4f} {pct[1]:+9.4f} "
                  f"{pct[2]:+9.4f}")


def report(data: dict) -> None:
    energy, rule = data["energy_j"], data["decode_sum"]
    lengths = [t["context_len"] for t in rule["traced"]]
    print(f"  SYNTHETIC joules: prefill {energy['prefill']:.4g} J, decode {energy['decode']:.4g} "
          f"J, total {energy['total']:.4g} J, {data['per_token_j']['generated']:.4g} J per "
          f"generated token; decode traced at context lengths {lengths}, error estimate "
          f"{rule['error_estimate_pct']:.2g} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-real", action="store_true",
                        help="only the meta-device measurements (skip real weights)")
    parser.add_argument("--parts", default="decode,estimate,sum",
                        help="which measurements: decode, estimate, sum (default: all)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    print(f"load before: {uptime()}")
    print(f"torch {torch.__version__}, 1 thread, {args.runs} run(s) each")
    parts = set(args.parts.split(","))
    if "decode" in parts:
        bench_decode(args.runs, not args.skip_real)
    if parts & {"estimate", "sum"}:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            predictor = train_synthetic_predictor(Path(tmp))
            print(f"\n(training data: 28 trees of 2 tiny Llama shapes, simulated meter, and "
                  f"the predictor: {time.perf_counter() - start:.1f} s, not part of the "
                  "timings)")
            if "estimate" in parts:
                bench_estimate(args.runs, not args.skip_real, predictor)
            if "sum" in parts:
                bench_sum(predictor, Path(tmp) / "generation-simulated.jsonl")
    print(f"\nload after: {uptime()}")


if __name__ == "__main__":
    sys.exit(main())
