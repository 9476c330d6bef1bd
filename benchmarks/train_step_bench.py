"""Benchmark of training-step tracing: wall time of ``irene trace --phase train`` and the split of
a step between its forward, backward and optimiser passes.

Default: one training step of bert-base-uncased at batch 8 x seq 128 (AdamW), traced
``--repeats`` times features-only (``--no-timing``: the step runs on the meta device) and
``--replay-repeats`` times with the isolated replays, each in a fresh process (``irene trace``
as a user types it, imports and model building included). Prints the median wall time (s) and
peak resident memory (MiB) of each mode, the forward / backward / optimiser shares of the
step's FLOPs and, from the timed trees, of the step's time (each pass replayed as a whole; the
median over the timed trees of each pass's share), and the machine's load before and after.

    python benchmarks/train_step_bench.py                        # 5 features-only + 1 timed
    python benchmarks/train_step_bench.py --replay-repeats 0     # features only
    python benchmarks/train_step_bench.py --model gpt2 --optimizer sgd --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PASSES = ("forward", "backward", "optimizer")


def child(argv: list[str]) -> None:
    """Run ``irene trace`` in this process; print wall time (s) and peak RSS (MiB) as JSON."""
    start = time.perf_counter()
    import resource

    from irene.cli import main

    code = main(argv)
    wall = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
    print(json.dumps({"rc": code, "wall_s": wall, "peak_mib": peak_mib}))


def run_trace(args: argparse.Namespace, out: Path, extra: list[str]) -> dict:
    argv = ["trace", args.model, "--phase", "train", "--optimizer", args.optimizer,
            "--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len), "--offline",
            "--attn", args.attn, "-o", str(out), *extra]
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(argv)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"irene trace failed:\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise SystemExit(f"irene trace exited {result['rc']}:\n{proc.stderr[-2000:]}")
    return result


def trace_in_process(args: argparse.Namespace) -> list[float]:
    """Wall times (s) of ``trace_train_step(timing=False)`` called repeatedly in this process."""
    import torch

    from irene.tracing.train_step import trace_train_step

    torch.set_num_threads(1)
    walls = []
    for _ in range(args.in_process):
        start = time.perf_counter()
        trace_train_step(args.model, args.batch_size, args.seq_len, timing=False,
                         optimizer=args.optimizer, attn=args.attn, hub=False)
        walls.append(time.perf_counter() - start)
    return walls


def load() -> float:
    return os.getloadavg()[0]


def shares(tree, feature: str) -> dict[str, float]:
    """Each pass's share (%) of the step's ``feature`` (the root's value)."""
    whole = tree.root.features[feature]
    return {c.scope: 100 * c.features[feature] / whole for c in tree.root.children}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="bert-base-uncased")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--optimizer", default="adamw")
    parser.add_argument("--attn", default="eager")
    parser.add_argument("--repeats", type=int, default=5, help="features-only runs")
    parser.add_argument("--replay-repeats", type=int, default=1, help="runs with replays")
    parser.add_argument("--in-process", type=int, default=5,
                        help="features-only traces in this process (imports done once)")
    parser.add_argument("--runs", type=int, default=3, help="protocol runs per replayed node")
    parser.add_argument("--min-run-seconds", type=float, default=0.02)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return

    from irene.tree import read_trees

    print(f"{args.model} {args.batch_size}x{args.seq_len}, one training step ({args.optimizer},"
          f" attn {args.attn}); {os.cpu_count()} CPUs; load before {load():.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        features = []
        for i in range(args.repeats):
            features.append(run_trace(args, Path(tmp) / f"f{i}.jsonl", ["--no-timing"]))
        timed, trees = [], []
        for i in range(args.replay_repeats):
            path = Path(tmp) / f"t{i}.jsonl"
            timed.append(run_trace(args, path, ["--runs", str(args.runs), "--min-run-seconds",
                                                str(args.min_run_seconds)]))
            trees.extend(read_trees(path))
        tree = read_trees(Path(tmp) / "f0.jsonl")[0] if features else trees[0]
    in_process = trace_in_process(args)

    print(f"load after {load():.2f}")
    if features:
        walls = [r["wall_s"] for r in features]
        print(f"features only (--no-timing): median {median(walls):.2f} s over {len(walls)} "
              f"runs (min {min(walls):.2f}, max {max(walls):.2f}); peak "
              f"{median([r['peak_mib'] for r in features]):.0f} MiB; "
              f"{len(list(tree.nodes()))} nodes")
    if in_process:
        print(f"features only, in process (imports and model classes loaded once): median "
              f"{median(in_process[1:] or in_process):.2f} s over {max(len(in_process) - 1, 1)}"
              f" runs after a first of {in_process[0]:.2f} s")
    if timed:
        walls = [r["wall_s"] for r in timed]
        print(f"with replays (--runs {args.runs}): median {median(walls):.1f} s over "
              f"{len(walls)} runs; peak {median([r['peak_mib'] for r in timed]):.0f} MiB")
    flop_share = shares(tree, "flops")
    root = tree.root.features
    print(f"step: {root['flops'] / 1e6:.1f} TFLOP, {root['num_parameters'] / 1e6:.1f} M "
          "parameters")
    header = f"{'pass':10s} {'GFLOP':>10s} {'% FLOPs':>8s}"
    if trees:
        header += f" {'time s':>9s} {'% time':>7s}"
    print(header)
    time_shares = {name: median([shares(t, "times_mean")[name] for t in trees])
                   for name in PASSES} if trees else {}
    for child_node in tree.root.children:
        name = child_node.scope
        line = f"{name:10s} {child_node.features['flops'] / 1e3:10.1f} {flop_share[name]:8.2f}"
        if trees:
            seconds = median([next(c for c in t.root.children if c.scope == name)
                              .features["times_mean"] for t in trees])
            line += f" {seconds:9.3f} {time_shares[name]:7.2f}"
        print(line)
    if trees:
        step_s = median([t.root.features["times_mean"] for t in trees])
        passes_s = sum(median([next(c for c in t.root.children if c.scope == name)
                               .features["times_mean"] for t in trees]) for name in PASSES)
        print(f"whole step replayed: {step_s:.3f} s; the three passes replayed alone add up to "
              f"{passes_s:.3f} s ({100 * passes_s / step_s:.1f} % of the step)")
        conditions = trees[0].meta.get("timing_conditions") or {}
        print(f"timing conditions: {conditions.get('threads')} thread(s), load "
              f"{conditions.get('load_before')} -> {conditions.get('load_after')}")


if __name__ == "__main__":
    main()
