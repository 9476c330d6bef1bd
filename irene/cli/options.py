"""Argument types and options shared by several commands, and reading their inputs."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from irene.cli.errors import UserError

if TYPE_CHECKING:
    from irene.tree import Tree

# --------------------------------------------------------------------------------------------
# argument types


def positive_int(text: str) -> int:
    """An integer >= 1 (argparse type)."""
    return _int_at_least(text, 1, "must be a positive integer")


def positive_number(text: str) -> float:
    """A finite number > 0 (argparse type)."""
    return _number_in(text, float("inf"))


def number_at_most(limit: float):
    """An argparse type: a finite number > 0 and at most ``limit`` (inf, nan, 1e308 and such
    are refused by the parser, before any work)."""
    def parse(text: str) -> float:
        return _number_in(text, limit)

    parse.__name__ = "number"
    return parse


def _number_in(text: str, limit: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    if value > limit:
        raise argparse.ArgumentTypeError(f"must be at most {limit:g}, got {text}")
    return value


def dimension(text: str) -> int:
    """A batch size, sequence length, token count or concurrency: an integer from 1 to
    :data:`irene.limits.MAX_DIMENSION` (argparse type)."""
    from irene.limits import MAX_DIMENSION

    return _int_between(text, 1, MAX_DIMENSION)


def context_length(text: str) -> int:
    """A KV-cache length: an integer from 0 to :data:`irene.limits.MAX_DIMENSION`."""
    from irene.limits import MAX_DIMENSION

    return _int_between(text, 0, MAX_DIMENSION)


def _int_between(text: str, low: int, high: int) -> int:
    message = f"must be a positive integer (at most {high})" if low == 1 else \
        f"must be an integer from {low} to {high}"
    value = _int_at_least(text, low, message)
    if value > high:
        raise argparse.ArgumentTypeError(f"{message}, got {text}")
    return value


def _int_at_least(text: str, low: int, message: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{message}, got {text}")
    return value


def int_list(text: str) -> list[int]:
    """Comma-separated integers from 1 to :data:`irene.limits.MAX_DIMENSION` (argparse type):
    ``"8,16,32"``."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") \
            from exc
    from irene.limits import MAX_DIMENSION

    if not values or any(not 1 <= v <= MAX_DIMENSION for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers (at most "
                                         f"{MAX_DIMENSION}), got {text!r}")
    return values


def pair(values: list[Any] | None, flag: str) -> tuple[Any, Any]:
    """``--flag X`` applies to both sides, ``--flag X Y`` gives A then B."""
    if not values:
        return None, None
    if len(values) > 2:
        raise UserError(f"{flag} takes one value (both sides) or two (A then B), "
                        f"got {len(values)}")
    return values[0], values[-1]


def depth(args: argparse.Namespace) -> int | None:
    """``--depth``: -1 (or any negative value) means every level (None)."""
    value = getattr(args, "depth", None)
    return None if value is None or value < 0 else value


# --------------------------------------------------------------------------------------------
# options


def add_view_options(parser: argparse.ArgumentParser, *, default_depth: int = 3) -> None:
    parser.add_argument("--depth", type=int, default=default_depth,
                        help=f"levels of the tree shown below the model (default {default_depth};"
                             " -1 = all)")
    parser.add_argument("--top", type=positive_int, default=10,
                        help="how many top primitives and modules to list (default 10)")


def add_energy_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--energy", choices=("auto", "predicted", "measured"), default="auto",
                        help="which energy to explain: predicted_energy, ground_truth_energy, "
                             "or auto (predicted if present, else measured; the default)")


def add_trace_options(parser: argparse.ArgumentParser, *, schema: bool = True,
                      extra_dtypes: Sequence[str] = (), dtype_help: str | None = None) -> None:
    """--device, --dtype, --attn (and --schema) for commands that trace a model
    (``extra_dtypes``: further --dtype values a command accepts, e.g. served weight formats)."""
    from irene.schema import ATTN_IMPLEMENTATIONS, DEFAULT_SCHEMA, DTYPES, SCHEMAS

    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--dtype", default=None if extra_dtypes else "float32",
                        choices=(*DTYPES, *extra_dtypes), help=dtype_help)
    parser.add_argument("--attn", default="eager", choices=ATTN_IMPLEMENTATIONS,
                        help="eager: QKᵀ, softmax and ·V as separate primitives (default); sdpa: "
                             "one fused scaled_dot_product_attention primitive")
    if schema:
        parser.add_argument("--schema", default=None, choices=tuple(SCHEMAS),
                            help=f"feature schema of the tree (default {DEFAULT_SCHEMA}; "
                                 "irene2021 = IrEne's published trees)")


