"""One home for checking what a user hands in: documents (YAML or JSON) whose every error names
the file, the line and the key, e.g. ``plan.yaml:7: grid.batch_sizes[1]: must be a positive
integer, got str 'x'``, and line-oriented files (CSV, JSON lines) named the same way
(``power.csv:3: watts: ...``).

:func:`read_document` reads a file bounded and parses it; :func:`line_map` gives its layout
(the line of every key path) with the bounds of :mod:`irene.limits`; :class:`Checker` checks
values against it (a line-oriented reader gives it ``{(): line}``). Readers (campaign plans,
GPU specifications, hardware parameter files, predictor settings, wattmeter logs, prompt and
measurement files, ...) subclass :class:`InputError` for their own error type, which the
command line turns into one line and exit status 2. See docs/design.md, "Validation".
"""

from __future__ import annotations

import difflib
import json
import math
import os
from collections.abc import Callable
from typing import Any, NamedTuple

from irene.limits import MAX_DIMENSION, MAX_YAML_NODES


class InputError(ValueError):
    """A file or value a user handed in is not valid; the message names where and why."""


class Document(NamedTuple):
    """A document read by :func:`parse_document`."""

    data: Any
    check: Checker
    text: str


def read_document(path: str | os.PathLike, *, error: type[InputError] = InputError,
                  what: str = "document", limit: int = 1 << 20,
                  yaml_suffixes: tuple[str, ...] = (".yaml", ".yml")) -> Document:
    """The YAML or JSON file ``path`` (read as YAML when its name ends with one of
    ``yaml_suffixes``, else as JSON) of at most ``limit`` bytes, see :func:`parse_document`;
    ``error`` naming the file when it cannot be read."""
    from irene.files import read_small_text

    source = str(path)
    try:
        text = read_small_text(path, limit=limit)
    except OSError as exc:
        raise error(f"{source}: cannot read the {what} ({exc.strerror or exc})") from exc
    except ValueError as exc:  # too large, not a regular file, not UTF-8
        detail = str(exc).removeprefix(f"{source}: ")
        raise error(f"{source}: cannot read the {what} ({detail})") from exc
    return parse_document(text, source, error=error, what=what,
                          as_yaml=source.lower().endswith(yaml_suffixes))


def parse_document(text: str, source: str, *, error: type[InputError] = InputError,
                   what: str = "document", as_yaml: bool = False) -> Document:
    """The YAML (``as_yaml``) or JSON document ``text`` read from ``source``: its parsed
    content, a :class:`Checker` that knows the line of every key, and the text. ``error`` (an
    :class:`InputError`) naming the file, and the line where known, when it cannot be parsed
    (see :func:`line_map` for the bounds)."""
    import yaml

    from irene.files import loads_json

    if not as_yaml:
        try:
            data = loads_json(text)
        except json.JSONDecodeError as exc:
            raise error(f"{source}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
        except ValueError as exc:  # nested too deeply
            raise error(f"{source}: not a {what}: {exc}") from exc
    lines = line_map(text, source, error=error, what=what, as_json=not as_yaml)
    if as_yaml:
        try:
            data = yaml.safe_load(text)
        except (yaml.YAMLError, ValueError, RecursionError) as exc:  # construction problems:
            # bad tags, integers beyond Python's digit limit
            raise error(f"{source}: not valid YAML: {' '.join(str(exc).split())[:300]}") \
                from exc
    return Document(data, Checker(source, lines, error=error), text)


def line_map(text: str, source: str, *, error: type[InputError] = InputError,
             what: str = "document", as_json: bool = False) -> dict[tuple, int]:
    """Line (1-based) of every key path of the YAML (or, with ``as_json``, JSON) document ``text``
    read from ``source``; ``error`` (an :class:`InputError`) on a duplicate key, on a document
    nested too deeply, or on one of more than :data:`irene.limits.MAX_YAML_NODES`
    nodes once its aliases are expanded (a "billion laughs" bomb is refused, not expanded).
    JSON a JSON parser accepted but YAML's composer does not gives no lines (``{}``)."""
    import yaml

    try:  # in valid JSON a tab is only ever white space, which YAML's flow style refuses
        root = yaml.compose(text.replace("\t", " ") if as_json else text, Loader=yaml.SafeLoader)
    except RecursionError as exc:
        raise error(f"{source}: not a {what}: YAML nested too deeply") from exc
    except yaml.YAMLError as exc:
        if as_json:
            return {}
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

    def where(self, path: tuple) -> str:
        """``file:line: key.path``: where the value at ``path`` is (the line of the key, else of
        its nearest parent; no line when the document's layout is not known)."""
        line = None
        for n in range(len(path), -1, -1):
            if path[:n] in self.lines:
                line = self.lines[path[:n]]
                break
        where = self.source if line is None else f"{self.source}:{line}"
        return f"{where}: {dotted(path)}"

    def error(self, path: tuple, message: str) -> InputError:
        """The error (of this document's type) for the value at ``path``."""
        return self.error_type(f"{self.where(path)}: {message}")

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

    def number(self, value: Any, path: tuple, *, minimum: float | None = None,
               maximum: float | None = None, positive: bool = False,
               parse: Callable[[str], float] | None = None) -> float:
        """A finite number (beyond 1e300 counts as infinite) at least ``minimum``, above 0 with
        ``positive``, at most ``maximum``; with ``parse``, text (a field of a CSV line) is read
        with it first."""
        if parse is not None and isinstance(value, str):
            try:
                value = parse(value.strip())
            except ValueError:
                raise self.error(path, f"must be a number, got {value!r}") from None
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) \
            and math.isfinite(value) and abs(value) < 1e300
        if not ok or (positive and value <= 0) or (minimum is not None and value < minimum) \
                or (maximum is not None and value > maximum):
            raise self.error(path, f"must be {_number_range(minimum, maximum, positive)}, got "
                                   f"{describe(value)}")
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


def _number_range(minimum: float | None, maximum: float | None, positive: bool) -> str:
    """``a positive number``, ``a number from 0 to 10``, ...: what :meth:`Checker.number`
    asks for."""
    kind = "a positive number" if positive else "a finite number"
    if minimum is not None and not positive:
        return f"{kind} from {minimum:g} to {maximum:g}" if maximum is not None \
            else f"a number >= {minimum:g}"
    return kind if maximum is None else f"{kind} at most {maximum:g}"


def describe(value: Any) -> str:
    """A value as an error message shows it: its type and (the start of) its repr."""
    if value is None:
        return "nothing (null)"
    try:
        text = repr(value)
    except ValueError:  # an integer beyond Python's digit limit
        return "an integer of thousands of digits"
    return f"{type(value).__name__} {text[:60]}"
