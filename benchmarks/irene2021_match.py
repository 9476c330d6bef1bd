"""How closely our ``--schema irene2021`` traces reproduce IrEne's published trees.

For each model in DATA (IrEne's six) and each (batch, seq) cell asked for that DATA has, trace the
model features-only (meta device) with ``schema="irene2021"`` and compare with DATA's tree scope
for scope (a scope repeated in one tree, like a module's two ``matmul`` calls, is matched by its
order of appearance). Prints, per model, matched / missing / extra scopes and, per node type and
instance type, the ratio ours / IrEne of the summed FLOPs and ``mem_bytes`` over matched nodes
with the worst single-node deviation.

    python benchmarks/irene2021_match.py ../shared/data/irene_device_1.jsonl
    python benchmarks/irene2021_match.py DATA.jsonl --cells 8x32,32x128 --verbose
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from collections.abc import Iterable

DEFAULT_CELLS = "8x32,8x256,16x128,24x64,32x128"


def keyed_nodes(tree) -> dict[tuple[str, int], object]:
    """Nodes by (scope, k): the k-th node (pre-order) with that scope."""
    seen: collections.Counter[str] = collections.Counter()
    out = {}
    for node in tree.nodes():
        out[(node.scope, seen[node.scope])] = node
        seen[node.scope] += 1
    return out


def compare(ours, theirs) -> dict:
    """Matched / missing / extra keys, and (ours, theirs) feature pairs per (type, class)."""
    a, b = keyed_nodes(ours), keyed_nodes(theirs)
    pairs: dict[tuple[str, str], list[tuple]] = collections.defaultdict(list)
    type_mismatch = []
    for key in a.keys() & b.keys():
        mine, ref = a[key], b[key]
        if (mine.type, mine.instance_type) != (ref.type, ref.instance_type):
            type_mismatch.append((key[0], mine.instance_type, ref.instance_type))
        pairs[(ref.type, ref.instance_type)].append(
            (key[0], mine.features["flops"], ref.features["flops"],
             mine.features["mem_bytes"], ref.features["mem_bytes"],
             mine.features["num_parameters"], ref.features["num_parameters"]))
    return {"matched": len(a.keys() & b.keys()), "missing": sorted(b.keys() - a.keys()),
            "extra": sorted(a.keys() - b.keys()), "pairs": pairs,
            "type_mismatch": type_mismatch}


def ratio(values: Iterable[tuple[float, float]]) -> tuple[float, float]:
    """(sum ours / sum theirs, worst |ours/theirs - 1| of one node), NaN where theirs is 0."""
    values = list(values)
    mine = sum(v[0] for v in values)
    ref = sum(v[1] for v in values)
    worst = max((abs(m / r - 1) for m, r in values if r), default=float("nan"))
    if not ref:
        return (1.0 if not mine else float("inf")), worst
    return mine / ref, worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="IrEne trees (JSONL), e.g. irene_device_1.jsonl")
    parser.add_argument("--cells", default=DEFAULT_CELLS,
                        help=f"BxS cells to compare where DATA has them (default {DEFAULT_CELLS})")
    parser.add_argument("--models", default=None, help="comma-separated subset of DATA's models")
    parser.add_argument("--verbose", action="store_true", help="list missing/extra scopes")
    args = parser.parse_args()

    from tqdm import tqdm

    from irene.tracing import trace_model
    from irene.tree import read_trees

    cells = [tuple(int(x) for x in c.split("x")) for c in args.cells.split(",")]
    data = read_trees(args.data)
    by_key = {(t.model_name, t.batch_size, t.seq_len): t for t in data}
    models = args.models.split(",") if args.models else list(dict.fromkeys(
        t.model_name for t in data))
    jobs = [(m, b, s) for m in models for b, s in cells if (m, b, s) in by_key]
    print(f"# {len(jobs)} (model, batch, seq) cells, load average {os.getloadavg()[0]:.2f}")
    totals: dict[tuple[str, str], list[tuple]] = collections.defaultdict(list)
    per_model: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    examples: dict[str, set] = collections.defaultdict(set)
    start = time.perf_counter()
    for model, batch, seq in tqdm(jobs, desc="trace irene2021", unit="tree", file=sys.stderr):
        ours = trace_model(model, batch, seq, timing=False, schema="irene2021", hub=False)
        result = compare(ours, by_key[(model, batch, seq)])
        counts = per_model[model]
        counts["cells"] += 1
        counts["matched"] += result["matched"]
        counts["missing"] += len(result["missing"])
        counts["extra"] += len(result["extra"])
        counts["type_mismatch"] += len(result["type_mismatch"])
        for key, rows in result["pairs"].items():
            totals[key].extend(rows)
        if args.verbose:
            examples[model].update(f"missing {k[0]}" for k in result["missing"][:5])
            examples[model].update(f"extra {k[0]}" for k in result["extra"][:5])
            examples[model].update(f"class {m} vs {r} at {s}"
                                   for s, m, r in result["type_mismatch"][:3])
    wall = time.perf_counter() - start

    print(f"\n{'model':<26}{'cells':>6}{'matched':>9}{'missing':>9}{'extra':>7}"
          f"{'class≠':>8}")
    for model, c in per_model.items():
        print(f"{model:<26}{c['cells']:>6}{c['matched']:>9}{c['missing']:>9}{c['extra']:>7}"
              f"{c['type_mismatch']:>8}")
        for line in sorted(examples.get(model, ())):
            print(f"    {line}")

    print(f"\n{'type':<7}{'instance type':<24}{'nodes':>7}{'flops ours/IrEne':>18}"
          f"{'worst node':>11}{'mem ours/IrEne':>16}{'worst node':>11}{'params':>8}")
    order = {"ml": 0, "module": 1, "model": 2}
    for (kind, itype), rows in sorted(totals.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        f_ratio, f_worst = ratio((r[1], r[2]) for r in rows)
        m_ratio, m_worst = ratio((r[3], r[4]) for r in rows)
        p_ratio, _ = ratio((r[5], r[6]) for r in rows)
        print(f"{kind:<7}{itype:<24}{len(rows):>7}{f_ratio:>18.4f}{100 * f_worst:>10.2f}%"
              f"{m_ratio:>16.4f}{100 * m_worst:>10.2f}%{p_ratio:>8.3f}")
    leaves = [r for (kind, _), rows in totals.items() if kind == "ml" for r in rows]
    within = sum(1 for r in leaves if abs(r[1] - r[2]) <= 0.01 * abs(r[2]) + 1e-12
                 and abs(r[3] - r[4]) <= 0.01 * abs(r[4]) + 1e-12)
    print(f"\nml leaves with flops and mem_bytes both within 1 %: {within} / {len(leaves)}; "
          f"traced in {wall:.1f} s; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
