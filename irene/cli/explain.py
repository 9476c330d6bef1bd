"""``irene estimate | explain | report | plot | compare``: explaining where the energy goes.

- ``estimate MODEL --batch-size B --seq-len S --predictor DIR``: trace the model (features only,
  no meter), predict every node, print the breakdown;
- ``explain TREES.jsonl``: the breakdown of one tree (predicted energy, or measured energy when
  the tree has no prediction) in the terminal;
- ``report TREES.jsonl -o report.html``: one self-contained HTML page;
- ``plot TREES.jsonl -o DIR``: PNG/SVG figures;
- ``compare A B``: two trees files, models or configurations side by side, module by module.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from irene.cli import UserError
from irene.tree import FEATURE_FIELDS, Tree, read_trees, write_trees

#: features only a GPU trace can supply (utilisation and clocks sampled on the GPU)
GPU_FEATURES = ("gpu", "gpu_mem", "gpu_clk", "gpu_mem_clk")
#: features measured by running the nodes (the tracer's ``timing=True``)
TIMED_FEATURES = ("times_mean", "cpu", "mem")
#: the GPU's own energy counter: only a measured trace (with an NVML meter) has it
METER_FEATURES = ("gpu_energy_mean",)


def _console():
    """A rich console; 120 columns when the output is not a terminal (files, pipes)."""
    from rich.console import Console

    wide = sys.stdout.isatty() or "COLUMNS" in os.environ
    return Console(width=None if wide else 120, highlight=False)


def _print_synthetic_line(trees: list[Tree]) -> None:
    """One highlighted line when ``trees`` are not real measurements (synthetic or simulated)."""
    from irene.report.terminal import synthetic_line

    line = synthetic_line(trees)
    if line is not None:
        _console().print(line)


def _user_error(exc: Exception) -> UserError:
    return UserError(str(exc))


# --------------------------------------------------------------------------------------------
# choosing trees


def _read_all(paths: list[str]) -> list[Tree]:
    trees: list[Tree] = []
    for path in paths:
        trees.extend(read_trees(path))
    return trees


def _select(trees: list[Tree], args: argparse.Namespace) -> Tree:
    from irene.report.breakdown import select_tree

    try:
        return select_tree(trees, index=args.tree, model=args.model,
                           batch_size=args.batch_size, seq_len=args.seq_len)
    except ValueError as exc:
        raise _user_error(exc) from exc


# --------------------------------------------------------------------------------------------
# explain


def run_explain(args: argparse.Namespace) -> int:
    from irene.report.breakdown import explain_tree
    from irene.report.terminal import render_breakdown

    tree = _select(read_trees(args.trees), args)
    try:
        breakdown = explain_tree(tree, source=args.energy, depth=args.depth, top=args.top,
                                 group_repeated=not args.no_group)
    except ValueError as exc:
        raise _user_error(exc) from exc
    render_breakdown(breakdown, _console())
    return 0


# --------------------------------------------------------------------------------------------
# report and plot


def run_report(args: argparse.Namespace) -> int:
    from irene.report.html import write_report

    trees = _read_all(args.trees)
    _print_synthetic_line(trees)
    try:
        write_report(trees, args.output, title=args.title, source=args.energy, top=args.top,
                     origin=", ".join(args.trees))
    except ValueError as exc:
        raise _user_error(exc) from exc
    size = Path(args.output).stat().st_size
    print(f"wrote {args.output} ({len(trees)} trees, {size / 1024:.0f} KiB); open it in any "
          f"browser: {Path(args.output).resolve().as_uri()}")
    return 0


def run_plot(args: argparse.Namespace) -> int:
    from irene.report.plots import plot_all

    trees = _read_all(args.trees)
    _print_synthetic_line(trees)
    try:
        written = plot_all(trees, args.output, fmt=args.format, source=args.energy)
    except ValueError as exc:
        raise _user_error(exc) from exc
    for path in written:
        print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------------------------
# estimate


def unsupplied_features(required: list[str], device: str) -> dict[str, str]:
    """The features a predictor reads that a trace on ``device`` cannot supply, with the reason.

    Static features (parameters, FLOPs, bytes, batch size, sequence length) are always known;
    ``times_mean``/``cpu``/``mem`` come from timing the nodes here; GPU utilisation and clocks
    need a CUDA device; ``gpu_energy_mean`` needs a measured trace (an NVML meter).
    """
    on_gpu = device.startswith("cuda")
    reasons = {}
    for name in required:
        if name in GPU_FEATURES and not on_gpu:
            reasons[name] = "GPU utilisation/clock: needs a CUDA device (this trace is on " \
                            f"{device!r})"
        elif name in METER_FEATURES:
            reasons[name] = "the GPU's own energy reading: only a measured trace has it"
    return reasons


def zero_features(tree: Tree, required: list[str]) -> list[str]:
    """Node features the predictor reads that are 0 on every node of ``tree`` (not supplied)."""
    node_fields = [n for n in required if n in FEATURE_FIELDS]
    nodes = list(tree.nodes())
    return [n for n in node_fields if all(node.features[n] == 0 for node in nodes)]


def _load_predictor(directory: str):
    try:
        from irene.model import IreneRegressor
    except ImportError as exc:  # the predictor package is missing from this install
        raise UserError(f"the predictor (irene.model) is not available: {exc}") from exc
    if not Path(directory).is_dir():
        raise UserError(f"predictor directory {directory!r} does not exist (train one with "
                        "`irene train TREES.jsonl -o DIR`)")
    try:
        return IreneRegressor.load(directory)
    except (ValueError, OSError) as exc:
        raise UserError(f"cannot load the predictor in {directory!r}: {exc}") from exc


def estimate_tree(model: str, batch_size: int, seq_len: int, predictor_dir: str, *,
                  device: str = "cpu", dtype: str = "float32", attn: str = "eager",
                  progress: bool = True, warn=print) -> Tree:
    """Trace ``model`` and predict the energy of every node with the predictor in
    ``predictor_dir``; returns the predicted tree (J per call on every node).

    Refuses (UserError) when the predictor reads features this trace cannot supply, instead of
    predicting from zeros. Timing is switched on only when the predictor reads measured features
    (times_mean, cpu, mem); ``warn`` receives a note that those come from this machine.
    """
    predictor = _load_predictor(predictor_dir)
    required = predictor.required_features()
    missing = unsupplied_features(required, device)
    if missing:
        listing = "; ".join(f"{k} ({v})" for k, v in missing.items())
        raise UserError(
            f"the predictor in {predictor_dir} reads feature(s) this machine cannot supply: "
            f"{listing}. Predicting with them set to 0 would be meaningless. Use a predictor "
            "trained on model_specs features only (`irene train TREES --set "
            "'feature_sets=[\"model_specs\"]'`), or "
            "trace and measure on the hardware the predictor was trained for.")
    timing = any(name in TIMED_FEATURES for name in required)
    if timing:
        warn(f"note: the predictor reads {sorted(set(required) & set(TIMED_FEATURES))}, "
             "measured here by timing every node; the estimate is only meaningful if the "
             "predictor was trained on this kind of machine.")
    try:
        from irene.tracing import trace_model
    except ImportError as exc:
        raise UserError(f"the tracer (irene.tracing) is not available: {exc}") from exc
    try:
        tree = trace_model(model, batch_size, seq_len, device=device, dtype=dtype, attn=attn,
                           timing=timing, progress=progress)
    except ValueError as exc:  # unknown model, sequence too long, bad dtype ...
        raise _user_error(exc) from exc
    unavailable = sorted(set(required) & set(tree.meta.get("features_unavailable", [])))
    zeros = zero_features(tree, required)
    if unavailable or zeros:
        raise UserError(
            f"the trace of {model} has no value for feature(s) {sorted(set(unavailable + zeros))}"
            f" that the predictor in {predictor_dir} reads; refusing to predict from zeros")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predicted = predictor.predict([tree])[0]
    for item in caught:  # e.g. primitive types unseen in training: one readable line each
        warn(f"warning: {item.message}")
    return predicted


def run_estimate(args: argparse.Namespace) -> int:
    from irene.report.breakdown import explain_tree
    from irene.report.terminal import render_breakdown

    console = _console()
    tree = estimate_tree(args.model_name, args.batch_size, args.seq_len, args.predictor,
                         device=args.device, dtype=args.dtype, attn=args.attn,
                         warn=lambda text: console.print(text, style="yellow"))
    render_breakdown(explain_tree(tree, source="predicted", depth=args.depth, top=args.top),
                     console)
    if args.output:
        write_trees([tree], args.output)
        console.print(f"wrote the predicted tree to {args.output}")
    if args.html:
        from irene.report.html import write_report

        write_report([tree], args.html)
        console.print(f"wrote {args.html}")
    return 0


# --------------------------------------------------------------------------------------------
# compare


def is_trees_file(text: str) -> bool:
    """Whether a compare operand names a trees file (JSONL of trees) rather than a model."""
    path = Path(text)
    if not path.is_file():
        return False
    if path.suffix == ".jsonl":
        return True
    try:
        with open(path, encoding="utf-8") as handle:
            first = next((line for line in handle if line.strip()), "")
        return "frontend_tree" in json.loads(first)
    except (ValueError, UnicodeDecodeError):
        return False


def _pair(values: list[Any] | None, flag: str) -> tuple[Any, Any]:
    """``--flag X`` applies to both sides, ``--flag X Y`` gives A then B."""
    if not values:
        return None, None
    if len(values) > 2:
        raise UserError(f"{flag} takes one value (both sides) or two (A then B), "
                        f"got {len(values)}")
    return values[0], values[-1]


def _compare_side(operand: str, side: str, args: argparse.Namespace, index: int,
                  console) -> Tree:
    from irene.report.breakdown import select_tree

    picks = {name: _pair(getattr(args, name), f"--{name.replace('_', '-')}")[index]
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
    console.print(f"estimating {side}: {operand} (batch {picks['batch_size']}, "
                  f"seq {picks['seq_len']}) ...")
    return estimate_tree(operand, picks["batch_size"], picks["seq_len"], args.predictor,
                         device=args.device, dtype=args.dtype, attn=args.attn,
                         warn=lambda text: console.print(text, style="yellow"))


def run_compare(args: argparse.Namespace) -> int:
    from irene.report.breakdown import compare_trees
    from irene.report.terminal import render_comparison

    console = _console()
    tree_a = _compare_side(args.a, "A", args, 0, console)
    tree_b = _compare_side(args.b, "B", args, 1, console)
    try:
        comparison = compare_trees(tree_a, tree_b, source=args.energy, depth=args.depth)
    except ValueError as exc:
        raise _user_error(exc) from exc
    label_a, label_b = _labels(args.a, args.b, tree_a, tree_b)
    render_comparison(comparison, label_a, label_b, console)
    if args.figure:
        from irene.report.plots import plot_comparison

        plot_comparison(comparison, args.figure, label_a=label_a, label_b=label_b)
        console.print(f"wrote {args.figure}")
    return 0


def _labels(a: str, b: str, tree_a: Tree, tree_b: Tree) -> tuple[str, str]:
    """Short names for the two sides: what differs between them."""
    if tree_a.model_name != tree_b.model_name:
        return tree_a.model_name, tree_b.model_name
    if a != b:
        return Path(a).name, Path(b).name
    for attr, name in (("seq_len", "seq"), ("batch_size", "batch")):
        if getattr(tree_a, attr) != getattr(tree_b, attr):
            return f"{name} {getattr(tree_a, attr)}", f"{name} {getattr(tree_b, attr)}"
    return "A", "B"


# --------------------------------------------------------------------------------------------
# parsers


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _add_view_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--depth", type=int, default=3,
                        help="levels of the tree shown below the model (default 3; -1 = all)")
    parser.add_argument("--top", type=_positive_int, default=10,
                        help="how many top primitives and modules to list (default 10)")


def _add_energy_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--energy", choices=("auto", "predicted", "measured"), default="auto",
                        help="which energy to explain: predicted_energy, ground_truth_energy, "
                             "or auto (predicted if present, else measured; the default)")


def _add_trace_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="where to trace (cpu, cuda, cuda:1)")
    parser.add_argument("--dtype", default="float32",
                        choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--attn", default="eager", choices=("eager", "sdpa"),
                        help="attention implementation (default eager)")


def _depth(args: argparse.Namespace) -> argparse.Namespace:
    if getattr(args, "depth", None) is not None and args.depth < 0:
        args.depth = None
    return args


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register estimate, explain, report, plot and compare."""
    p = subparsers.add_parser(
        "estimate", help="trace a model and predict where its energy goes",
        description="Trace MODEL (features only, no meter) at one batch size and sequence "
                    "length, predict every node with a trained predictor and print the "
                    "breakdown.")
    p.add_argument("model_name", metavar="MODEL",
                   help="built-in model name (see `irene models`), a directory with "
                        "config.json, or a config.json")
    p.add_argument("--batch-size", type=_positive_int, required=True)
    p.add_argument("--seq-len", type=_positive_int, required=True)
    p.add_argument("--predictor", required=True, metavar="DIR",
                   help="a model directory written by `irene train`")
    _add_trace_options(p)
    _add_view_options(p)
    p.add_argument("-o", "--output", metavar="TREES.jsonl",
                   help="also save the predicted tree (JSONL)")
    p.add_argument("--html", metavar="REPORT.html", help="also write an HTML report")
    p.set_defaults(func=lambda a: run_estimate(_depth(a)))

    p = subparsers.add_parser(
        "explain", help="print where the energy of one tree goes",
        description="Print the energy breakdown of one tree: every node's energy, its share of "
                    "its parent and of the whole model, measured energy and error where the "
                    "tree has ground truth, the top primitives and modules, and the share per "
                    "primitive type.")
    p.add_argument("trees", metavar="TREES.jsonl")
    p.add_argument("--tree", type=int, metavar="INDEX", help="0-based index of the tree")
    p.add_argument("--model", help="choose the tree by model name ...")
    p.add_argument("--batch-size", type=int, help="... batch size ...")
    p.add_argument("--seq-len", type=int, help="... and sequence length")
    _add_view_options(p)
    _add_energy_option(p)
    p.add_argument("--no-group", action="store_true",
                   help="list repeated layers one by one in the top lists")
    p.set_defaults(func=lambda a: run_explain(_depth(a)))

    p = subparsers.add_parser(
        "report", help="write a self-contained HTML report",
        description="Write one HTML file (no network needed to open it) with an interactive "
                    "breakdown of every tree, the share per primitive type, and predicted vs "
                    "measured tables where the trees have ground truth.")
    p.add_argument("trees", nargs="+", metavar="TREES.jsonl")
    p.add_argument("-o", "--output", default="report.html", metavar="REPORT.html",
                   help="where to write the page (default report.html)")
    p.add_argument("--title", help="the page title")
    p.add_argument("--top", type=_positive_int, default=10,
                   help="how many top primitives and modules to list (default 10)")
    _add_energy_option(p)
    p.set_defaults(func=run_report)

    p = subparsers.add_parser(
        "plot", help="write PNG/SVG figures",
        description="Write the figures that apply: energy per primitive type; energy vs "
                    "sequence length (several sequence lengths); predicted vs measured and the "
                    "error distribution (trees with both energies).")
    p.add_argument("trees", nargs="+", metavar="TREES.jsonl")
    p.add_argument("-o", "--output", default="figures", metavar="DIR",
                   help="output directory (default figures/)")
    p.add_argument("--format", choices=("png", "svg"), default="png")
    _add_energy_option(p)
    p.set_defaults(func=run_plot)

    p = subparsers.add_parser(
        "compare", help="compare two models, configurations or trees module by module",
        description="Compare A and B side by side. Each is a trees file (JSONL) or a model "
                    "(built-in name, directory or config.json; estimated with --predictor). "
                    "Options given once apply to both sides; given twice, to A then B: "
                    "`irene compare gpt2 gpt2 --seq-len 128 512 --batch-size 1 --predictor P`.")
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B")
    p.add_argument("--predictor", metavar="DIR", help="predictor for operands that are models")
    p.add_argument("--batch-size", type=_positive_int, nargs="+", metavar="B")
    p.add_argument("--seq-len", type=_positive_int, nargs="+", metavar="S")
    p.add_argument("--tree", type=int, nargs="+", metavar="INDEX",
                   help="tree index in a trees file")
    p.add_argument("--model", nargs="+", metavar="NAME", help="tree's model name in a trees file")
    p.add_argument("--depth", type=int, default=2,
                   help="levels of modules compared below the model (default 2; -1 = all)")
    p.add_argument("--figure", metavar="FILE.png|.svg", help="also draw the comparison")
    _add_trace_options(p)
    _add_energy_option(p)
    p.set_defaults(func=lambda a: run_compare(_depth(a)))
