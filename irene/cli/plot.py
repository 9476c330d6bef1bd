"""``irene plot TREES... -o DIR``: PNG/SVG figures of trees."""

from __future__ import annotations

import argparse

from irene.cli import UserError
from irene.cli.options import (
    add_energy_option,
    add_json_option,
    print_result,
    print_synthetic_line,
    read_many,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot", help="write PNG/SVG figures",
        description="Write the figures that apply: energy per primitive type; energy vs "
                    "sequence length (several sequence lengths); predicted vs measured and the "
                    "error distribution (trees with both energies).")
    p.add_argument("trees", nargs="+", metavar="TREES.jsonl",
                   help="trees files, directories of them, or a built-in data set")
    p.add_argument("-o", "--output", default="figures", metavar="DIR",
                   help="output directory (default figures/)")
    p.add_argument("--format", choices=("png", "svg"), default="png")
    add_energy_option(p)
    add_json_option(p, quiet="the output directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from irene.report.plots import plot_all

    trees = read_many(args.trees)
    print_synthetic_line(trees)
    try:
        written = plot_all(trees, args.output, fmt=args.format, source=args.energy)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if not print_result(args, {"output": args.output, "written": [str(p) for p in written]},
                        args.output):
        for path in written:
            print(f"wrote {path}")
    return 0
