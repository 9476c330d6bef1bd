"""The error a command raises for bad user input (see :func:`irene.cli.dispatch`)."""

from __future__ import annotations


class UserError(Exception):
    """An error caused by the user's input: printed as one line, exit code 2."""
