"""The side-by-side benchmark of runtime engines and optimisations quoted in benchmarks/RESULTS.md.

Runs :func:`irene.bench.run_bench` (what ``irene bench`` runs) and prints the comparison as a
Markdown table with the run's settings, the machine's load before and after, and the wall time.
With ``--repeats R`` the whole comparison runs R times (the machine is shared and timings drift
with its load): the table is the first repetition's, followed by each variant's median latency
in every repetition and the median of those.
Defaults are RESULTS.md's: codeparrot-small (random weights), batch 1 x 128 tokens, one CPU
thread, 10 runs, no meter. Usage::

    python3 benchmarks/bench_variants.py [--model codeparrot-small] [--variants V1,V2,..]
        [--batch-size 1] [--seq-len 128] [--threads 1] [--runs 10] [--device cpu]
        [--meter none] [--repeats 1] [--rows out.jsonl] [--html page.html] [--figure fig.png]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from irene.bench import parse_variants, run_bench
from irene.bench.report import (
    describe_run,
    markdown_table,
    plot_bench,
    write_bench_page,
    write_rows,
)
from irene.measure import Protocol, open_meter

README_VARIANTS = "eager,sdpa,compile,torchscript,onnxruntime,int8-dynamic,prune-l1-30"


def _load(values: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="codeparrot-small")
    parser.add_argument("--variants", default=README_VARIANTS)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--meter", default="none")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--rows")
    parser.add_argument("--html")
    parser.add_argument("--figure")
    args = parser.parse_args()

    runs, loads = [], []
    start = time.perf_counter()
    for _ in range(args.repeats):
        before = os.getloadavg()
        runs.append(run_bench(args.model, parse_variants(args.variants),
                              batch_size=args.batch_size, seq_len=args.seq_len,
                              device=args.device,
                              protocol=Protocol(runs=args.runs, threads=args.threads),
                              meter=open_meter(args.meter)))
        loads.append((before, os.getloadavg()))
    wall = time.perf_counter() - start
    run = runs[0]
    print(describe_run(run))
    print()
    print(markdown_table(run))
    for i, (before, after) in enumerate(loads, 1):
        print(f"repetition {i}: load average (1/5/15 min) before {_load(before)}, "
              f"after {_load(after)}")
    print(f"wall time {wall:.0f} s for {args.repeats} repetition(s)")
    if args.repeats > 1:
        print()
        print("| variant | median latency in each repetition (ms) | median (ms) |")
        print("|---|--:|--:|")
        for result in run.results:
            values = [r.latency_s for other in runs for r in other.results
                      if r.variant == result.variant and r.latency_s is not None]
            if values:
                print(f"| {result.variant} | {' / '.join(f'{1e3 * v:.0f}' for v in values)} | "
                      f"{1e3 * statistics.median(values):.0f} |")
    if args.rows:
        write_rows(run, args.rows)
    if args.html:
        write_bench_page(run, args.html)
    if args.figure:
        plot_bench(run, args.figure)


if __name__ == "__main__":
    main()
