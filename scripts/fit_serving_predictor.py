"""Fit the serving predictor shipped in the package (irene/data/serving_vllm.json).

Usage::

    python scripts/fit_serving_predictor.py datasets/mlenergy-v3/llm.csv \\
        [-o irene/data/serving_vllm.json]

Reads the ML.ENERGY v3 extract (rebuilt by ``scripts/build_mlenergy_extract.py``; never
committed), fits one set of time and energy parameters per GPU model on all its rows (see
``irene/serving/model.py``), and writes the predictor JSON atomically with the data's licence,
attribution and citation. Prints the file's SHA-256: record it as ``SHIPPED_SHA256`` in
``irene/serving/predictor.py`` when replacing the shipped file (a file that does not match is
refused). Bad input: one line naming the file / line / field, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from irene.serving.data import MeasurementError, read_measurements, steps_of
from irene.serving.predictor import SHIPPED_PATH, save_predictor
from irene.serving.training import fit_predictor


def source_commit(extract: Path) -> str:
    """The leaderboard commit recorded in the extract's provenance file, if any."""
    meta = extract.with_name(extract.stem + ".provenance.json")
    try:
        return f"ml-energy/leaderboard@{json.loads(meta.read_text())['source_commit']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "ml-energy/leaderboard (commit unknown: no provenance file beside the extract)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("extract", type=Path, help="datasets/mlenergy-v3/llm.csv")
    parser.add_argument("-o", "--output", type=Path, default=SHIPPED_PATH)
    args = parser.parse_args(argv)
    try:
        from tqdm import tqdm

        rows = read_measurements(args.extract)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            steps = steps_of(rows, progress=lambda rs: tqdm(rs, desc="decode steps",
                                                            unit="row"))
    except MeasurementError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    predictor = fit_predictor(rows, steps, source=source_commit(args.extract))
    digest = save_predictor(predictor, args.output)
    for gpu, fit in predictor.fits.items():
        for kind, values in (("time", fit.time), ("energy", fit.energy)):
            shown = {k: float(f"{v:.4g}") for k, v in values.items()}
            print(f"{gpu} ({fit.origin}) {kind}: {json.dumps(shown)}")
    print(f"wrote {args.output} (sha256 {digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
