"""The side-by-side benchmark of runtime engines and optimisations quoted in the README.

Runs :func:`irene.bench.run_bench` (what ``irene bench`` runs) and prints the comparison as a
Markdown table with the run's settings, the machine's load before and after, and the wall time.
Defaults are the README's: codeparrot-small (random weights), batch 1 x 128 tokens, one CPU
thread, 10 runs, no meter. Usage::

    python3 benchmarks/bench_variants.py [--model codeparrot-small] [--variants V1,V2,..]
        [--batch-size 1] [--seq-len 128] [--threads 1] [--runs 10] [--device cpu]
        [--meter none] [--rows out.jsonl] [--html page.html] [--figure fig.png]
"""

from __future__ import annotations

import argparse
import os
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
    parser.add_argument("--rows")
    parser.add_argument("--html")
    parser.add_argument("--figure")
    args = parser.parse_args()

    load_before = os.getloadavg()
    start = time.perf_counter()
    run = run_bench(args.model, parse_variants(args.variants), batch_size=args.batch_size,
                    seq_len=args.seq_len, device=args.device, protocol=Protocol(runs=args.runs),
                    meter=open_meter(args.meter), threads=args.threads)
    wall = time.perf_counter() - start
    load_after = os.getloadavg()
    print(describe_run(run))
    print()
    print(markdown_table(run))
    print(f"load average (1/5/15 min) before: {' '.join(f'{x:.2f}' for x in load_before)}; "
          f"after: {' '.join(f'{x:.2f}' for x in load_after)}; wall time {wall:.0f} s")
    if args.rows:
        write_rows(run, args.rows)
    if args.html:
        write_bench_page(run, args.html)
    if args.figure:
        plot_bench(run, args.figure)


if __name__ == "__main__":
    main()
