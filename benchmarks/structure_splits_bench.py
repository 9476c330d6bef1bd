"""Structure-only prediction on splits with no twins: held-out model *and* held-out sizes, and
families.

    python benchmarks/structure_splits_bench.py ../shared/data/irene_device_1.jsonl
        [--splits lomo,seq_up,...] [--methods physical,before,irene,lookup] [--no-beyond]
        [--by-type]

On IrEne's grid almost every primitive of a held-out model has an identical twin (same type,
FLOPs, bytes, batch, seq) in another model, so leave-one-model-out (``lomo``) mostly measures
recall. The other splits leave no twin: each fold holds out one model *and* trains only on the
other models' trees at sizes the held-out trees do not have (``seq_up``: train seq <= 128, test
seq >= 192; ``seq_down``: train seq >= 128, test seq <= 64; ``batch_up``: train batch <= 16,
test batch >= 24; ``batch_down``: train batch >= 16, test batch 8; ``batch_seq``: train
batch <= 16 and seq <= 128, test batch >= 24 and seq >= 192), or trains on one family and
predicts the other (``bert_to_gpt``, ``gpt_to_bert``: BERT-like = bert, roberta, distilbert;
GPT-like = gpt2, distilgpt2, openai-gpt). The split boundaries are fixed here, before any
result; nothing is tuned on a held-out fold.

Methods (all read structure features only):

* ``physical``: ``StructureRegressor()`` — the physical leaf form (irene/model/structure.py);
* ``before``: the structure predictor as it was before the physical form —
  ``irene/model/structure.py`` of commit ``BEFORE`` (2859d46), read with ``git show`` into a
  temporary module for this run only (per-type linear leaves in FLOPs, bytes and tokens, the
  leaf shape memory, Δflops/Δbytes module overheads);
* ``irene``: ``IreneRegressor(feature_sets=["model_specs"])`` — the IrEne regressor, the old
  default estimator, on the same structure features;
* ``lookup``: a plain look-up table: a leaf costs the mean of the training leaves of the same
  type and shape (FLOPs, bytes, batch, seq); with no twin, the nearest measured shape of that
  type (log distance); a module or the model costs the sum of its children.

Printed per split and method: the median absolute % error over every leaf / module / model
node of the test trees (pooled over folds), the mean over held-out models of the per-model
mean absolute % error (IrEne's figure, which the README quotes for ``lomo``), the worst
model-level tree error, and how many nodes were predicted <= 0 J (or "refused" when the
predictor raises). ``--by-type`` then prints, per split and method, where the model-level error
comes from: each leaf type's median signed error and its leaves' summed error as a share of the
tree's energy, and the rest (module glue and overheads). ``--beyond`` (default on) then fits
the predictors on every tree and predicts BERT-base at 128 x 512 and 256 x 512 (traced here on
the meta device, IrEne's schema), far beyond the grid (seq <= 256, batch <= 32).

The data is taken by path and never copied; nothing fitted on it is written.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from irene.evaluation import pair_predictions
from irene.model import IreneRegressor, PredictionError
from irene.model.structure import StructureRegressor
from irene.tree import Tree, read_trees

#: the commit whose structure predictor is the "before" baseline
BEFORE = "2859d46"

BERT_LIKE = ("bert-base-uncased", "roberta-base", "distilbert-base-uncased")
GPT_LIKE = ("gpt2", "distilgpt2", "openai-gpt")
KINDS = ("ml", "module", "model")

#: split -> (train filter, test filter) on (batch, seq), applied with one model held out
SIZE_SPLITS: dict[str, tuple[Callable[[int, int], bool], Callable[[int, int], bool]]] = {
    "lomo": (lambda b, s: True, lambda b, s: True),
    "seq_up": (lambda b, s: s <= 128, lambda b, s: s >= 192),
    "seq_down": (lambda b, s: s >= 128, lambda b, s: s <= 64),
    "batch_up": (lambda b, s: b <= 16, lambda b, s: b >= 24),
    "batch_down": (lambda b, s: b >= 16, lambda b, s: b <= 8),
    "batch_seq": (lambda b, s: b <= 16 and s <= 128, lambda b, s: b >= 24 and s >= 192),
}
FAMILY_SPLITS = {"bert_to_gpt": (BERT_LIKE, GPT_LIKE), "gpt_to_bert": (GPT_LIKE, BERT_LIKE)}
SPLITS = (*SIZE_SPLITS, *FAMILY_SPLITS)


class LookupTable:
    """Twin mean per (type, FLOPs, bytes, batch, seq); else the nearest measured shape of the
    type in log space (an unseen type: of any type); inner nodes = Σ children (J)."""

    def fit(self, trees: list[Tree]) -> LookupTable:
        rows: dict[str, list[tuple[np.ndarray, float]]] = {}
        for tree in trees:
            for node in tree.nodes():
                if node.type == "ml":
                    rows.setdefault(node.instance_type, []).append(
                        (self._shape(tree, node), node.ground_truth_energy))
        self.table = {}
        for kind, pairs in rows.items():
            shapes = np.array([p[0] for p in pairs])
            energy = np.array([p[1] for p in pairs])
            unique, inverse = np.unique(shapes, axis=0, return_inverse=True)
            inverse = inverse.ravel()
            self.table[kind] = (unique, np.bincount(inverse, weights=energy)
                                / np.bincount(inverse))
        every = list(self.table.values())
        self.table[None] = (np.vstack([u for u, _ in every]), np.concatenate([e for _, e in every]))
        return self

    @staticmethod
    def _shape(tree: Tree, node: Any) -> np.ndarray:
        return np.log(np.array([node.features["flops"] + 1e-3, node.features["mem_bytes"] + 1e-6,
                                tree.batch_size, tree.seq_len]))

    def predict(self, trees: list[Tree]) -> list[Tree]:
        out = []
        for tree in trees:
            copy = tree.copy()
            self._fill(copy, copy.root)
            out.append(copy)
        return out

    def _fill(self, tree: Tree, node: Any) -> float:
        if node.type == "ml":
            shapes, energy = self.table.get(node.instance_type, self.table[None])
            d2 = ((shapes - self._shape(tree, node)) ** 2).sum(axis=1)
            value = float(energy[int(np.argmin(d2))])
        else:
            value = sum(self._fill(tree, c) for c in node.children)
        node.predicted_energy = value
        return value


def before_class() -> type:
    """``StructureRegressor`` of commit :data:`BEFORE`, imported from a temporary copy."""
    if "structure_before" not in sys.modules:
        root = Path(__file__).resolve().parents[1]
        source = subprocess.run(["git", "-C", str(root), "show",
                                 f"{BEFORE}:irene/model/structure.py"],
                                check=True, capture_output=True, text=True).stdout
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "structure_before.py"
            path.write_text(source)
            spec = importlib.util.spec_from_file_location("structure_before", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules["structure_before"] = module
            spec.loader.exec_module(module)
    return sys.modules["structure_before"].StructureRegressor


METHODS: dict[str, Callable[[], Any]] = {
    "physical": lambda: StructureRegressor(),
    "before": lambda: before_class()(),
    "irene": lambda: IreneRegressor(feature_sets=["model_specs"]),
    "lookup": LookupTable,
}
LABELS = {"physical": "structure, physical leaves (new)",
          "before": f"structure predictor before ({BEFORE})",
          "irene": "IrEne regressor, model_specs (old default)",
          "lookup": "look-up table (twin mean / nearest)"}


def folds(trees: list[Tree], split: str) -> list[tuple[str, list[Tree], list[Tree]]]:
    """(held-out name, training trees, test trees) of every fold of ``split``."""
    if split in FAMILY_SPLITS:
        train_family, test_family = FAMILY_SPLITS[split]
        return [(f"{split}", [t for t in trees if t.model_name in train_family],
                 [t for t in trees if t.model_name in test_family])]
    keep_train, keep_test = SIZE_SPLITS[split]
    out = []
    for model in dict.fromkeys(t.model_name for t in trees):
        train = [t for t in trees if t.model_name != model and keep_train(t.batch_size, t.seq_len)]
        test = [t for t in trees if t.model_name == model and keep_test(t.batch_size, t.seq_len)]
        if train and test:
            out.append((model, train, test))
    return out


def evaluate(trees: list[Tree], split: str, make: Callable[[], Any]) -> dict[str, Any]:
    """Pooled absolute errors per node kind, per-model MAPEs, non-positive predictions."""
    errors: dict[str, list[float]] = {k: [] for k in KINDS}
    per_model: dict[str, dict[str, float]] = {}
    nonpositive, refused = 0, []
    for name, train, test in folds(trees, split):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                pred = make().fit(train).predict(test)
            except PredictionError as exc:
                refused.append(f"{name}: {str(exc)[:80]}")
                continue
        nonpositive += sum(n.predicted_energy <= 0 for t in pred for n in t.nodes())
        paired = pair_predictions(test, pred)
        for kind in KINDS:
            mask = paired.node_type == kind
            errors[kind].extend(np.abs(paired.error[mask]).tolist())
        for model in dict.fromkeys(t.model_name for t in test):
            rows = [(g, p) for g, p in zip(test, pred, strict=True) if g.model_name == model]
            sub = pair_predictions([g for g, _ in rows], [p for _, p in rows])
            per_model[model] = {k: float(np.mean(np.abs(sub.error[sub.node_type == k])))
                                for k in KINDS}
    return {"median": {k: float(np.median(v)) if v else float("nan") for k, v in errors.items()},
            "mean_of_models": {k: float(np.mean([r[k] for r in per_model.values()]))
                               if per_model else float("nan") for k in KINDS},
            "worst_tree_model": max(errors["model"], default=float("nan")),
            "nonpositive": nonpositive, "refused": refused}


def type_breakdown(trees: list[Tree], split: str, make: Callable[[], Any]
                   ) -> dict[str, tuple[float, float]]:
    """Where the model-level error of ``split`` comes from: per leaf type, (median signed %
    error of its leaves, mean over test trees of its leaves' summed error as % of the tree's
    measured energy); ``<glue>``: the rest of the root's signed error (module overheads, child
    weights, the root factor: (0, mean % of the tree)); ``<model>``: the root's (median signed
    %, mean signed %)."""
    signed: dict[str, list[float]] = {}
    share: dict[str, list[float]] = {}
    for _, train, test in folds(trees, split):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                pred = make().fit(train).predict(test)
            except PredictionError:
                continue
        for gold, guess in zip(test, pred, strict=True):
            total = gold.root.ground_truth_energy
            parts: dict[str, float] = {}
            for g, p in zip(gold.nodes(), guess.nodes(), strict=True):
                if g.type == "ml":
                    signed.setdefault(g.instance_type, []).append(
                        100 * (p.predicted_energy / g.ground_truth_energy - 1))
                    parts[g.instance_type] = parts.get(g.instance_type, 0.0) + \
                        100 * (p.predicted_energy - g.ground_truth_energy) / total
            root = 100 * (guess.root.predicted_energy / total - 1)
            parts["<glue>"] = root - sum(parts.values())
            signed.setdefault("<model>", []).append(root)
            for kind, value in parts.items():
                share.setdefault(kind, []).append(value)
    out = {k: (float(np.median(v)), float(np.mean(share[k]))) for k, v in signed.items()
           if k in share}
    out["<glue>"] = (0.0, float(np.mean(share.get("<glue>", [np.nan]))))
    out["<model>"] = (float(np.median(signed.get("<model>", [np.nan]))),
                      float(np.mean(signed.get("<model>", [np.nan]))))
    return out


def print_breakdown(trees: list[Tree], splits: list[str], methods: list[str]) -> None:
    """:func:`type_breakdown` of every split and method (the look-up table excluded)."""
    print("\n== where the model-level error comes from: per leaf type, median signed % error "
          "of its leaves / mean share of the tree's error (% of the tree's energy) ==")
    for split in splits:
        for method in methods:
            if method == "lookup":
                continue
            r = type_breakdown(trees, split, METHODS[method])
            cells = "  ".join(f"{k} {m:+.1f}/{c:+.2f}" for k, (m, c) in sorted(r.items())
                              if not k.startswith("<"))
            print(f"{split:<12}{method:<9} model {r['<model>'][0]:+.2f} (mean "
                  f"{r['<model>'][1]:+.2f}) = glue {r['<glue>'][1]:+.2f} + leaves: {cells}",
                  flush=True)


def beyond_the_grid(trees: list[Tree], methods: list[str]) -> None:
    """Fit on every tree, predict BERT-base at 128 x 512 and 256 x 512 (meta-device traces)."""
    from irene.tracing import trace_model

    targets = [trace_model("bert-base-uncased", b, 512, timing=False, schema="irene2021",
                           hub=False) for b in (128, 256)]
    print("\n== beyond the grid: fitted on all trees, BERT-base at 128 x 512 and 256 x 512 ==")
    for method in methods:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = METHODS[method]().fit(trees)
            try:
                pred = model.predict(targets)
            except PredictionError as exc:
                print(f"  {LABELS[method]:<44} refused: {str(exc)[:100]}")
                continue
        parts = []
        for tree in pred:
            low = min(n.predicted_energy for n in tree.nodes())
            parts.append(f"{tree.batch_size}x{tree.seq_len}: model "
                         f"{tree.root.predicted_energy:8.2f} J (smallest node {low:.2e} J)")
        print(f"  {LABELS[method]:<44} " + "; ".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data")
    parser.add_argument("--splits", default=",".join(SPLITS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--no-beyond", action="store_true")
    parser.add_argument("--by-type", action="store_true",
                        help="also print where each split's model-level error comes from")
    args = parser.parse_args()
    splits = args.splits.split(",")
    methods = args.methods.split(",")
    unknown = sorted(set(splits) - set(SPLITS)) + sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown split or method: {', '.join(unknown)}")
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    trees = read_trees(args.data)
    print(f"{len(trees)} trees from {args.data}; structure features only\n")
    print(f"{'split':<12}{'method':<45}{'median |error| %':>24}   {'mean of models %':>24}"
          f"{'worst':>7}{'<=0 J':>6}")
    print(f"{'':<12}{'':<45}{'leaf':>8}{'module':>8}{'model':>8}   "
          f"{'leaf':>8}{'module':>8}{'model':>8}{'tree':>7}")
    for split in splits:
        for method in methods:
            r = evaluate(trees, split, METHODS[method])
            med, mom = r["median"], r["mean_of_models"]
            note = f"  refused: {'; '.join(r['refused'])}" if r["refused"] else ""
            print(f"{split:<12}{LABELS[method]:<45}"
                  + "".join(f"{med[k]:8.2f}" for k in KINDS) + "   "
                  + "".join(f"{mom[k]:8.2f}" for k in KINDS)
                  + f"{r['worst_tree_model']:7.2f}{r['nonpositive']:6d}{note}", flush=True)
        print()
    if args.by_type:
        print_breakdown(trees, splits, methods)
    if not args.no_beyond:
        beyond_the_grid(trees, [m for m in methods if m != "lookup"])
    print(f"\ntotal wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
