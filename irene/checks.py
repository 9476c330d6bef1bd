"""One home for checking what a user hands in: documents (YAML or JSON) whose every error names
the file, the line and the key, e.g. ``plan.yaml:7: grid.batch_sizes[1]: must be a positive
integer, got str 'x'``.

:func:`line_map` reads a document's layout (the line of every key path) with the bounds of
:mod:`irene.limits`; :class:`Checker` checks values against it. Readers (campaign plans,
GPU specifications, hardware parameter files, ...) subclass :class:`InputError` for their own
error type so the command line can turn it into one line and exit status 2.
"""

from __future__ import annotations

import difflib
from typing import Any

from irene.limits import MAX_DIMENSION, MAX_YAML_NODES


class InputError(ValueError):
    """A file or value a user handed in is not valid; the message names where and why."""


def line_map(text: str, source: str, *, error: type[InputError] = InputError,
             what: str = "document") -> dict[tuple, int]:
    """Line (1-based) of every key path of the YAML (or JSON) document ``text`` read from
    ``source``; ``error`` (an :class:`InputError`) on a duplicate key, on a document nested too
    deeply, or on one of more than :data:`irene.limits.MAX_YAML_NODES`
    nodes once its aliases are expanded (a "billion laughs" bomb is refused, not expanded)."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError as exc:
        raise error(f"{source}: not a {what}: YAML nested too deeply") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(f"{where}: not valid YAML: {problem}") from exc
    lines: dict[tuple, int] = {}
    visited = [0]

    def walk(node: Any, path: tuple) -> None:
        visited[0] += 1
        if visited[0] > MAX_YAML_NODES:
            raise error(f"{source}:{node.start_mark.line + 1}: not a {what}: more than "
                        f"{MAX_YAML_NODES} YAML values once its aliases (*name) are "
                        "expanded")
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = key_node.value
                if key in seen:
                    raise error(f"{source}:{key_node.start_mark.line + 1}: "
                                f"{dotted(path + (key,))}: duplicate key")
                seen.add(key)
                lines[path + (key,)] = key_node.start_mark.line + 1
                walk(value_node, path + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, path + (i,))

    if root is not None:
        try:
            walk(root, ())
        except RecursionError as exc:
            raise error(f"{source}: not a {what}: YAML nested too deeply") from exc
    return lines


def dotted(path: tuple) -> str:
    """``models[2].name``: a key path as the user reads it."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


class Checker:
    """Checks the values of one document read from ``source`` and builds the error (of type
    ``error``) that names the file, the line (from ``lines``, see :func:`line_map`) and the key.
    Each method returns the checked value or raises."""

    def __init__(self, source: str, lines: dict[tuple, int], *,
                 error: type[InputError] = InputError) -> None:
        self.source, self.lines, self.error_type = source, lines, error

    def error(self, path: tuple, message: str) -> InputError:
        line = None
        for n in range(len(path), -1, -1):  # the key's line, else its nearest parent's
            if path[:n] in self.lines:
                line = self.lines[path[:n]]
                break
        where = self.source if line is None else f"{self.source}:{line}"
        return self.error_type(f"{where}: {dotted(path)}: {message}")

    def mapping(self, value: Any, path: tuple, allowed: tuple[str, ...]) -> dict:
        if not isinstance(value, dict):
            raise self.error(path, f"must be a mapping (key: value), got {describe(value)}")
        for key in value:
            if not isinstance(key, str) or key not in allowed:
                hint = difflib.get_close_matches(str(key), allowed, n=1)
                extra = f"; did you mean {hint[0]!r}?" if hint else \
                    f"; known keys: {', '.join(allowed)}"
                raise self.error(path + (key,), f"unknown key{extra}")
        return value

    def text(self, value: Any, path: tuple) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(path, f"must be a non-empty string, got {describe(value)}")
        return value.strip()

    def boolean(self, value: Any, path: tuple) -> bool:
        if not isinstance(value, bool):
            raise self.error(path, f"must be true or false, got {describe(value)}")
        return value

    def positive_int(self, value: Any, path: tuple, *, limit: int = MAX_DIMENSION,
                     low: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= limit:
            what = "a positive integer" if low == 1 else f"an integer >= {low}"
            raise self.error(path, f"must be {what} (at most {limit}), got {describe(value)}")
        return value

    def number(self, value: Any, path: tuple) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not abs(value) < 1e300:
            raise self.error(path, f"must be a finite number, got {describe(value)}")
        return float(value)

    def one_or_list(self, value: Any, path: tuple, choices: tuple[str, ...]) -> list[str]:
        values = value if isinstance(value, list) else [value]
        if not values:
            raise self.error(path, "must not be empty")
        out: list[str] = []
        for i, v in enumerate(values):
            where = path + (i,) if isinstance(value, list) else path
            if v not in choices:
                raise self.error(where, f"must be one of {', '.join(choices)}, got {describe(v)}")
            if v in out:
                raise self.error(where, f"{v!r} is listed twice")
            out.append(v)
        return out

    def int_list(self, value: Any, path: tuple, *, low: int = 1) -> list[int]:
        values = value if isinstance(value, list) else [value]
        if not values:
            raise self.error(path, "must not be empty")
        out: list[int] = []
        for i, v in enumerate(values):
            where = path + (i,) if isinstance(value, list) else path
            number = self.positive_int(v, where, low=low)
            if number in out:
                raise self.error(where, f"{number} is listed twice")
            out.append(number)
        return out


def describe(value: Any) -> str:
    """A value as an error message shows it: its type and (the start of) its repr."""
    if value is None:
        return "nothing (null)"
    try:
        text = repr(value)
    except ValueError:  # an integer beyond Python's digit limit
        return "an integer of thousands of digits"
    return f"{type(value).__name__} {text[:60]}"
