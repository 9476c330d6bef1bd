"""Benchmark of the tracer: wall time and peak memory of ``irene trace``, and what the leaves cover.

Default: trace bert-base-uncased at batch 8 x seq 128 on this machine, ``--repeats`` times with
the isolated replays and ``--repeats`` times with ``--no-timing``, each run in a fresh process
(``irene trace`` as a user types it, imports and model building included). Prints the median
wall time (s) and the peak resident memory (MiB) of each mode, plus, from the timed tree, the
share of the root's FLOPs and of the root's measured time that the ``ml`` leaves account for.

``--census``: trace every built-in model (or ``--models``) once with ``--no-timing`` and print
its node counts by type and instance type.

``--features-only``: the features-only suite (meta device): phi-2 at 1x64, a Llama-3-70B-shaped
config written to a temporary ``config.json`` at 1x64, and bert-base-uncased at 8x128, each
``irene trace --no-timing`` in ``--repeats`` fresh processes; prints the median wall time and
peak RSS. ``--with-weights`` runs the same traces with real random weights instead (what
features-only tracing cost before it ran on meta), through the Python API.

``--profile``: where the time of one features-only trace of ``--model`` goes, in one process:
imports, configuration, model construction, the capture (forward pass under the capture, with
and without ``FlopCounterMode``), tree building and JSON.

    python benchmarks/trace_bench.py                   # bert-base-uncased, 3 + 3 runs
    python benchmarks/trace_bench.py --census          # node counts of all built-ins at 8x128
    python benchmarks/trace_bench.py --features-only   # phi-2, 70B Llama, bert-base (meta)
    python benchmarks/trace_bench.py --profile --model bert-base-uncased
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LLAMA_70B = {  # Llama-3-70B's shape (random weights: only the architecture matters)
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 128256,
    "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
    "num_attention_heads": 64, "num_key_value_heads": 8, "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "hidden_act": "silu",
    "tie_word_embeddings": False, "torch_dtype": "bfloat16",
}


def child(argv: list[str]) -> None:
    """Run ``irene trace`` in this process; print wall time (s) and peak RSS (MiB) as JSON.

    ``argv[0] == "with-weights"``: trace features only with real random weights through the
    Python API instead (``argv[1:]`` = model, batch, seq, output).
    """
    start = time.perf_counter()
    import resource

    if argv[0] == "with-weights":
        from irene.tracing import build_model, trace_model
        from irene.tree import append_tree

        model, batch, seq, out = argv[1], int(argv[2]), int(argv[3]), argv[4]
        tree = trace_model(build_model(model, hub=False), batch, seq, timing=False,
                           model_name=model)
        append_tree(tree, Path(out))
        code = 0
    else:
        from irene.cli import main

        code = main(argv)
    wall = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
    print(json.dumps({"rc": code, "wall_s": wall, "peak_mib": peak_mib}))


def run_trace(model: str, batch: int, seq: int, out: Path, extra: list[str],
              with_weights: bool = False) -> dict:
    argv = ["trace", model, "--batch-size", str(batch), "--seq-len", str(seq), "--offline",
            "-o", str(out), *extra]
    if with_weights:
        argv = ["with-weights", model, str(batch), str(seq), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # one thread
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(argv)],
                          capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"irene trace failed:\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise SystemExit(f"irene trace exited {result['rc']}:\n{proc.stderr[-2000:]}")
    return result


def coverage(tree) -> dict[str, float]:
    """Share (%) of the root's FLOPs and measured time held by the ml leaves; node counts."""
    leaves = [n for n in tree.nodes() if n.is_leaf]
    root = tree.root.features
    leaf_flops = sum(n.features["flops"] for n in leaves)
    leaf_time = sum(n.features["times_mean"] for n in leaves)
    out = {"nodes": len(list(tree.nodes())), "leaves": len(leaves),
           "leaf_flops_pct": 100.0 * leaf_flops / root["flops"] if root["flops"] else 0.0}
    if root["times_mean"] > 0:
        out["leaf_time_pct"] = 100.0 * leaf_time / root["times_mean"]
        out["root_time_s"] = root["times_mean"]
    return out


