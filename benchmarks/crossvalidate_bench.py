"""Leave-one-model-out accuracy and speed of the predictor on a data set of energy trees.

    python benchmarks/crossvalidate_bench.py ../shared/data/irene_device_1.jsonl [--runs 3]

Prints, for the default configuration: the per-model table (ml / module / model % error) beside
the simplest baseline that uses the same readings — every node's energy as
``a·gpu_energy_mean + b·times_mean`` with two constants fitted on the training models' nodes
(relative least squares) — the wall time (median over ``--runs`` runs, each in a fresh process:
reading the file + all folds) and the peak memory of that process; the overall errors over
three shuffled orders of the file; and the same for ablations (IrEne's configuration, and one
change at a time) to show what helps.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

IRENE_CONFIG = {k: v for k, v in json.loads(
    (Path(__file__).resolve().parents[1] / "configs" / "irene.json").read_text()).items()
    if not k.startswith("_")}
ABLATIONS: dict[str, dict] = {
    "IrEne's method (configs/irene.json)": IRENE_CONFIG,
    "no module overhead term": {"module_overhead": False},
    "ordinary least-squares leaves": {"leaf_fit": "ols"},
    "log-space leaves": {"leaf_fit": "log"},
    "leaves read all features": {"leaf_features": "all"},
    "degree-3 polynomial weights": {"polynomial_features": True},
    "leaves fine-tuned end to end": {"finetune_leaves": True},
    "exact_one weights": {"weighting_setting": "exact_one"},
    "stepwise training": {"training_strategy": "stepwise"},
    "unstructured (no tree)": {"training_strategy": "unstructured"},
    "model_specs features only": {"feature_sets": ["model_specs"]},
    "resource_utilization features only": {"feature_sets": ["resource_utilization"]},
}


def run_once(data: str, config: dict, order_seed: int | None) -> dict:
    """Read the data, cross-validate, return errors, wall seconds and peak memory (bytes)."""
    from irene.evaluation import leave_one_model_out
    from irene.model import IreneRegressor
    from irene.tree import read_trees

    start = time.perf_counter()
    trees = read_trees(data)
    if order_seed is not None:
        random.Random(order_seed).shuffle(trees)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cv = leave_one_model_out(trees, lambda: IreneRegressor(**config))
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {**cv.to_dict(), "wall_s": wall, "peak_bytes": peak}


def in_child(data: str, config: dict, order_seed: int | None = None) -> dict:
    """run_once in a fresh Python process, so time and peak memory are the command's own."""
    out = subprocess.run(
        [sys.executable, __file__, data, "--child", json.dumps(config),
         "--order-seed", "none" if order_seed is None else str(order_seed)],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def two_constant_baseline(data: str) -> dict:
    """Leave-one-model-out MAPE of energy = a·gpu_energy_mean + b·times_mean (two constants
    fitted on every node of the training models, relative least squares): what the readings
    alone give, with no tree and no per-type model."""
    import numpy as np

    from irene.evaluation import REPORT_ORDER
    from irene.tree import read_trees

    trees = read_trees(data)
    rows = [(t.model_name, n.type, n.features["gpu_energy_mean"], n.features["times_mean"],
             n.ground_truth_energy) for t in trees for n in t.nodes()]
    model = np.array([r[0] for r in rows])
    kind = np.array([r[1] for r in rows])
    x = np.array([[r[2], r[3]] for r in rows])
    gold = np.array([r[4] for r in rows])
    per_model, constants = {}, []
    for name in dict.fromkeys(model.tolist()):
        train, test = model != name, model == name
        coef, *_ = np.linalg.lstsq(x[train] / gold[train, None], np.ones(train.sum()),
                                   rcond=None)
        constants.append(coef)
        ape = np.abs(x[test] @ coef - gold[test]) / gold[test] * 100
        per_model[name] = {k: float(ape[kind[test] == k].mean()) for k in REPORT_ORDER}
    overall = {k: float(np.mean([r[k] for r in per_model.values()])) for k in REPORT_ORDER}
    a, b = np.mean(constants, axis=0)
    return {"per_model": per_model, "overall": overall, "a": float(a), "b_watts": float(b)}


def table(result: dict) -> str:
    rows = [*result["per_model"].items(), ("overall", result["overall"])]
    lines = [f"{'held-out model':<26}{'ml %':>8}{'module %':>10}{'model %':>9}"]
    lines += [f"{n:<26}{r['ml']:>8.2f}{r['module']:>10.2f}{r['model']:>9.2f}" for n, r in rows]
    return "\n".join(lines)


def overall(result: dict) -> str:
    o = result["overall"]
    worst = max(result["per_model"].items(), key=lambda kv: kv[1]["model"])
    return (f"ml {o['ml']:5.2f}  module {o['module']:5.2f}  model {o['model']:5.2f}  "
            f"(worst model-level: {worst[0]} {worst[1]['model']:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data")
    parser.add_argument("--runs", type=int, default=3, help="timed runs (median reported)")
    parser.add_argument("--no-ablations", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--order-seed", default="none", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        seed = None if args.order_seed == "none" else int(args.order_seed)
        print(json.dumps(run_once(args.data, json.loads(args.child), seed)))
        return

    runs = [in_child(args.data, {}) for _ in range(args.runs)]
    print("default configuration, leave-one-model-out (file order):")
    print(table(runs[0]))
    baseline = two_constant_baseline(args.data)
    print(f"\nbaseline: energy = a·gpu_energy_mean + b·times_mean (mean a = {baseline['a']:.3f}, "
          f"b = {baseline['b_watts']:.1f} W), same folds:")
    print(table(baseline))
    walls = [r["wall_s"] for r in runs]
    peaks = [r["peak_bytes"] / 2**30 for r in runs]
    print(f"wall time: median {statistics.median(walls):.2f} s over {len(walls)} runs "
          f"({', '.join(f'{w:.2f}' for w in walls)}); peak memory {max(peaks):.2f} GiB")

    print("\nshuffled file orders (default configuration):")
    model_errors = []
    for seed in (1, 2, 3):
        result = in_child(args.data, {}, seed)
        model_errors.append(result["overall"]["model"])
        print(f"  order seed {seed}: {overall(result)}")
    print(f"  overall model-level error spread: {min(model_errors):.3f} .. "
          f"{max(model_errors):.3f} % (range {max(model_errors) - min(model_errors):.3f} points)")

    if args.no_ablations:
        return
    print("\nablations (one change from the default at a time; wall = one run):")
    for name, config in ABLATIONS.items():
        result = in_child(args.data, config)
        print(f"  {name:<38} {overall(result)}  {result['wall_s']:.1f} s")


if __name__ == "__main__":
    main()