#: the workloads a tree can describe (root metadata ``phase``) that these commands trace
def add_force_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true",
                        help="replace an existing output file of another kind")


def add_json_option(parser: argparse.ArgumentParser, *, quiet: str) -> None:
    """``--json`` (the result as JSON) and ``--quiet`` (only ``quiet``, the one number or path
    the command is asked for), one or the other: every command takes both. While the command
    runs, :func:`result_stdout` keeps stdout for the result alone."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--json", action="store_true",
                       help="print the result as JSON (machine-readable) on stdout instead of "
                            "text; notes and progress go to stderr")
    group.add_argument("--quiet", action="store_true",
                       help=f"print only {quiet}, on one line, nothing else on stdout")


def read_user_json(path: str | os.PathLike) -> Any:
    """A JSON file a user hands in, read bounded (:func:`irene.checks.read_document`);
    InputError with one line naming the file (and line) otherwise."""
    from irene.checks import read_document

    return read_document(path, yaml_suffixes=()).data


def add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--estimator", choices=("irene", "structure"), default=None,
                        help="irene (default): the IrEne method, best with readings taken on "
                             "the hardware; structure: from the model's structure alone "
                             "(FLOPs, bytes, shapes), to predict before running on the hardware")
    parser.add_argument("--config_filepath", "--config", dest="config_filepath",
                        help="JSON configuration (e.g. configs/irene.json); default: irene's best")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one configuration key; VALUE is JSON "
                             "(--set epochs=50 --set 'feature_sets=[\"model_specs\"]'), "
                             "repeatable")


def check_outputs(args: argparse.Namespace) -> None:
    """``irene estimate``'s -o and --html: refuse outputs that would destroy data, before any
    work: an existing trees file is only replaced with --force (estimate writes one tree)."""
    from irene.files import file_kind, guard_output

    if args.output:
        guard_output(args.output, kind="trees", force=args.force)
        if file_kind(args.output) == "trees" and not args.force:
            raise UserError(f"{args.output}: already holds trees; estimate writes one tree and "
                            "would replace them: give another path, or --force")
    if args.html:
        guard_output(args.html, kind="html", force=args.force)


# --------------------------------------------------------------------------------------------
# reading inputs


def load_config(path: str | None, overrides: Sequence[str] = (),
                estimator: str | None = None) -> tuple[str, dict[str, Any]]:
    """The predictor class name and its settings from a JSON file (``"estimator"`` key allowed),
    ``KEY=VALUE`` overrides (values are JSON; a bare word is taken as a string) and the
    ``--estimator`` flag, checked: an InputError naming the file, line and setting, or the
    option (``--set: KEY``)."""
    from irene.checks import Checker, describe, read_document
    from irene.model import ESTIMATORS

    config: dict[str, Any] = {}
    if path:
        config, file_check, _ = read_document(path, what="configuration", yaml_suffixes=())
        if not isinstance(config, dict):
            raise file_check.error((), f"must be a JSON object, got {describe(config)}")
        config = {k: v for k, v in config.items() if not k.startswith("_")}  # comments
    sets: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set {item!r}: expected KEY=VALUE")
        sets[key] = _json_or_word(value, key)
    chosen = estimator or sets.pop("estimator", config.pop("estimator", "irene"))
    config.pop("estimator", None)
    sets.pop("estimator", None)
    if chosen not in ESTIMATORS:
        raise UserError(f"{path or '--set'}: estimator must be one of {sorted(ESTIMATORS)}, "
                        f"got {chosen!r}")
    if path:  # the file's settings, named by line; then with the --set values
        ESTIMATORS[chosen].check_params(config, file_check)
    config.update(sets)
    ESTIMATORS[chosen].check_params(config, Checker("--set", {}))
    return chosen, config


def _json_or_word(text: str, key: str) -> Any:
    """``--set`` value: JSON, or a bare word (``leaf_fit=log``) as a string. A bare word that is
    a feature set given where a list is expected gets a hint."""
    from irene.files import loads_json

    try:
        return loads_json(text)
    except json.JSONDecodeError:
        if key in ("feature_sets", "leaf_features") and text.isidentifier() \
                and text not in ("auto", "all"):
            raise UserError(f"--set {key}={text}: {key} is a list; write it as JSON: "
                            f"--set '{key}=[\"{text}\"]'") from None
        if not text.replace("_", "").replace("-", "").isalnum():
            raise UserError(f"--set {key}={text}: not valid JSON (quote strings and lists as "
                            "JSON)") from None
        return text
    except ValueError as exc:  # nested too deeply
        raise UserError(f"--set {key}=...: {exc}") from None


def read_input_trees(name: str, *, announce_synthetic: bool = True) -> list[Tree]:
    """The trees of a file, a directory of ``*.jsonl`` files, or a built-in data set name
    (``synthetic-demo``); prints the synthetic-data note when they are not measurements."""
    from irene.datasets import SYNTHETIC_NOTE, is_synthetic, resolve_dataset
    from irene.tree import read_tree_files

    trees = read_tree_files([resolve_dataset(name)])
    if announce_synthetic and is_synthetic(trees):
        print(SYNTHETIC_NOTE, file=sys.stderr)
    return trees


def read_many(names: Sequence[str]) -> list[Tree]:
    """The trees of several inputs (see :func:`read_input_trees`), in order."""
    trees: list[Tree] = []
    for name in names:
        trees.extend(read_input_trees(name, announce_synthetic=False))
    return trees


def input_paths(names: Sequence[str]) -> list[str]:
    """The existing paths among ``names`` (built-in data set names resolve to package files)."""
    from irene.datasets import resolve_dataset

    out = []
    for name in names:
        try:
            out.append(os.fspath(resolve_dataset(name)))
        except FileNotFoundError:
            continue
    return out


def console(*, stderr: bool = False):
    """A rich console (on stderr with ``stderr``); 120 columns when the output is not a
    terminal (files, pipes)."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    wide = stream.isatty() or "COLUMNS" in os.environ
    return Console(width=None if wide else 120, highlight=False, stderr=stderr)


