"""The ``irene`` command: one subcommand per module of this package.

Each subcommand module defines ``add_parsers(subparsers)`` (which registers its parsers and sets
``func``) and keeps its own logic; this file only dispatches and turns user errors into a clear
message and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: subcommand name -> module under irene.cli that implements it
SUBCOMMANDS = {
    "train": "learn",
    "predict": "learn",
    "evaluate": "learn",
    "crossvalidate": "learn",
    "trace": "trace",
    "models": "trace",
    "estimate": "explain",
    "explain": "explain",
    "report": "explain",
    "plot": "explain",
    "compare": "explain",
}


class UserError(Exception):
    """An error caused by the user's input: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="irene", description="Predict and explain the inference energy of transformers.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in dict.fromkeys(SUBCOMMANDS.values()):
        try:
            module = importlib.import_module(f"irene.cli.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"irene.cli.{module_name}":
                raise
            continue  # subcommand group not built yet
        module.add_parsers(sub)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run a parsed command; user errors become one clear line on stderr and exit code 2."""
    from irene.tree import TreeFormatError

    try:
        return int(args.func(args) or 0)
    except (UserError, TreeFormatError, FileNotFoundError) as exc:
        print(f"irene {args.command}: error: {exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
