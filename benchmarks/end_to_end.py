"""End to end: predict a held-out model's energy from our own trace, checked against DATA.

For each model in DATA: train a structure-only predictor (``StructureRegressor()``, or with
``--estimator irene`` the IrEne regressor on model_specs features) on the other models' measured
trees, trace the
held-out model with our tracer (``schema="irene2021"``, features only, meta device) at every
(batch, seq) DATA has for it, predict every node, and compare with DATA's measured energy node by
node, matched by scope (a scope repeated in one tree is matched by its order of appearance).
Prints ml / module / model MAPE (%) per held-out model and overall (mean over models, as in
leave-one-model-out cross-validation), the nodes that found no partner, and, as the reference,
the same predictor applied to DATA's own trees of the held-out model (IrEne's features): the gap
between the two columns is what tracing ourselves costs.

    python benchmarks/end_to_end.py ../shared/data/irene_device_1.jsonl
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
import warnings

import numpy as np
from irene2021_match import keyed_nodes  # same folder: the scripts share it

NODE_TYPES = ("ml", "module", "model")


def errors_by_scope(predicted, gold) -> tuple[dict[str, list[float]], int, int]:
    """APE (%) per node type and per (node type, instance type) over scope-matched nodes;
    (unmatched gold, unmatched predicted)."""
    mine, ref = keyed_nodes(predicted), keyed_nodes(gold)
    errors: dict = collections.defaultdict(list)
    for key in ref.keys() & mine.keys():
        g = ref[key].ground_truth_energy
        ape = abs(mine[key].predicted_energy - g) / g * 100.0
        errors[ref[key].type].append(ape)
        errors[(ref[key].type, ref[key].instance_type)].append(ape)
    return errors, len(ref.keys() - mine.keys()), len(mine.keys() - ref.keys())


def mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="measured energy trees (JSONL), e.g. irene_device_1.jsonl")
    parser.add_argument("--models", default=None, help="comma-separated held-out models")
    parser.add_argument("--estimator", choices=("structure", "irene"), default="structure",
                        help="structure: StructureRegressor() (default); irene: "
                             "IreneRegressor(feature_sets=['model_specs'])")
    parser.add_argument("--gap", type=float, default=1.0,
                        help="list node classes whose MAPE differs by more than this (points)")
    args = parser.parse_args()

    from tqdm import tqdm

    from irene.model import IreneRegressor, StructureRegressor
    from irene.tracing import trace_model
    from irene.tree import read_trees

    data = read_trees(args.data)
    models = list(dict.fromkeys(t.model_name for t in data))
    held_out = args.models.split(",") if args.models else models
    print(f"# end to end on {args.data} with the {args.estimator} predictor: {len(data)} trees, "
          f"{len(models)} models; "
          f"load average {os.getloadavg()[0]:.2f}")
    rows = {}
    start = time.perf_counter()
    trace_seconds = 0.0
    for name in held_out:
        train = [t for t in data if t.model_name != name]
        gold = [t for t in data if t.model_name == name]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            predictor = (StructureRegressor() if args.estimator == "structure" else
                         IreneRegressor(feature_sets=["model_specs"])).fit(train)
        t0 = time.perf_counter()
        traced = [trace_model(name, t.batch_size, t.seq_len, timing=False, schema="irene2021",
                              hub=False)
                  for t in tqdm(gold, desc=f"trace {name}", unit="tree", leave=False,
                                file=sys.stderr)]
        trace_seconds += time.perf_counter() - t0
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ours = predictor.predict(traced)
            reference = predictor.predict(gold)
        errors: dict = collections.defaultdict(list)
        ref_errors: dict = collections.defaultdict(list)
        missing = extra = 0
        for mine, theirs, gold_tree in zip(ours, reference, gold, strict=True):
            e, m, x = errors_by_scope(mine, gold_tree)
            r, _, _ = errors_by_scope(theirs, gold_tree)
            missing, extra = missing + m, extra + x
            for t in e:
                errors[t] += e[t]
            for t in r:
                ref_errors[t] += r[t]
        rows[name] = {"ours": {t: mean(errors[t]) for t in NODE_TYPES},
                      "ref": {t: mean(ref_errors[t]) for t in NODE_TYPES},
                      "trees": len(gold), "missing": missing, "extra": extra,
                      "by_class": {k: (mean(v), mean(ref_errors[k])) for k, v in errors.items()
                                   if isinstance(k, tuple)},
                      "warnings": sorted({str(w.message)[:100] for w in caught})}
        print(f"{name}: done", file=sys.stderr, flush=True)

    header = "".join(f"{t + ' %':>9}" for t in NODE_TYPES)
    print(f"\n{'held-out model':<26}{'trees':>6}  our trace:{header}   DATA's trees:{header}"
          f"{'unmatched gold/ours':>21}")
    for name, row in rows.items():
        ours = "".join(f"{row['ours'][t]:>9.2f}" for t in NODE_TYPES)
        ref = "".join(f"{row['ref'][t]:>9.2f}" for t in NODE_TYPES)
        print(f"{name:<26}{row['trees']:>6}  {'':>10}{ours}   {'':>13}{ref}"
              f"{row['missing']:>13} / {row['extra']}")
    overall = "".join(f"{mean([r['ours'][t] for r in rows.values()]):>9.2f}"
                      for t in NODE_TYPES)
    ref_overall = "".join(f"{mean([r['ref'][t] for r in rows.values()]):>9.2f}"
                          for t in NODE_TYPES)
    print(f"{'overall (mean of models)':<26}{sum(r['trees'] for r in rows.values()):>6}  "
          f"{'':>10}{overall}   {'':>13}{ref_overall}")
    print(f"\nnode classes whose MAPE differs by more than {args.gap} points between our trace "
          "and DATA's trees (ours vs DATA's):")
    for name, row in rows.items():
        for (kind, itype), (ours_e, ref_e) in sorted(row["by_class"].items()):
            if abs(ours_e - ref_e) > args.gap:
                print(f"  {name:<26}{kind:<7}{itype:<24}{ours_e:>8.2f}{ref_e:>8.2f}")
    for name, row in rows.items():
        for text in row["warnings"]:
            print(f"  warning ({name}): {text}")
    print(f"\n# {time.perf_counter() - start:.1f} s wall ({trace_seconds:.1f} s tracing); load "
          f"average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
