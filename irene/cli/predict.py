"""``irene predict DATA OUT MODEL_DIR``: predicted energy on every node of trees."""

from __future__ import annotations

import argparse
from pathlib import Path

from irene.cli.options import (
    add_force_option,
    add_json_option,
    input_paths,
    print_result,
    read_input_trees,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict the energy of every node of trees",
                       description="Write DATA's trees to OUT with predicted_energy (J per "
                                   "call) on every node, from the predictor in MODEL_DIR.")
    p.add_argument("data", help="JSONL trees (features needed, energy not)")
    p.add_argument("out", help="JSONL output: the trees with predicted_energy on every node")
    p.add_argument("model_dir", help="a predictor written by 'irene train'")
    add_force_option(p)
    add_json_option(p, quiet="the mean predicted energy of the trees' models (J per call)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from irene.files import guard_output
    from irene.model import load_predictor
    from irene.model.persist import MODEL_FILES
    from irene.tree import write_trees

    inputs = [*input_paths([args.data]), *(Path(args.model_dir) / f for f in MODEL_FILES)]
    guard_output(args.out, kind="trees", inputs=inputs, force=args.force)
    model = load_predictor(args.model_dir)
    trees = read_input_trees(args.data)
    predicted = model.predict(trees)
    write_trees(predicted, args.out)
    roots = [t.root.predicted_energy for t in predicted]
    mean = sum(roots) / len(roots) if roots else 0.0
    if print_result(args, {"output": args.out, "trees": len(trees),
                           "energy_for": model.energy_for, "mean_model_energy_j": mean,
                           "model_energy_j": roots}, mean):
        return 0
    print(f"wrote {len(trees)} trees with predicted_energy to {args.out} "
          f"(energies for: {model.energy_for})")
    return 0
