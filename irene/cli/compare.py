"""``irene compare A B``: two models, configurations or trees side by side, module by module."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from irene.cli import UserError
from irene.cli.options import (
    add_energy_option,
    add_json_option,
    add_trace_options,
    console,
    depth,
    pair,
    print_result,
)

if TYPE_CHECKING:
    from irene.tree import Tree


def add_parser(sub: argparse._SubParsersAction) -> None:
    from irene.cli.options import positive_int

    p = sub.add_parser(
        "compare", help="compare two models, configurations or trees module by module",
        description="Compare A and B side by side. Each is a trees file (JSONL) or a model "
                    "(built-in name, directory or config.json; estimated with --predictor). "
                    "Options given once apply to both sides; given twice, to A then B: "
                    "`irene compare gpt2 gpt2 --seq-len 128 512 --batch-size 1 --predictor P`.")
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B")
    p.add_argument("--predictor", metavar="DIR", help="predictor for operands that are models")
    p.add_argument("--batch-size", type=positive_int, nargs="+", metavar="B")
    p.add_argument("--seq-len", type=positive_int, nargs="+", metavar="S")
    p.add_argument("--tree", type=int, nargs="+", metavar="INDEX",
                   help="tree index in a trees file")
    p.add_argument("--model", nargs="+", metavar="NAME", help="tree's model name in a trees file")
    p.add_argument("--depth", type=int, default=2,
                   help="levels of modules compared below the model (default 2; -1 = all)")
    p.add_argument("--figure", metavar="FILE.png|.svg", help="also draw the comparison")
    add_trace_options(p, schema=False)
    add_energy_option(p)
    add_json_option(p, quiet="B minus A, in J per call")
    p.set_defaults(func=run)


def is_trees_file(text: str) -> bool:
    """Whether a compare operand names a trees file (JSONL of trees) rather than a model."""
    from irene.files import file_kind

    path = Path(text)
    if not path.is_file():
        return False
    if path.suffix == ".jsonl" or path.name.endswith(".jsonl.gz"):
        return True
    try:
        return file_kind(path) == "trees"
    except (ValueError, json.JSONDecodeError):
        return False


def _side(operand: str, side: str, args: argparse.Namespace, index: int, out) -> Tree:
    from rich.markup import escape

    from irene.estimate import EstimateError, estimate_tree
    from irene.report.select import select_tree
    from irene.tree import read_trees

    picks = {name: pair(getattr(args, name), f"--{name.replace('_', '-')}")[index]
             for name in ("tree", "model", "batch_size", "seq_len")}
    if is_trees_file(operand):
        try:
            return select_tree(read_trees(operand), index=picks["tree"], model=picks["model"],
                               batch_size=picks["batch_size"], seq_len=picks["seq_len"])
        except ValueError as exc:
            raise UserError(f"{side} ({operand}): {exc}") from exc
    if not args.predictor:
        raise UserError(f"{side} ({operand!r}) is not a trees file, so it is taken as a model: "
                        "give --predictor DIR to estimate it")
    if picks["batch_size"] is None or picks["seq_len"] is None:
        raise UserError(f"{side} ({operand!r}) is a model: give --batch-size and --seq-len")
    out.print(f"estimating {side}: {escape(operand)} (batch {picks['batch_size']}, "
              f"seq {picks['seq_len']}) ...")
    try:
        return estimate_tree(operand, picks["batch_size"], picks["seq_len"], args.predictor,
                             device=args.device, dtype=args.dtype, attn=args.attn,
                             warn=lambda text: out.print(text, style="yellow", markup=False))
    except (EstimateError, ValueError) as exc:
        raise UserError(f"{side} ({operand}): {exc}") from exc


def run(args: argparse.Namespace) -> int:
    from irene.report.compare import compare_trees
    from irene.report.terminal import render_comparison

    out = console()
    if args.figure:
        from irene.files import guard_output

        kind = Path(args.figure).suffix.lstrip(".").lower()
        guard_output(args.figure, kind=kind, inputs=[args.a, args.b])
    tree_a = _side(args.a, "A", args, 0, out)
    tree_b = _side(args.b, "B", args, 1, out)
    try:
        comparison = compare_trees(tree_a, tree_b, source=args.energy, depth=depth(args))
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    label_a, label_b = labels(args.a, args.b, tree_a, tree_b)
    if not print_result(args, comparison_json(comparison, label_a, label_b), comparison.diff_j):
        render_comparison(comparison, label_a, label_b, out)
    if args.figure:
        from irene.report.plots import plot_comparison

        try:
            plot_comparison(comparison, args.figure, label_a=label_a, label_b=label_b)
        except ValueError as exc:
            raise UserError(str(exc)) from exc
        out.print(f"wrote {args.figure}")
    return 0


def comparison_json(comparison, label_a: str, label_b: str) -> dict:
    """The comparison as JSON: totals (J per call), B − A, B / A, the module rows and the
    per-primitive-type energies."""
    return {"a": {"label": label_a, "model": comparison.tree_a.model_name,
                  "source": comparison.source_a, "total_j": comparison.total_a},
            "b": {"label": label_b, "model": comparison.tree_b.model_name,
                  "source": comparison.source_b, "total_j": comparison.total_b},
            "diff_j": comparison.diff_j, "ratio": comparison.ratio,
            "modules": [{"key": r.key, "name": r.name, "depth": r.depth,
                         "type": r.instance_type, "energy_a_j": r.energy_a,
                         "energy_b_j": r.energy_b, "diff_j": r.diff_j, "ratio": r.ratio}
                        for r in comparison.rows],
            "types": [{"type": name, "energy_a_j": a, "energy_b_j": b}
                      for name, a, b in comparison.types]}


def labels(a: str, b: str, tree_a: Tree, tree_b: Tree) -> tuple[str, str]:
    """Short names for the two sides: what differs between them."""
    if tree_a.model_name != tree_b.model_name:
        return tree_a.model_name, tree_b.model_name
    if a != b:
        return Path(a).name, Path(b).name
    for attr, name in (("seq_len", "seq"), ("batch_size", "batch")):
        if getattr(tree_a, attr) != getattr(tree_b, attr):
            return f"{name} {getattr(tree_a, attr)}", f"{name} {getattr(tree_b, attr)}"
    return "A", "B"
