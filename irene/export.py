"""A flat table of every node: one row per node with its tree, path, features and energies.

::

    from irene.export import node_rows, nodes_dataframe, write_node_table
    rows = node_rows(trees)                 # list of dicts
    frame = nodes_dataframe(trees)          # pandas DataFrame (pandas installed separately)
    write_node_table(trees, "nodes.csv")    # or nodes.jsonl

Columns: the tree (``tree`` index, ``model_name``, ``batch_size``, ``seq_len``, ``phase``,
``context_len``, ``dtype``, ``device``, ``hardware``, ``schema``), the node (``scope``,
``parent``, ``level``, ``type``, ``instance_type``, ``path`` — the scopes from the root joined by
`` > ``), every feature of :data:`irene.schema.FEATURE_FIELDS` (units in :mod:`irene.schema`),
and ``ground_truth_energy_j``, ``predicted_energy_j`` and ``error_pct`` (signed, where both
energies are present).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from typing import Any

from irene.evaluation import percent_error
from irene.files import atomic_write
from irene.schema import FEATURE_FIELDS
from irene.tree import Tree

TREE_COLUMNS = ("tree", "model_name", "batch_size", "seq_len", "phase", "context_len", "dtype",
                "device", "hardware", "schema")
NODE_COLUMNS = ("scope", "parent", "level", "type", "instance_type", "path")
ENERGY_COLUMNS = ("ground_truth_energy_j", "predicted_energy_j", "error_pct")
COLUMNS = TREE_COLUMNS + NODE_COLUMNS + FEATURE_FIELDS + ENERGY_COLUMNS


def node_rows(trees: Sequence[Tree]) -> list[dict[str, Any]]:
    """One dict per node of every tree, in tree order then pre-order (columns: :data:`COLUMNS`)."""
    rows = []
    for index, tree in enumerate(trees):
        key = tree.key
        head = {"tree": index, "model_name": tree.model_name, "batch_size": tree.batch_size,
                "seq_len": tree.seq_len, "phase": key.phase, "context_len": key.context_len,
                "dtype": key.dtype, "device": key.device, "hardware": key.hardware,
                "schema": key.schema}
        stack = [(tree.root, "")]
        while stack:
            node, above = stack.pop()
            path = f"{above} > {node.scope}" if above else node.scope
            rows.append({**head, "scope": node.scope, "parent": node.parent_name,
                         "level": node.level, "type": node.type,
                         "instance_type": node.instance_type, "path": path, **node.features,
                         "ground_truth_energy_j": node.ground_truth_energy,
                         "predicted_energy_j": node.predicted_energy,
                         "error_pct": percent_error(node.predicted_energy,
                                                    node.ground_truth_energy)})
            stack.extend((child, path) for child in reversed(node.children))
    return rows


def nodes_dataframe(trees: Sequence[Tree]):
    """:func:`node_rows` as a pandas DataFrame (needs pandas: ``pip install pandas``)."""
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError("nodes_dataframe needs pandas: pip install pandas") from exc
    return pd.DataFrame(node_rows(trees), columns=list(COLUMNS))


def node_table_text(trees: Sequence[Tree], fmt: str) -> str:
    """The node table as ``csv`` or ``jsonl`` text."""
    rows = node_rows(trees)
    if fmt == "jsonl":
        return "".join(json.dumps(row, allow_nan=False) + "\n" for row in rows)
    if fmt != "csv":
        raise ValueError(f"node table format must be csv or jsonl, not {fmt!r}")
    return csv_text(list(COLUMNS), rows)


#: what a spreadsheet reads as the start of a formula (``=HYPERLINK(...)``, ``+cmd``, ``@SUM``,
#: and a leading tab or carriage return, which some spreadsheets skip before one)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula: a string starting
    with one of :data:`FORMULA_START` gets a leading ``'`` (OWASP's CSV-injection advice);
    numbers are left as they are, None becomes an empty cell."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def csv_text(fieldnames: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    """Rows as CSV text (a header, ``\\n`` line ends), every cell through
    :func:`spreadsheet_cell`: the one way irene writes CSV."""
    buffer = _LineFeeds()
    # "\r\n" as the writer's line end makes it quote every cell holding a "\r" or a "\n" (with
    # "\n" alone, Python 3.11 leaves a lone "\r" unquoted, which splits the row); rows then end
    # in "\n"
    writer = csv.DictWriter(buffer, fieldnames=list(fieldnames), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows({k: spreadsheet_cell(v) for k, v in row.items()} for row in rows)
    return buffer.getvalue()


class _LineFeeds(io.StringIO):
    """A text buffer that stores each CSV row (one ``write``) with ``\\n`` as its line end."""

    def write(self, text: str) -> int:
        return super().write(text[:-2] + "\n" if text.endswith("\r\n") else text)


def write_node_table(trees: Sequence[Tree], path: str | os.PathLike) -> int:
    """Write the node table to ``path`` (``.csv`` or ``.jsonl`` by suffix), atomically; returns
    the number of rows."""
    fmt = "jsonl" if str(path).endswith(".jsonl") else "csv"
    text = node_table_text(trees, fmt)
    with atomic_write(path) as handle:
        handle.write(text)
    return text.count("\n") - (1 if fmt == "csv" else 0)
