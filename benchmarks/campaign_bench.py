"""Benchmark of measurement campaigns (CPU, simulated meter; no hardware needed).

Prints:

1. **measured once across models**: IrEne's six models at one (batch, seq), measured as six
   separate ``irene trace`` runs (one ``trace_model`` per model, each with its own cache, as
   each ``irene trace`` process has) and as one campaign (``irene run``, one cache for the
   plan): node measurements made and wall time of each, and which node types the campaign
   shares across models;
2. **the dry-run estimate against a real run**: ``dry_run`` of a plan with one small model,
   then ``run_plan`` of it in a fresh directory; estimated / actual wall time per repetition
   and the median, beside the simplest estimate (each measurement costs its windows only:
   (runs + 1) x the run target);
3. **the reference plan**: its dry-run estimate with the H100 profile.

CPU replays run on one thread (the protocol's default); quote the load (printed). Usage::

    python3 benchmarks/campaign_bench.py [--batch-size 1] [--seq-len 32] [--repeats 3]
                                         [--small-model distilgpt2] [--skip-dedup]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

import yaml

from irene.campaign import RunOptions, dry_run, load_plan, run_plan
from irene.measure import MeasurementCache, Protocol, SimulatedMeter
from irene.tracing import trace_model
from irene.tree import read_trees

IRENE_MODELS = ["bert-base-uncased", "distilbert-base-uncased", "roberta-base", "gpt2",
                "distilgpt2", "openai-gpt"]
PROTOCOL = {"warmup": 1, "runs": 3, "min_run_seconds": 0.02}
REPO = Path(__file__).resolve().parents[1]


def _plan(directory: Path, models: list[str], batch_sizes: list[int], seq_lens: list[int]
          ) -> Path:
    path = directory / "plan.yaml"
    path.write_text(yaml.safe_dump({
        "name": "bench", "output": str(directory / "out" / "trees.jsonl"), "models": models,
        "grid": {"batch_sizes": batch_sizes, "seq_lens": seq_lens}, "meter": "simulated",
        "device": "cpu", "protocol": PROTOCOL}))
    return path


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def dedup(batch: int, seq: int) -> None:
    print(f"1. IrEne's six models at batch {batch} x seq {seq}, simulated meter, protocol "
          f"{PROTOCOL} (load before: {_load()})")
    protocol = Protocol(**PROTOCOL)
    separate_n, separate_s = 0, 0.0
    for name in IRENE_MODELS:
        cache = MeasurementCache()
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trace_model(name, batch, seq, meter=SimulatedMeter(), protocol=protocol,
                        cache=cache, model_name=name)
        seconds = time.perf_counter() - start
        separate_n += cache.misses
        separate_s += seconds
        print(f"   irene trace {name:<26} {cache.misses:4d} node measurements  {seconds:6.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        plan = load_plan(_plan(Path(tmp), IRENE_MODELS, [batch], [seq]))
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = run_plan(plan, RunOptions(progress=False, stream=open(os.devnull, "w")))
        campaign_s = time.perf_counter() - start
        trees = read_trees(plan.output)
    print(f"   six separate runs: {separate_n} node measurements, {separate_s:.1f} s")
    print(f"   one campaign:      {result.measured} node measurements, {campaign_s:.1f} s "
          f"({separate_n / max(result.measured, 1):.2f}x fewer measurements, "
          f"{separate_s / campaign_s:.2f}x less time)")
    models_of: dict[str, set[str]] = defaultdict(set)
    kind_of: dict[str, str] = {}
    for tree in trees:
        for node in tree.nodes():
            models_of[node.extra["signature"]].add(tree.model_name)
            kind_of[node.extra["signature"]] = node.type
    for kind in ("ml", "module", "model"):
        sigs = [s for s in models_of if kind_of[s] == kind]
        shared = [s for s in sigs if len(models_of[s]) > 1]
        print(f"   {kind:<6}: {len(sigs):3d} distinct measurements in the campaign, "
              f"{len(shared):3d} of them shared by two models or more")
    print(f"   (load after: {_load()})")


def estimate_vs_actual(model: str, repeats: int) -> None:
    print(f"\n2. dry-run estimate vs a real run: {model}, batch 1 x seq 16, 32, simulated meter, "
          f"protocol {PROTOCOL} (load before: {_load()})")
    ratios, baseline = [], []
    for r in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            plan = load_plan(_plan(Path(tmp), [model], [1], [16, 32]))
            estimate = dry_run(plan, RunOptions(progress=False))
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = run_plan(plan, RunOptions(progress=False,
                                                   stream=open(os.devnull, "w")))
            actual = time.perf_counter() - start
        ratios.append(estimate.total_s / actual)
        # the simplest estimate: every measurement costs its windows, (runs + 1) x target
        naive = estimate.campaign * (PROTOCOL["runs"] + 1) * estimate.target_s
        baseline.append(naive / actual)
        print(f"   run {r + 1}: estimated {estimate.total_s:6.1f} s, actual {actual:6.1f} s "
              f"({result.measured} measurements), estimate/actual {ratios[-1]:.2f}; "
              f"windows-only baseline {naive:.1f} s, {baseline[-1]:.2f} (load {_load()})")
    print(f"   median estimate/actual: {statistics.median(ratios):.2f} (windows-only baseline: "
          f"{statistics.median(baseline):.2f})")


def reference() -> None:
    plan = load_plan(REPO / "configs" / "plans" / "reference-gpu.yaml")
    estimate = dry_run(plan, RunOptions(progress=False))
    taken = [e for e in estimate.items if e.take]
    print(f"\n3. reference plan ({plan.path.name}, profile {estimate.profile.name}): "
          f"{len(taken)} trees, {estimate.campaign} node measurements for the plan "
          f"({estimate.separate} as separate per-tree runs), expected "
          f"{estimate.total_s / 60:.1f} min on the GPU (planned here in "
          f"{estimate.planning_s:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small-model", default="distilgpt2")
    parser.add_argument("--skip-dedup", action="store_true")
    args = parser.parse_args()
    if not args.skip_dedup:
        dedup(args.batch_size, args.seq_len)
    estimate_vs_actual(args.small_model, args.repeats)
    reference()


if __name__ == "__main__":
    main()
