"""Benchmark of the tracer: wall time and peak memory of ``irene trace``, and what the leaves cover.

Default: trace bert-base-uncased at batch 8 x seq 128 on this machine, ``--repeats`` times with
the isolated replays and ``--repeats`` times with ``--no-timing``, each run in a fresh process
(``irene trace`` as a user types it, imports and model building included). Prints the median
wall time (s) and the peak resident memory (MiB) of each mode, plus, from the timed tree, the
share of the root's FLOPs and of the root's measured time that the ``ml`` leaves account for.

``--census``: trace every built-in model (or ``--models``) once with ``--no-timing`` and print
its node counts by type and instance type.

    python benchmarks/trace_bench.py                   # bert-base-uncased, 3 + 3 runs
    python benchmarks/trace_bench.py --census          # node counts of all built-ins at 8x128
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


def child(argv: list[str]) -> None:
    """Run ``irene trace`` in this process; print wall time (s) and peak RSS (MiB) as JSON."""
    start = time.perf_counter()
    import resource

    from irene.cli import main

    code = main(argv)
    wall = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
    print(json.dumps({"rc": code, "wall_s": wall, "peak_mib": peak_mib}))


def run_trace(model: str, batch: int, seq: int, out: Path, extra: list[str]) -> dict:
    argv = ["trace", model, "--batch-size", str(batch), "--seq-len", str(seq), "--offline",
            "-o", str(out), *extra]
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(argv)],
                          capture_output=True, text=True, check=False)
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
    parser.add_argument("--models", default=None, help="comma-separated models for --census")
    args = parser.parse_args()
    census(args) if args.census else bench(args)


if __name__ == "__main__":
    main()
