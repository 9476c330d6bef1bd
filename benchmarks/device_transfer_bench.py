"""Moving a structure predictor to another device with two of that device's trees.

    python benchmarks/device_transfer_bench.py ../shared/data/irene_device_1.jsonl

We have measurements of one device only, so "another device" is simulated two honest ways,
fixed before any result:

1. ``gpu-board``: the second device's energy is the GPU board's own reading
   (``gpu_energy_mean``, NVML power x time) instead of the wall meter's: a different energy
   function of the same kernels (no host, fans or PSU losses; the ratio wall / board runs from
   1.47 to 3.5 over the nodes, 1.54 to 1.68 over the models: not a constant factor). Per
   held-out model: the predictor is fitted on the wall energy of the other five models,
   calibrated on two board trees of two *training* models, and predicts the board energy of
   every tree of the held-out model.
2. ``family``: the second device is the other family. Fitted on the BERT-like models' trees
   (bert, roberta, distilbert), calibrated on two GPT-like trees (of gpt2 and distilgpt2),
   evaluated on every other GPT-like tree; and the reverse (GPT-like -> BERT-like, calibrated
   on trees of bert and roberta).

Two calibration protocols: both trees at 16 x 128 (one shape, two models), and one small and
one large tree (8 x 32 of the first model, 24 x 256 of the second) — what a user measuring two
runs to calibrate would do to show the device both ends of the size range.

Methods: no calibration; one constant factor (median measured / predicted at the roots of the
two trees); the power-law correction per primitive type (``calibrate(form="power_law")``, what
``irene calibrate`` did before); ``irene calibrate`` (:func:`irene.model.calibrate.calibrate`:
for this predictor, three factors on the per-call, per-FLOP and per-byte terms). Printed: median and
mean absolute % error per node kind over the evaluated trees, the worst tree at model level,
and whether `irene calibrate`'s own check would accept the calibration (it refuses one that
does not lower the model-level error of its calibration trees).

The data is taken by path and never copied; nothing fitted on it is written.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from irene.evaluation import pair_predictions, percentage_errors
from irene.model.calibrate import CalibrationRefused, calibrate, check_improves
from irene.model.structure import StructureRegressor
from irene.tree import Tree, read_trees

BERT_LIKE = ("bert-base-uncased", "roberta-base", "distilbert-base-uncased")
GPT_LIKE = ("gpt2", "distilgpt2", "openai-gpt")
KINDS = ("ml", "module", "model")
#: protocol -> the shapes of the two calibration trees (one per calibration model)
PROTOCOLS = {"two trees at 16x128": ((16, 128), (16, 128)),
             "two trees, 8x32 + 24x256": ((8, 32), (24, 256))}


def gpu_scope(tree: Tree) -> Tree:
    """The tree with the GPU board's energy reading as its ground truth."""
    copy = tree.copy()
    for node in copy.nodes():
        node.ground_truth_energy = node.features["gpu_energy_mean"]
    copy.meta["device_name"] = "GPU board (simulated second device)"
    return copy


def at_shape(trees: list[Tree], model: str, shape: tuple[int, int]) -> Tree:
    return next(t for t in trees if t.model_name == model
                and (t.batch_size, t.seq_len) == shape)


def scenarios(trees: list[Tree], shapes: tuple[tuple[int, int], tuple[int, int]]
              ) -> dict[str, list[tuple[list[Tree], list[Tree], list[Tree]]]]:
    """scenario -> folds of (training trees, two calibration trees, evaluated trees)."""
    out: dict[str, list[tuple[list[Tree], list[Tree], list[Tree]]]] = {"gpu-board": []}
    models = list(dict.fromkeys(t.model_name for t in trees))
    for held in models:
        train = [t for t in trees if t.model_name != held]
        others = [m for m in models if m != held][:2]
        few = [gpu_scope(at_shape(trees, m, s)) for m, s in zip(others, shapes, strict=True)]
        target = [gpu_scope(t) for t in trees if t.model_name == held]
        out["gpu-board"].append((train, few, target))
    for name, source, dest in (("family BERT->GPT", BERT_LIKE, GPT_LIKE),
                               ("family GPT->BERT", GPT_LIKE, BERT_LIKE)):
        few = [at_shape(trees, m, s) for m, s in zip(dest[:2], shapes, strict=True)]
        keys = {t.key for t in few}
        out[name] = [([t for t in trees if t.model_name in source], few,
                      [t for t in trees if t.model_name in dest and t.key not in keys])]
    return out


def constant_factor(model: Any, few: list[Tree], target: list[Tree]) -> list[Tree]:
    """Predictions times the median ratio measured / predicted at the roots of ``few``."""
    scale = float(np.median([t.root.ground_truth_energy / p.root.predicted_energy
                             for t, p in zip(few, model.predict(few), strict=True)]))
    out = model.predict(target)
    for tree in out:
        for node in tree.nodes():
            node.predicted_energy *= scale
    return out


def run(folds: list[tuple[list[Tree], list[Tree], list[Tree]]],
        make: Callable[[], Any]) -> dict[str, dict[str, Any]]:
    """method -> pooled errors and acceptance over the folds."""
    pooled: dict[str, dict[str, list[float]]] = {}
    accepted: dict[str, list[bool]] = {}
    for train, few, target in folds:
        model = make().fit(train)
        calibrated = calibrate(model, few)
        try:
            check_improves(percentage_errors(few, model.predict(few)),
                           percentage_errors(few, calibrated.predict(few)))
            accepted.setdefault("irene calibrate", []).append(True)
        except CalibrationRefused:
            accepted.setdefault("irene calibrate", []).append(False)
        predictions = {"no calibration": model.predict(target),
                       "constant factor": constant_factor(model, few, target),
                       "power law per type": calibrate(model, few, form="power_law").predict(
                           target),
                       "irene calibrate": calibrated.predict(target)}
        for method, pred in predictions.items():
            paired = pair_predictions(target, pred)
            rows = pooled.setdefault(method, {k: [] for k in KINDS})
            for kind in KINDS:
                rows[kind].extend(np.abs(paired.error[paired.node_type == kind]).tolist())
    return {m: {"median": {k: float(np.median(v)) for k, v in rows.items()},
                "mean": {k: float(np.mean(v)) for k, v in rows.items()},
                "worst": float(max(rows["model"])),
                "accepted": accepted.get(m)} for m, rows in pooled.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    trees = read_trees(args.data)
    print(f"{len(trees)} trees; structure predictor StructureRegressor()\n")
    for protocol, shapes in PROTOCOLS.items():
        print(f"== calibration: {protocol} ==")
        print(f"{'scenario':<18}{'method':<20}{'median |error| %':>24}   "
              f"{'mean |error| %':>24}{'worst':>8}  accepted")
        print(f"{'':<38}" + "".join(f"{k:>8}" for k in KINDS) + "   "
              + "".join(f"{k:>8}" for k in KINDS) + f"{'tree':>8}")
        for name, folds in scenarios(trees, shapes).items():
            for method, r in run(folds, StructureRegressor).items():
                ok = "" if r["accepted"] is None else \
                    f"  {sum(r['accepted'])}/{len(r['accepted'])}"
                print(f"{name:<18}{method:<20}"
                      + "".join(f"{r['median'][k]:8.2f}" for k in KINDS) + "   "
                      + "".join(f"{r['mean'][k]:8.2f}" for k in KINDS)
                      + f"{r['worst']:8.2f}{ok}", flush=True)
            print()
    print(f"total wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