def print_synthetic_line(trees: list[Tree]) -> None:
    """One highlighted line when ``trees`` are not real measurements (synthetic or simulated)."""
    from irene.report.terminal import synthetic_line

    line = synthetic_line(trees)
    if line is not None:
        console().print(line)


#: the streams command results go to (innermost last) while :func:`result_stdout` sends
#: everything else printed on stdout to stderr
_RESULT_STREAMS: list[TextIO] = []


@contextlib.contextmanager
def result_stdout(args: argparse.Namespace) -> Iterator[None]:
    """Run a command: with ``--json`` or ``--quiet`` its stdout carries the result alone
    (:func:`print_json`, :func:`print_result`); anything else printed (notes, tables a library
    prints) goes to stderr."""
    if not (getattr(args, "json", False) or getattr(args, "quiet", False)):
        yield
        return
    _RESULT_STREAMS.append(sys.stdout)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _RESULT_STREAMS.pop()


def result_stream() -> TextIO:
    """Where a command's result goes: stdout as it was before :func:`result_stdout`."""
    return _RESULT_STREAMS[-1] if _RESULT_STREAMS else sys.stdout


def print_json(data: Any) -> None:
    """``data`` as indented JSON on the result stream (stdout)."""
    print(json.dumps(data, indent=2, allow_nan=False, default=str), file=result_stream())


def print_result(args: argparse.Namespace, data: Any, quiet: float | int | str) -> bool:
    """With ``--json`` print ``data``, with ``--quiet`` only ``quiet`` (a number: full
    precision, no unit); True if printed (the command then prints no text)."""
    if getattr(args, "json", False):
        print_json(data)
        return True
    if getattr(args, "quiet", False):
        text = f"{quiet:.6g}" if isinstance(quiet, float) else str(quiet)
        print(text, file=result_stream())
        return True
    return False
