"""How well `irene calibrate` adapts a predictor to a new energy target from a few trees.

We have measurements of one device only, so the "new hardware" here is a different energy
scope on the same machine: a structure-only predictor is trained on the wall-meter ground
truth of the training models and calibrated to the GPU board's own energy reading
(`gpu_energy_mean`, NVML power x time) from a few trees of the *training* models; it then
predicts the GPU-board energy of the held-out model. The ratio wall / GPU is not constant (it
grows with the rest of the system's power x time), as the ratio between two GPUs is not.
Compared with: no calibration, and the simplest alternative — one constant factor fitted on
the same trees.

    python benchmarks/calibration_bench.py DATA.jsonl [--trees 1,2,4]

DATA is taken by path and never copied (IrEne's published data has no licence).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from irene import read_trees
from irene.evaluation import percentage_errors
from irene.model import IreneRegressor
from irene.model.calibrate import calibrate
from irene.tree import Tree

KINDS = ("ml", "module", "model")


def gpu_scope(tree: Tree) -> Tree:
    """The tree with the GPU board's energy reading as its ground truth."""
    copy = tree.copy()
    for node in copy.nodes():
        node.ground_truth_energy = node.features["gpu_energy_mean"]
    copy.meta["meter"] = "nvml-reading"
    return copy


def constant_factor(model, few: list[Tree], target: list[Tree]) -> list[Tree]:
    """Predictions times the median ratio measured / predicted at the roots of ``few``."""
    scale = float(np.median([t.root.ground_truth_energy / p.root.predicted_energy
                             for t, p in zip(few, model.predict(few), strict=True)]))
    out = model.predict(target)
    for tree in out:
        for node in tree.nodes():
            node.predicted_energy *= scale
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--trees", default="1,2,4",
                        help="calibration trees per run (taken from the training models)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    trees = read_trees(args.data)
    models = list(dict.fromkeys(t.model_name for t in trees))
    counts = [int(c) for c in args.trees.split(",")]
    rows: dict[str, list[dict[str, float]]] = {}
    start = time.perf_counter()
    for held in models:
        train = [t for t in trees if t.model_name != held]
        target = [gpu_scope(t) for t in trees if t.model_name == held]
        model = IreneRegressor(feature_sets=["model_specs"]).fit(train)
        rows.setdefault("no calibration", []).append(
            percentage_errors(target, model.predict(target)))
        others = [t for t in train if t.batch_size == 16 and t.seq_len == 128]
        for n in counts:  # n trees of different training models at one shape (16 x 128)
            few = [gpu_scope(t) for t in others[:n]]
            rows.setdefault(f"constant factor, {n} tree(s)", []).append(
                percentage_errors(target, constant_factor(model, few, target)))
            rows.setdefault(f"irene calibrate, {n} tree(s)", []).append(
                percentage_errors(target, calibrate(model, few).predict(target)))
    print(f"leave-one-model-out on {args.data}: trained on wall energy, predicting the GPU "
          f"board's energy of the held-out model ({time.perf_counter() - start:.1f} s)")
    print(f"{'method':<30} {'ml %':>7} {'module %':>9} {'model %':>8} {'worst model %':>14}")
    for name, per_model in rows.items():
        mean = {k: float(np.mean([r[k] for r in per_model])) for k in KINDS}
        worst = max(r["model"] for r in per_model)
        print(f"{name:<30} {mean['ml']:7.2f} {mean['module']:9.2f} {mean['model']:8.2f} "
              f"{worst:14.2f}")


if __name__ == "__main__":
    main()
