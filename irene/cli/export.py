"""``irene export TREES... -o nodes.csv``: one row per node with its features and energies."""

from __future__ import annotations

import argparse

from irene.cli import UserError
from irene.cli.options import (
    add_force_option,
    add_json_option,
    input_paths,
    print_result,
    read_many,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a table with one row per node (CSV or JSONL)",
                       description="Write every node of the trees as one row: its tree and "
                                   "settings, scope, path, type, features, measured and "
                                   "predicted energy (J) and error (%%). CSV opens in any "
                                   "spreadsheet; in Python: irene.export.nodes_dataframe.")
    p.add_argument("trees", nargs="+", metavar="TREES.jsonl",
                   help="trees files, directories of them, or a built-in data set")
    p.add_argument("-o", "--output", required=True, metavar="NODES.csv|NODES.jsonl")
    add_force_option(p)
    add_json_option(p, quiet="the path of the table written")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from irene.export import write_node_table
    from irene.files import guard_output

    kind = "json" if args.output.endswith(".jsonl") else "csv"
    if not (args.output.endswith(".csv") or args.output.endswith(".jsonl")):
        raise UserError(f"{args.output}: the table is written as .csv or .jsonl")
    guard_output(args.output, kind=kind, inputs=input_paths(args.trees), force=args.force)
    trees = read_many(args.trees)
    rows = write_node_table(trees, args.output)
    if not print_result(args, {"output": args.output, "rows": rows, "trees": len(trees)},
                        args.output):
        print(f"wrote {rows} node rows of {len(trees)} trees to {args.output}")
    return 0