def counts_by_type(tree) -> dict[str, int]:
    counter = collections.Counter(f"{n.type}:{n.instance_type}" for n in tree.nodes())
    return dict(sorted(counter.items(), key=lambda kv: (kv[0].split(":")[0] != "model",
                                                        kv[0].split(":")[0] != "module",
                                                        -kv[1], kv[0])))


def bench(args: argparse.Namespace) -> None:
    from irene.tree import read_trees

    print(f"# irene trace {args.model} {args.batch_size}x{args.seq_len}, {args.repeats} runs per "
          f"mode, {os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, extra in (("with replays", []), ("--no-timing", ["--no-timing"])):
            results, tree = [], None
            for i in range(args.repeats):
                out = Path(tmp) / f"{label.replace(' ', '_')}_{i}.jsonl"
                results.append(run_trace(args.model, args.batch_size, args.seq_len, out, extra))
                tree = read_trees(out)[0]
            walls = [r["wall_s"] for r in results]
            peaks = [r["peak_mib"] for r in results]
            print(f"{label:>13}: wall median {statistics.median(walls):6.1f} s "
                  f"(runs {', '.join(f'{w:.1f}' for w in walls)}), peak RSS median "
                  f"{statistics.median(peaks):,.0f} MiB")
            cov = coverage(tree)
            line = (f"{'':>13}  {cov['nodes']} nodes, {cov['leaves']} leaves; leaves hold "
                    f"{cov['leaf_flops_pct']:.2f} % of root FLOPs")
            if "leaf_time_pct" in cov:
                line += (f", {cov['leaf_time_pct']:.1f} % of the root's measured time "
                         f"({cov['root_time_s']:.3f} s per forward)")
                replays = tree.meta.get("dedup", {})
                line += f"; replays {replays}"
            print(line)
    print(f"# load average at end {os.getloadavg()[0]:.2f}")


def census(args: argparse.Namespace) -> None:
    from irene.tracing import list_models
    from irene.tree import read_trees

    models = args.models.split(",") if args.models else list_models()
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            out = Path(tmp) / "census.jsonl"
            if out.exists():
                out.unlink()
            result = run_trace(model, args.batch_size, args.seq_len, out, ["--no-timing"])
            tree = read_trees(out)[0]
            cov = coverage(tree)
            print(f"{model} {args.batch_size}x{args.seq_len}: {cov['nodes']} nodes "
                  f"({cov['leaves']} ml), root {tree.root.features['flops'] / 1e3:,.1f} GFLOP, "
                  f"leaves {cov['leaf_flops_pct']:.2f} % of root FLOPs; "
                  f"{result['wall_s']:.1f} s, peak {result['peak_mib']:,.0f} MiB")
            print("    " + ", ".join(f"{k} {v}" for k, v in counts_by_type(tree).items()),
                  flush=True)


def features_only(args: argparse.Namespace) -> None:
    """Median wall time and peak RSS of features-only traces, each in a fresh process."""
    from irene.tree import read_trees

    mode = "real random weights (Python API)" if args.with_weights else \
        "irene trace --no-timing (meta device)"
    print(f"# features only, {mode}; {args.repeats} fresh processes per model; "
          f"{os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        llama_dir = Path(tmp) / "llama-70b"
        llama_dir.mkdir()
        (llama_dir / "config.json").write_text(json.dumps(LLAMA_70B))
        suite = [("microsoft/phi-2", 1, 64, "aim <= 15 s, <= 2 GB"),
                 (str(llama_dir), 1, 64, "aim <= 60 s, <= 4 GB"),
                 ("bert-base-uncased", 8, 128, "aim <= 3 s")]
        if args.models:
            wanted = args.models.split(",")
            suite = [row for row in suite if any(w in row[0] for w in wanted)]
        for k, (model, batch, seq, aim) in enumerate(suite):
            results = []
            for i in range(args.repeats):
                out = Path(tmp) / f"suite{k}_run{i}.jsonl"
                results.append(run_trace(model, batch, seq, out, ["--no-timing"],
                                         with_weights=args.with_weights))
            tree = read_trees(out)[0]
            walls = [r["wall_s"] for r in results]
            peaks = [r["peak_mib"] for r in results]
            label = "Llama-3-70B shape" if model == str(llama_dir) else model
            print(f"{label} {batch}x{seq}: wall median {statistics.median(walls):.2f} s (runs "
                  f"{', '.join(f'{w:.2f}' for w in walls)}), peak RSS median "
                  f"{statistics.median(peaks):,.0f} MiB ({aim}); "
                  f"{tree.root.features['num_parameters'] / 1e9:.2f} B parameters, "
                  f"{tree.root.features['flops'] / 1e6:.2f} TFLOP, "
                  f"{len(list(tree.nodes()))} nodes, traced on "
                  f"{tree.meta.get('traced_on', 'cpu')}", flush=True)
    print(f"# load average at end {os.getloadavg()[0]:.2f}")


def profile(args: argparse.Namespace) -> None:
    """Seconds spent in each phase of one features-only trace, in this process."""
    phases: dict[str, float] = {}
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        phases[name] = now - mark
        mark = now

    import torch
    lap("import torch")
    import transformers  # noqa: F401

    from irene.tracing.registry import build_model, load_config
    lap("import transformers + irene")
    config = load_config(args.model, hub=False)
    lap("configuration (imports the model's config class)")
    build_model(config, device="meta")
    lap("model construction on meta, first (imports its modeling file)")
    model = build_model(load_config(args.model, hub=False), device="meta")
    lap("model construction on meta, again")

    from irene.tracing.build import build_tree, prune
    from irene.tracing.capture import ForwardCapture
    from irene.tracing.flops import flop_counter_mode
    from irene.tracing.meta import META_SUBSTITUTES, meta_shims
    from irene.tracing.registry import make_inputs
    inputs = make_inputs(model, args.batch_size, args.seq_len)
    with torch.no_grad(), meta_shims():
        model(**inputs)
    lap("forward pass on meta, bare")
    with torch.no_grad(), meta_shims(), flop_counter_mode():
        model(**inputs)
    lap("forward pass on meta under FlopCounterMode")
    capture = ForwardCapture(model, substitutes=META_SUBSTITUTES)
    with torch.no_grad(), meta_shims(), capture:
        model(**inputs)
    lap("capture (hooks + TorchFunctionMode + FlopCounterMode)")
    prune(capture.root)
    tree = build_tree(capture.root, model_name=args.model, batch_size=args.batch_size,
                      seq_len=args.seq_len)
    lap("prune + tree building")
    text = json.dumps(tree.to_dict())
    lap("JSON")
    total = sum(phases.values())
    print(f"# one features-only trace of {args.model} {args.batch_size}x{args.seq_len} in one "
          f"process; load average {os.getloadavg()[0]:.2f}; {len(text) / 2**20:.1f} MiB JSON")
    for name, seconds in phases.items():
        print(f"{seconds:7.3f} s  {100 * seconds / total:5.1f} %  {name}")
    print(f"{total:7.3f} s  total")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bert-base-uncased")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--census", action="store_true",
                        help="node counts by type of every built-in model (--no-timing)")
    parser.add_argument("--models", default=None,
                        help="comma-separated models for --census (--features-only: a subset)")
    parser.add_argument("--features-only", action="store_true",
                        help="phi-2 1x64, Llama-3-70B shape 1x64, bert-base 8x128 on meta")
    parser.add_argument("--with-weights", action="store_true",
                        help="--features-only with real random weights instead of meta")
    parser.add_argument("--profile", action="store_true",
                        help="where the time of one features-only trace of --model goes")
    args = parser.parse_args()
    if args.profile:
        profile(args)
    elif args.features_only:
        features_only(args)
    else:
        census(args) if args.census else bench(args)


if __name__ == "__main__":
    main()
