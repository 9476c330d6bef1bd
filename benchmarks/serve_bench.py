"""Energy and latency per request behind the HTTP API, across runtime engines (issue 22).

Part 1 runs what ``irene serve-bench`` runs: codeparrot-small (built from its config, random
weights) served on the CPU by each runtime in turn (torch, torchscript, onnxruntime, openvino)
on 127.0.0.1, the HumanEval prompts x repeats, 32 new tokens each, metered by ``cpu-model``
(package TDP x CPU utilisation of the server process: estimated, not measured; the machine has
no RAPL). It prints the per-runtime table (medians over repeats) and the statistics.

Part 2 measures the server's overhead: the same prompts generated in-process with the same
engine (tokenise, greedy decode, detokenise; no HTTP, no event loop) against the server's
per-request latency and energy at concurrency 1, for ``--overhead-runtimes``. The in-process
run comes after the servers', so on a shared machine its latency sees another load: the
energy under ``cpu-model`` (CPU seconds of the working process) is the steadier comparison, and
the table's "client - server time" (measured within each served request) is the HTTP part.

Prints the settings, the machine's load average before and after, and the wall time. Usage::

    OMP_NUM_THREADS=1 python3 benchmarks/serve_bench.py [--model codeparrot-small]
        [--runtimes torch,torchscript,onnxruntime,openvino] [--limit-prompts K] [--repeats 3]
        [--max-new-tokens 32] [--concurrency 1] [--meter cpu-model] [--threads 1]
        [--overhead-runtimes torch] [--json out.json] [--html page.html] [--figure fig.png]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any

from irene.measure import open_meter
from irene.serve.bench import (
    markdown_table,
    plot_serve_bench,
    run_serve_bench,
    stats_lines,
    write_serve_bench_page,
)
from irene.serve.prompts import Prompt, read_prompts


def in_process(model: str, runtime: str, prompts: list[Prompt], max_new_tokens: int,
               meter_spec: str, threads: int | None) -> dict[str, Any]:
    """Per-request latency (s) and energy (J) of generating ``prompts`` in this process with the
    engine the server would load (no HTTP), one request at a time."""
    import torch

    from irene.serve.engines import load_engine
    from irene.serve.tokenizer import load_tokenizer
    from irene.tracing.registry import load_config

    if threads:
        torch.set_num_threads(threads)
    engine = load_engine(model, runtime)
    vocab = int(load_config(model, hub=False).vocab_size)
    tokenizer, _ = load_tokenizer(model, vocab)
    engine.vocab_limit = min(tokenizer.get_vocab_size(), vocab)
    meter = open_meter(meter_spec)
    latencies, energies = [], []
    try:
        for prompt in prompts:
            start = time.perf_counter()
            if meter is not None:
                meter.begin()
            ids = tokenizer.encode(prompt.text).ids
            tokenizer.decode(engine.generate(list(ids), max_new_tokens))
            if meter is not None:
                energies.append(meter.end().total_j)
            latencies.append(time.perf_counter() - start)
    finally:
        if meter is not None:
            meter.close()
        if engine.cleanup:
            engine.cleanup()
    return {"latency_p50_s": statistics.median(latencies),
            "j_per_request": statistics.median(energies) if energies else None,
            "requests": len(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="codeparrot-small")
    parser.add_argument("--runtimes", default="torch,torchscript,onnxruntime,openvino")
    parser.add_argument("--limit-prompts", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--meter", default="cpu-model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--overhead-runtimes", default="torch",
                        help="runtimes whose in-process generation is compared ('' for none)")
    parser.add_argument("--json")
    parser.add_argument("--html")
    parser.add_argument("--figure")
    args = parser.parse_args()

    prompts = read_prompts(limit=args.limit_prompts)
    runtimes = [r for r in args.runtimes.split(",") if r]
    load_before = os.getloadavg()
    start = time.perf_counter()
    done = [0]

    def tick() -> None:
        done[0] += 1
        print(f"\r{done[0]} requests", end="", file=sys.stderr, flush=True)

    bench = run_serve_bench(args.model, runtimes, prompts, repeats=args.repeats,
                            concurrency=args.concurrency, meter_spec=args.meter,
                            max_new_tokens=args.max_new_tokens, threads=args.threads,
                            on_request=tick)
    print(file=sys.stderr)
    overhead = {}
    for runtime in [r for r in args.overhead_runtimes.split(",") if r]:
        served = next((r for r in bench["runtimes"] if r["runtime"] == runtime and r["ok"]),
                      None)
        if served is None:
            continue
        local = in_process(args.model, runtime, prompts, args.max_new_tokens, args.meter,
                           args.threads)
        overhead[runtime] = {"in_process": local, "served_latency_p50_s":
                             served["latency_p50_s"], "served_j_per_request":
                             served["j_per_request"]}
    bench["overhead"] = overhead
    load_after = os.getloadavg()
    wall = time.perf_counter() - start

    print(f"## serve-bench: {args.model}, {len(prompts)} HumanEval prompts x {args.repeats} "
          f"repeats, {args.max_new_tokens} new tokens, concurrency {args.concurrency}, "
          f"{args.threads} thread(s)\n")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical "
          f"CPUs; load average before {load_before[0]:.2f} {load_before[1]:.2f}, after "
          f"{load_after[0]:.2f} {load_after[1]:.2f}; wall {wall / 60:.1f} min; "
          f"{bench['date']}\n")
    print(f"energy: {bench['meter']} ({bench['energy']})\n")
    print(markdown_table(bench) + "\n")
    for key in ("j_per_request", "latency_s"):
        print("\n".join(stats_lines(bench, key)))
    for row in bench["runtimes"]:
        if not row["ok"]:
            print(f"{row['runtime']}: not run: {row['error']}")
    if overhead:
        print("\n| runtime | in-process latency p50 (s) | served latency p50 (s) | overhead "
              "| in-process J/request | served J/request |\n|---|---|---|---|---|---|")
        for runtime, o in overhead.items():
            local = o["in_process"]
            ratio = o["served_latency_p50_s"] / local["latency_p50_s"] - 1
            lj, sj = local["j_per_request"], o["served_j_per_request"]
            print(f"| {runtime} | {local['latency_p50_s']:.4g} | {o['served_latency_p50_s']:.4g}"
                  f" | {ratio:+.1%} | {'-' if lj is None else f'{lj:.4g}'} | "
                  f"{'-' if sj is None else f'{sj:.4g}'} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(bench, handle, indent=2, default=str)
    if args.html:
        write_serve_bench_page(bench, args.html)
    if args.figure and bench["samples"]:
        plot_serve_bench(bench, args.figure)


if __name__ == "__main__":
    main()
