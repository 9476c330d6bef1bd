"""Fit the hardware model's parameters shipped in the package (irene/data/hardware_params.json).

Usage::

    python scripts/fit_hardware.py [--v3 datasets/mlenergy-v3/llm.csv]
        [--v2 datasets/mlenergy-v2/llm.csv] [--v1 datasets/mlenergy-v1/eager.csv]
        [--starts 3] [-o irene/data/hardware_params.json]

Reads only the public extracts (rebuilt by their scripts under ``scripts/``; the held-out
check of issue 21 — v2's google/gemma-2 and microsoft/Phi-3, every V100 row of v1 — is never
extracted, and a held-out row reaching the fit is refused), fits the hardware model
(:mod:`irene.hardware.fit`: regularised least squares toward data-sheet priors, each data
version its own runtime) from ``--starts`` start points, reports the spread of predictions
over the start points, and writes the JSON atomically with the data's licence, attribution,
citation, versions and the commit. Prints the file's SHA-256: record it as ``SHIPPED_SHA256``
in ``irene/hardware/params.py``. Bad input: one line naming the file / line / field, exit 2.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np

from irene.hardware.data import EXTRACTS, all_rows
from irene.hardware.fit import fit, predict_rows
from irene.hardware.params import SHIPPED_PATH, HardwareFile, save_hardware, trained_on
from irene.hardware.work import WorkArrays

SOURCES = {"v3": "ML.ENERGY Benchmark v3 (ml-energy/leaderboard; vLLM, H100 and B200)",
           "v2": "ML.ENERGY Leaderboard v2 (ml-energy/leaderboard-v2; vLLM 0.5.4, H100 and "
                 "A100-SXM4-40GB; google/gemma-2 and microsoft/Phi-3 held out)",
           "v1": "ML.ENERGY Leaderboard v1 (ml-energy/leaderboard-v2 at tag 2023-07-06; HF "
                 "transformers eager, batch 1, A100 and A40; V100 held out; decoder rows)"}


def provenance(extract: Path) -> dict[str, object]:
    """The source repository and commit recorded beside an extract, if any."""
    meta = extract.with_name(extract.stem + ".provenance.json")
    try:
        info = json.loads(meta.read_text())
    except (OSError, ValueError):
        return {"source_commit": "unknown (no provenance file beside the extract)"}
    return {k: info[k] for k in ("source_repository", "source_commit", "source_rev")
            if k in info}


def git_commit() -> str:
    """The commit of this checkout (the code that fitted), or 'unknown'."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def fit_inputs(args: argparse.Namespace) -> dict[str, Path]:
    """The extract paths this run reads (the only inputs of the fit)."""
    return {v: Path(getattr(args, v)) for v in ("v3", "v2", "v1")
            if Path(getattr(args, v)).exists()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for version, path in EXTRACTS.items():
        parser.add_argument(f"--{version}", default=str(path), help=f"the {version} extract")
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("-o", "--output", type=Path, default=SHIPPED_PATH)
    args = parser.parse_args(argv)
    inputs = fit_inputs(args)
    if "v3" not in inputs:
        print(f"{args.v3}: missing (rebuild it with scripts/build_mlenergy_extract.py)",
              file=sys.stderr)
        return 2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows = all_rows({k: str(v) for k, v in inputs.items()})
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    arrays = WorkArrays.of([r.work for r in rows])
    result = fit(rows, starts=args.starts, arrays=arrays)
    predictions = np.array([predict_rows(f, rows, arrays)[1] for f in result.starts])
    spread = predictions.max(0) / predictions.min(0) - 1.0
    measured = np.array([r.joules_per_token for r in rows])
    err = 100 * np.abs(predictions[0] / measured - 1)
    data = {v: {"name": SOURCES[v], "rows": sum(r.version == v for r in rows),
                **provenance(p)} for v, p in inputs.items()}
    info = {"commit": git_commit(), "starts": args.starts, "costs": result.costs,
            "rows": len(rows), "method": "regularised least squares toward data-sheet priors "
            "(irene/hardware/fit.py)",
            "start_spread_pct": {"median": float(100 * np.median(spread)),
                                 "max": float(100 * spread.max())},
            "in_sample_abs_pct_error": {"median": float(np.median(err)),
                                        "p90": float(np.percentile(err, 90))}}
    digest = save_hardware(HardwareFile(result.best, trained_on(rows), data, info), args.output)
    print(f"{len(rows)} rows, in-sample J/token error median {info['in_sample_abs_pct_error']}"
          f"; spread over {args.starts} starts: {info['start_spread_pct']}")
    print(f"wrote {args.output}\nsha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
