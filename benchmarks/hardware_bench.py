"""Family-out accuracy of the hardware model on the public measurements, against the baselines.

    python benchmarks/hardware_bench.py [--starts 5] [--spread-family gpt-oss] [--per-family]

Uses the folds, cells and baselines of ``benchmarks/hardware_families.py`` (one family per fold,
never a single checkpoint; "GPU left out": the fit sees neither the family nor any row of that
GPU, which is predicted from its data sheet). The hardware model (:mod:`irene.hardware.fit`) is
refitted in every fold from its priors — one start point per fold — on every other family's rows
of v3, v2 and v1 together (each version its own runtime). Rows the hardware model cannot
describe (v1's encoder-decoder T5 and RNN RWKV checkpoints) are left out of every predictor's
cells, so all columns score the same rows; v3 rows with data-parallel attention are predicted
but never fitted. Then the spread over start points: the held-out family (``--spread-family``)
is predicted from ``--starts`` fits that differ only in their start point, and the range of its
median signed error is printed. ``--per-family``: the hardware model's family-out median
signed and absolute error per cell and held-out family (where a change helps or hurts; the
folds are the same, so nothing is tuned on a held-out row). Tunes nothing: the priors and the
model are fixed in code.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import hardware_families as hf  # noqa: E402

from irene.hardware.data import FitRow, all_rows  # noqa: E402
from irene.hardware.fit import fit, predict_rows  # noqa: E402

GPU_KEYS = {"H100": "H100", "B200": "B200", "A100-40GB": "A100", "A40": "A40"}


def key_of(source: str, model_id: str, task: str, energy: float) -> tuple:
    return (source, model_id, task, round(float(energy), 9))


def match(rows: Sequence[hf.Row], fit_rows: Sequence[FitRow]) -> tuple[list[hf.Row], dict]:
    """The harness rows the hardware model describes, and each one's FitRow."""
    index = {key_of(r.version, r.model_id, r.task, r.joules_per_token): r for r in fit_rows}
    kept, mapping = [], {}
    for r in rows:
        mine = index.get(key_of(r.source, r.model_id, r.task, r.energy))
        if mine is not None:
            mapping[id(r)] = mine
            kept.append(r)
    return kept, mapping


def hardware_predictor(mapping: dict, starts: int = 1, seed: int = 0) -> hf.Fit:
    """The hardware model as a harness predictor: ``fit(train) -> predict(test)``."""
    def fit_(train: Sequence[hf.Row]) -> hf.Predict:
        result = fit([mapping[id(r)] for r in train], starts=starts, seed=seed)

        def predict(test: Sequence[hf.Row]) -> np.ndarray:
            return predict_rows(result.best, [mapping[id(r)] for r in test])[1]
        return predict
    return fit_


def spread(rows: Sequence[hf.Row], mapping: dict, family: str, starts: int) -> None:
    """Median signed error of ``family`` held out, for each of ``starts`` start points."""
    train = [mapping[id(r)] for r in rows if r.family != family]
    test = [r for r in rows if r.family == family]
    result = fit(train, starts=starts, seed=1)
    measured = np.array([r.energy for r in test])
    signed = [float(np.median(100 * (predict_rows(f, [mapping[id(r)] for r in test])[1]
                                     / measured - 1))) for f in result.starts]
    costs = ", ".join(f"{c:.2f}" for c in result.costs)
    print(f"spread over {starts} start points, {family} held out: median signed error "
          f"{min(signed):+.1f} % to {max(signed):+.1f} % (objective {costs})")


def per_family(rows: Sequence[hf.Row], mapping: dict) -> None:
    """The hardware model's family-out errors per cell and held-out family: median signed %,
    median absolute % and rows."""
    pred = hf.predict_folds(hardware_predictor(mapping), rows, hf.family_folds(rows))
    print("hardware model, family-out, per held-out family: median signed % / median "
          "absolute % / rows")
    for cell, keep in hf.CELLS.items():
        parts = []
        for fam in sorted({rows[i].family for i in pred if keep(rows[i])}):
            err = np.array([100 * (pred[i] / rows[i].energy - 1) for i in pred
                            if keep(rows[i]) and rows[i].family == fam])
            parts.append(f"{fam} {np.median(err):+.0f}/{np.median(np.abs(err)):.0f}/{err.size}")
        print(f"  {cell:<16} " + ", ".join(parts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--spread-family", default="gpt-oss")
    parser.add_argument("--baselines", default=",".join(hf.BASELINES))
    parser.add_argument("--per-family", action="store_true",
                        help="also print the hardware model's errors per held-out family")
    args = parser.parse_args(argv)
    began = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = hf.load_all(hf.DEFAULT_V3, hf.DEFAULT_V2, hf.DEFAULT_V1)
        fit_rows = all_rows()
    kept, mapping = match(rows, fit_rows)
    left = len(rows) - len(kept)
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.node()}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"rows: {len(kept)} scored ({left} left out: not described by the hardware model)")
    predictors = {"hardware": hardware_predictor(mapping)}
    predictors.update({b: hf.BASELINES[b] for b in args.baselines.split(",") if b})
    results = {name: hf.evaluate(p, kept) for name, p in predictors.items()}
    print("family-out absolute % error of J/token: median/p90 (rows predicted)")
    hf.print_table(results)
    if args.per_family:
        per_family(kept, mapping)
    if args.starts > 1:
        spread(kept, mapping, args.spread_family, args.starts)
    print(f"took {time.time() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
