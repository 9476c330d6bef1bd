"""The ``irene`` command: one module per subcommand, named after it (``irene train`` is
:mod:`irene.cli.train`, ``irene serve-bench`` is :mod:`irene.cli.serve_bench`).

Each command module defines ``add_parser(subparsers)`` (which registers its parser and sets
``func``) and a ``run(args)`` that calls into the library; shared options live in
:mod:`irene.cli.options`. This file only dispatches and turns user errors into one clear line
and exit code 2.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
from collections.abc import Sequence

from irene.cli.errors import UserError

#: the subcommands, in the order ``irene --help`` lists them (each is irene.cli.<name>)
COMMANDS = ("models", "trace", "run", "train", "predict", "evaluate", "crossvalidate",
            "calibrate", "estimate", "explain", "report", "plot", "compare", "export", "bench",
            "serve", "load", "serve-bench")


def build_parser() -> argparse.ArgumentParser:
    from irene import __version__

    parser = argparse.ArgumentParser(
        prog="irene", description="Predict and explain the energy of transformer models.")
    parser.add_argument("--version", action="version", version=f"irene {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"irene.cli.{name.replace('-', '_')}").add_parser(sub)
    return parser


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception classes that mean "bad input" (one line, exit 2), not a bug: every
    reader's error (an :class:`irene.checks.InputError`), a bad option, an output that cannot
    be written, a meter that is not there, a file that cannot be read."""
    from irene.checks import InputError
    from irene.files import OutputError
    from irene.measure import MeterUnavailable

    return (InputError, UserError, OutputError, MeterUnavailable, OSError)


def dispatch(args: argparse.Namespace) -> int:
    """Run a parsed command; user errors become one clear line on stderr and exit code 2.

    (Not named ``run``: importing the ``irene run`` command's module, :mod:`irene.cli.run`,
    binds that name on this package.)"""
    from irene.cli.options import result_stdout

    try:
        with result_stdout(args):
            return int(args.func(args) or 0)
    except user_errors() as exc:
        print(f"irene {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not str(exc).startswith(str(exc.filename or "\0")):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}"
    return " ".join(str(exc).split("\n"))


def main(argv: Sequence[str] | None = None) -> int:
    from irene.files import remove_temp_files_on_signals

    remove_temp_files_on_signals()
    args = build_parser().parse_args(argv)
    return dispatch(args)


def console_main() -> int:
    """The ``irene`` command: :func:`main`, then keep the garbage collector from walking the
    large object graph torch and transformers leave behind once more at exit (measured: about
    0.9 s of a command's wall time). Only for a process that ends right after."""
    try:
        return main()
    finally:
        gc.freeze()


if __name__ == "__main__":
    sys.exit(console_main())
