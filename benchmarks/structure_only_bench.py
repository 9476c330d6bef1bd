"""Structure-only prediction (no hardware readings): leave-one-model-out accuracy on unseen models.

    python benchmarks/structure_only_bench.py ../shared/data/irene_device_1.jsonl [--runs 3]

Every predictor here reads only structure features (model_specs: FLOPs, bytes, parameters per
node; batch size, sequence length, tokens per tree). Prints:

1. the chosen configuration (``StructureRegressor()``, see irene/model/structure.py): per
   held-out model ml / module / model MAPE (%), overall, worst held-out model, the module classes
   (instance_type) with the largest mean error, and the wall time (median over ``--runs``);
2. baselines: model energy = a·FLOPs + b·mem_bytes + c fitted on the training models' roots;
   per-type linear leaves in FLOPs and bytes with children summed; today's
   ``IreneRegressor(feature_sets=["model_specs"])``; IrEne's method (configs/irene.json) on
   model_specs;
3. ablations, one change from the chosen configuration at a time, and the leaf forms without
   the shape memory (with it they coincide);
4. a transfer check: the held-out model *and* a held-out sequence length (the test shapes were
   never measured in training), for the chosen configuration, without memory, and today's;
5. unseen primitive types: each type removed from the training trees in turn;
6. a stress test: trained on one family (BERT-like or GPT-like), predicting the other.

Module classes are judged by name only after prediction; no predictor reads class names.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from irene.evaluation import REPORT_ORDER as NODE_TYPES
from irene.evaluation import leave_one_model_out, pair_predictions
from irene.model import IreneRegressor, PredictionError
from irene.model.structure import STRUCTURE_FEATURES, StructureRegressor
from irene.tree import Tree, read_trees

CHOSEN: dict[str, Any] = {}
NO_MEMORY = {"shape_memory": False}
TODAY = {"feature_sets": ["model_specs"]}
IRENE_CONFIG = {**{k: v for k, v in json.loads(
    (Path(__file__).resolve().parents[1] / "configs" / "irene.json").read_text()).items()
    if not k.startswith("_")}, "feature_sets": ["model_specs"]}

ABLATIONS: dict[str, dict[str, Any]] = {
    "no shape memories (smooth forms only)": {"shape_memory": False, "module_memory": False},
    "no leaf shape memory": NO_MEMORY,
    "no module memory": {"module_memory": False},
    "memory bandwidth 0.2 (was 0.05)": {"memory_bandwidth": 0.2},
    "memory prior 10 (was 1)": {"memory_prior": 10.0},
    "leaves: [1, flops, bytes]": {"leaf_features": ["flops", "mem_bytes"]},
    "leaves: [1, flops, bytes, batch, seq]": {
        "leaf_features": ["flops", "mem_bytes", "batch_size", "seq_len"]},
    "leaves: all model_specs features": {"leaf_features": list(STRUCTURE_FEATURES)},
    "leaves: linear, relative LSQ (before)": {"leaf_fit": "relative"},
    "leaves: power law (log-space fit)": {"leaf_fit": "log"},
    "leaves: smooth roofline": {"leaf_fit": "roofline"},
    "one child weight per kind (not per type)": {"child_weights": "per_kind"},
    "no child weights (w = 1)": {"child_weights": "none"},
    "overhead: none": {"overhead_features": []},
    "overhead: Δflops and Δbytes (before)": {"overhead_features": ["flops", "mem_bytes"]},
    "overhead: + constant per module": {"overhead_features": ["mem_bytes", "constant"]},
    "overhead: + number of leaf children": {
        "overhead_features": ["mem_bytes", "leaf_children"]},
    "root fitted like a module (own α per type, own β)": {"root_weights": "as_module"},
    "end-to-end fine-tuning (Adam) after closed form": {"training": "end2end"},
    "signed least squares for modules (α, β may be < 0)": {"nonnegative": False},
    "ridge 1e-3 on inner fits (signed least squares)": {"ridge": 1e-3},
}
LEAF_FORMS_NO_MEMORY: dict[str, dict[str, Any]] = {
    "physical, smooth max + tokens (chosen)": {},
    "physical, smooth max of c0, flops, bytes": {"leaf_features": ["flops", "mem_bytes"]},
    "relative LSQ, [1, flops, bytes, tokens] (before)": {"leaf_fit": "relative"},
    "relative LSQ, [1, flops, bytes]": {"leaf_fit": "relative",
                                        "leaf_features": ["flops", "mem_bytes"]},
    "relative LSQ, [1, flops, bytes, batch, seq]": {
        "leaf_fit": "relative", "leaf_features": ["flops", "mem_bytes", "batch_size", "seq_len"]},
    "relative LSQ, all model_specs features": {"leaf_fit": "relative",
                                               "leaf_features": list(STRUCTURE_FEATURES)},
    "power law (log-space fit)": {"leaf_fit": "log"},
    "smooth roofline c0+c_t·N+((c_f·F)^k+(c_b·B)^k)^1/k": {"leaf_fit": "roofline"},
    "end-to-end fine-tuning": {"training": "end2end"},
}


# ------------------------------------------------------------------------------- scoring
def node_rows(gold: Sequence[Tree], pred: Sequence[Tree]) -> list[tuple[str, str, float]]:
    """(node type, instance type, signed error %) of every gold node (irene.evaluation's join)."""
    paired = pair_predictions(gold, pred)
    return list(zip(paired.node_type.tolist(), paired.instance_type.tolist(),
                    paired.error.tolist(), strict=True))


def summarise(per_model_rows: dict[str, list[tuple[str, str, float]]]) -> dict[str, Any]:
    """Per-model MAPE per node type, overall (mean over models), worst model, module classes."""
    per_model = {m: {t: float(np.mean([abs(e) for k, _, e in rows if k == t]))
                     for t in NODE_TYPES} for m, rows in per_model_rows.items()}
    overall = {t: float(np.mean([r[t] for r in per_model.values()])) for t in NODE_TYPES}
    classes: dict[str, list[float]] = {}
    for rows in per_model_rows.values():
        for kind, inst, e in rows:
            if kind == "module":
                classes.setdefault(inst, []).append(e)
    class_stats = {c: (float(np.mean(np.abs(v))), float(np.mean(v)), len(v))
                   for c, v in classes.items()}
    worst_model = max(per_model.items(), key=lambda kv: kv[1]["model"])
    worst_class = max(class_stats.items(), key=lambda kv: kv[1][0])
    return {"per_model": per_model, "overall": overall, "classes": class_stats,
            "worst_model": (worst_model[0], worst_model[1]["model"]),
            "worst_class": (worst_class[0], worst_class[1][0])}


def lomo(trees: list[Tree], make: Callable[[], Any]) -> dict[str, Any]:
    """Leave-one-model-out with ``make()`` predictors; summary + wall seconds."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cv = leave_one_model_out(trees, make)
    wall = time.perf_counter() - start
    gold = {m: [t for t in trees if t.model_name == m] for m in cv.per_model}
    result = summarise({m: node_rows(gold[m], cv.predictions[m]) for m in cv.per_model})
    return {**result, "wall_s": wall}


def root_linear_baseline(trees: list[Tree]) -> dict[str, float]:
    """Model-level MAPE (%) per held-out model of E_root = a·FLOPs + b·mem_bytes + c, fitted
    on the training models' roots by relative least squares."""
    def design(ts: list[Tree]) -> np.ndarray:
        return np.array([[t.root.features["flops"], t.root.features["mem_bytes"], 1.0]
                         for t in ts])

    out = {}
    for m in dict.fromkeys(t.model_name for t in trees):
        train = [t for t in trees if t.model_name != m]
        test = [t for t in trees if t.model_name == m]
        gold = np.array([t.root.ground_truth_energy for t in train])
        theta, *_ = np.linalg.lstsq(design(train) / gold[:, None], np.ones(len(gold)),
                                    rcond=None)
        truth = np.array([t.root.ground_truth_energy for t in test])
        out[m] = float(np.mean(np.abs(design(test) @ theta - truth) / truth * 100))
    return out


def unseen_shapes(trees: list[Tree], make: Callable[[], Any],
                  seq_lens: Sequence[int] = (64, 96, 160, 224)) -> dict[str, Any]:
    """Hold out one model *and* one sequence length: train on the other models at the other
    sequence lengths, test on the held-out model at the held-out length (shapes never seen)."""
    per_model_rows: dict[str, list] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in seq_lens:
            for m in dict.fromkeys(t.model_name for t in trees):
                train = [t for t in trees if t.model_name != m and t.seq_len != s]
                test = [t for t in trees if t.model_name == m and t.seq_len == s]
                if test:
                    pred = make().fit(train).predict(test)
                    per_model_rows.setdefault(m, []).extend(node_rows(test, pred))
    return summarise(per_model_rows)


def without_type(tree: Tree, kind: str) -> Tree:
    """A copy of ``tree`` without its primitives of type ``kind`` (their work then looks like
    untraced work of the enclosing module)."""
    copy = tree.copy()
    for node in copy.nodes():
        node.children = [c for c in node.children
                         if not (c.type == "ml" and c.instance_type == kind)]
    return copy


def unseen_primitive_types(trees: list[Tree], strategies: dict[str, dict[str, Any]]
                           ) -> dict[str, dict[str, tuple[float, float]]]:
    """For each primitive type and held-out model: train on the other models with that type
    removed from their trees, predict the held-out model (where the type is unseen). Returns
    strategy → type → (MAPE % of the type's primitives, model-level MAPE %)."""
    kinds = sorted({n.instance_type for t in trees for n in t.nodes() if n.type == "ml"})
    models = list(dict.fromkeys(t.model_name for t in trees))
    out: dict[str, dict[str, tuple[float, float]]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, config in strategies.items():
            out[label] = {}
            for kind in kinds:
                leaf_errors, model_errors = [], []
                for m in models:
                    test = [t for t in trees if t.model_name == m]
                    if not any(n.instance_type == kind for n in test[0].nodes()):
                        continue
                    train = [without_type(t, kind) for t in trees if t.model_name != m]
                    pred = StructureRegressor(**config).fit(train).predict(test)
                    rows = node_rows(test, pred)
                    leaf_errors += [abs(e) for k, i, e in rows if k == "ml" and i == kind]
                    model_errors.append(np.mean([abs(e) for k, _, e in rows if k == "model"]))
                out[label][kind] = (float(np.mean(leaf_errors)), float(np.mean(model_errors)))
    return out


FAMILIES = {"BERT family": ("bert-base-uncased", "roberta-base", "distilbert-base-uncased"),
            "GPT family": ("gpt2", "distilgpt2", "openai-gpt")}


def across_families(trees: list[Tree], make: Callable[[], Any], train_family: str
                    ) -> dict[str, Any] | None:
    """Train on one family of IrEne's models, predict each model of the other family."""
    train = [t for t in trees if t.model_name in FAMILIES[train_family]]
    tests = {m: [t for t in trees if t.model_name == m] for m in dict.fromkeys(
        t.model_name for t in trees) if m not in FAMILIES[train_family]}
    if not train or not any(tests.values()):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = make().fit(train)
        return summarise({m: node_rows(test, model.predict(test)) for m, test in tests.items()
                          if test})


# ------------------------------------------------------------------------------ printing
def per_model_table(result: dict[str, Any]) -> str:
    rows = [*result["per_model"].items(), ("overall", result["overall"])]
    lines = [f"{'held-out model':<26}{'ml %':>8}{'module %':>10}{'model %':>9}"]
    lines += [f"{n:<26}{r['ml']:>8.2f}{r['module']:>10.2f}{r['model']:>9.2f}" for n, r in rows]
    return "\n".join(lines)


def one_line(name: str, result: dict[str, Any], width: int = 50) -> str:
    o = result["overall"]
    wm, wc = result["worst_model"], result["worst_class"]
    wall = f"{result['wall_s']:6.1f} s" if "wall_s" in result else ""
    return (f"  {name:<{width}} {o['ml']:6.2f} {o['module']:7.2f} {o['model']:7.2f}   "
            f"{wm[0][:12]:<12} {wm[1]:5.2f}   {wc[0][:22]:<22} {wc[1]:5.2f}  {wall}")


def header(width: int = 50) -> str:
    return (f"  {'':<{width}} {'ml %':>6} {'module':>7} {'model':>7}   "
            f"{'worst model':<12} {'%':>5}   {'worst module class':<22} {'%':>5}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of the chosen config")
    parser.add_argument("--no-ablations", action="store_true")
    parser.add_argument("--no-transfer", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    total = time.perf_counter()
    trees = read_trees(args.data)
    models = list(dict.fromkeys(t.model_name for t in trees))
    print(f"{len(trees)} trees, {len(models)} models; structure features only "
          f"({', '.join(STRUCTURE_FEATURES)})\n")

    runs = [lomo(trees, lambda: StructureRegressor(**CHOSEN)) for _ in range(max(args.runs, 1))]
    chosen = runs[0]
    print("== chosen configuration: StructureRegressor() — leave-one-model-out ==")
    print(per_model_table(chosen))
    wm, wc = chosen["worst_model"], chosen["worst_class"]
    print(f"worst held-out model (model level): {wm[0]} {wm[1]:.2f} %")
    print("module classes, mean |error| % (signed mean, nodes), largest first:")
    ranked = sorted(chosen["classes"].items(), key=lambda kv: -kv[1][0])
    for name, (mape, bias, count) in ranked[:8]:
        print(f"  {name:<26} {mape:6.2f}  ({bias:+6.2f}, {count})")
    above = [n for n, v in chosen["classes"].items() if v[0] > 6.0]
    print(f"classes above 6 %: {above or 'none'}; worst {wc[0]} {wc[1]:.2f} %")
    walls = [r["wall_s"] for r in runs]
    print(f"wall time (6 folds, fit + predict, 1 thread): median {statistics.median(walls):.2f} s"
          f" over {len(walls)} runs ({', '.join(f'{w:.2f}' for w in walls)})")

    print("\n== baselines (same folds) ==")
    print(header())
    print(one_line("chosen configuration", chosen))
    root = root_linear_baseline(trees)
    worst = max(root.items(), key=lambda kv: kv[1])
    print(f"  {'model-level a·FLOPs + b·mem_bytes + c':<50} {'-':>6} {'-':>7} "
          f"{np.mean(list(root.values())):7.2f}   {worst[0][:12]:<12} {worst[1]:5.2f}")
    sum_leaves = {"leaf_fit": "relative", "leaf_features": ["flops", "mem_bytes"],
                  "shape_memory": False, "module_memory": False,
                  "child_weights": "none", "overhead_features": [], "root_weights": "as_module"}
    print(one_line("per-type linear leaves (flops, bytes), Σ children",
                   lomo(trees, lambda: StructureRegressor(**sum_leaves))))
    print(one_line("today: IreneRegressor(feature_sets=[model_specs])",
                   lomo(trees, lambda: IreneRegressor(**TODAY))))
    try:
        print(one_line("IrEne's method (configs/irene.json), model_specs",
                       lomo(trees, lambda: IreneRegressor(**IRENE_CONFIG))))
    except PredictionError as exc:  # its linear leaves extrapolate below 0 J on some nodes
        print(f"  {'IrEne method (configs/irene.json), model_specs':<50} fails: {exc}")

    if not args.no_ablations:
        print("\n== ablations: one change from the chosen configuration ==")
        print(header())
        print(one_line("chosen configuration", chosen))
        for name, change in ABLATIONS.items():
            print(one_line(name, lomo(trees, lambda c=change: StructureRegressor(**c))),
                  flush=True)
        print("\n== leaf forms without the shape memory (with it they coincide) ==")
        print(header())
        for name, change in LEAF_FORMS_NO_MEMORY.items():
            config = {**NO_MEMORY, **change}
            print(one_line(name, lomo(trees, lambda c=config: StructureRegressor(**c))),
                  flush=True)

    if not args.no_transfer:
        print("\n== transfer: held-out model at a held-out sequence length (64, 96, 160, 224) ==")
        print(header())
        for name, make in (
                ("chosen configuration", lambda: StructureRegressor(**CHOSEN)),
                ("chosen, no shape memory", lambda: StructureRegressor(**NO_MEMORY)),
                ("today: IreneRegressor(model_specs)", lambda: IreneRegressor(**TODAY))):
            print(one_line(name, unseen_shapes(trees, make)), flush=True)
        print("\n== unseen primitive types: each type removed from the training trees, "
              "held-out model predicted ==")
        print("   (MAPE % of that type's primitives / model-level MAPE % of the held-out model)")
        table = unseen_primitive_types(trees, {
            "nearest known type in (FLOPs, bytes) (chosen)": CHOSEN,
            "one regressor fitted on all types, [1, flops, bytes]": {"unseen_types": "shared"}})
        kinds = list(next(iter(table.values())))
        print(f"  {'':<52}" + "".join(f"{k[:11]:>13}" for k in kinds))
        for label, row in table.items():
            print(f"  {label:<52}" + "".join(f"{row[k][0]:6.1f} /{row[k][1]:5.1f}"
                                               for k in kinds))

        print("\n== stress test: train on one family, predict the other (types unseen: Conv1D "
              "or Linear + Tanh) ==")
        print(header())
        for name, make in (
                ("chosen", lambda: StructureRegressor(**CHOSEN)),
                ("unseen types: one regressor", lambda: StructureRegressor(
                    unseen_types="shared")),
                ("signed least squares", lambda: StructureRegressor(nonnegative=False)),
                ("today (model_specs)", lambda: IreneRegressor(**TODAY))):
            for family in FAMILIES:
                try:
                    result = across_families(trees, make, family)
                except PredictionError as exc:  # a signed fit can price a node below 0 J
                    print(f"  {name + ', trained on ' + family:<50} refused: "
                          f"{str(exc).split(': ', 1)[-1][:90]}", flush=True)
                    continue
                if result is not None:
                    print(one_line(f"{name}, trained on {family}", result), flush=True)
    print(f"\ntotal wall time {time.perf_counter() - total:.0f} s")


if __name__ == "__main__":
    main()
