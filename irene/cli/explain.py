"""``irene explain TREES``: where the energy of one tree goes, in the terminal."""

from __future__ import annotations

import argparse

from irene.cli import UserError
from irene.cli.options import (
    add_energy_option,
    add_json_option,
    add_view_options,
    console,
    depth,
    print_result,
    read_input_trees,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain", help="print where the energy of one tree goes",
        description="Print the energy breakdown of one tree: every node's energy, its share of "
                    "its parent and of the whole model, measured energy and error where the "
                    "tree has ground truth, the top primitives and modules, and the share per "
                    "primitive type.")
    p.add_argument("trees", metavar="TREES.jsonl", help="trees file (or a built-in data set)")
    add_tree_choice(p)
    add_view_options(p)
    add_energy_option(p)
    add_json_option(p, quiet="the energy of the tree (J per call)")
    p.add_argument("--no-group", action="store_true",
                   help="list repeated layers one by one in the top lists")
    p.set_defaults(func=run)


def add_tree_choice(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tree", type=int, metavar="INDEX", help="0-based index of the tree")
    p.add_argument("--model", help="choose the tree by model name ...")
    p.add_argument("--batch-size", type=int, help="... batch size ...")
    p.add_argument("--seq-len", type=int, help="... and sequence length")


def run(args: argparse.Namespace) -> int:
    from irene.report import energy_for
    from irene.report.breakdown import breakdown_json, explain_tree
    from irene.report.select import select_tree
    from irene.report.terminal import render_breakdown

    trees = read_input_trees(args.trees, announce_synthetic=False)
    try:
        tree = select_tree(trees, index=args.tree, model=args.model,
                           batch_size=args.batch_size, seq_len=args.seq_len)
        breakdown = explain_tree(tree, source=args.energy, depth=depth(args), top=args.top,
                                 group_repeated=not args.no_group)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    from irene.report import training

    split = training.training_split(tree, source=breakdown.source, depth=depth(args) or 3) \
        if training.is_training_step(tree) else None
    data = breakdown_json(breakdown, note=energy_for(tree, breakdown.source))
    if split is not None:
        data["training"] = training.split_json(split, top=args.top)
    if not print_result(args, data, breakdown.total_j):
        render_breakdown(breakdown, console())
        if split is not None:
            training.render_training(split, console(), top=args.top)
    return 0
