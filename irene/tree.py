"""The energy tree: the one data model every part of irene shares.

One tree per (model, batch size, sequence length, hardware), one JSON object per line (JSONL), in
IrEne's published format::

    root:  model_name, batch_size, seq_len, frontend_tree   (+ optional metadata keys)
    node:  id, scope, parent_name, level, instance_type, type in {model, module, ml},
           num_parameters, flops, mem_bytes, cpu, mem, gpu, gpu_mem, gpu_clk, gpu_mem_clk,
           times_mean, gpu_energy_mean, ground_truth_energy (J, optional),
           predicted_energy (J, optional), child_nodes_obj: [node, ...], child_nodes: [scope, ...]

Units follow IrEne's data: energies in joules per call, ``times_mean`` in seconds per call,
``flops`` in MFLOP (10^6 floating-point operations, one multiply-add = 2 FLOPs), ``mem_bytes`` in
MiB (2^20 bytes), ``cpu``/``mem``/``gpu``/``gpu_mem`` in percent, clocks in MHz.

Unknown keys on the root or on any node are kept and written back unchanged. Reading validates
every line and raises :class:`TreeFormatError` naming the file, line and field.
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

NODE_TYPES = ("model", "module", "ml")

#: Numeric feature fields every node carries (IrEne's columns), in a fixed order.
FEATURE_FIELDS = (
    "num_parameters",
    "flops",
    "mem_bytes",
    "cpu",
    "mem",
    "gpu",
    "gpu_mem",
    "gpu_clk",
    "gpu_mem_clk",
    "times_mean",
    "gpu_energy_mean",
)

_STRUCTURE_FIELDS = {
    "id": str,
    "scope": str,
    "parent_name": str,
    "level": int,
    "instance_type": str,
    "type": str,
}
_ENERGY_FIELDS = ("ground_truth_energy", "predicted_energy")
_ROOT_FIELDS = {"model_name": str, "batch_size": int, "seq_len": int}
_KNOWN_NODE_KEYS = (
    set(_STRUCTURE_FIELDS) | set(FEATURE_FIELDS) | set(_ENERGY_FIELDS)
    | {"child_nodes_obj", "child_nodes"}
)


class TreeFormatError(ValueError):
    """A tree file or tree object that does not follow the format; the message says where."""

    def __init__(self, message: str, *, source: str = "<memory>", line: int | None = None,
                 field: str | None = None, scope: str | None = None) -> None:
        self.source, self.line, self.field, self.scope = source, line, field, scope
        where = source if line is None else f"{source}:{line}"
        parts = [where]
        if scope is not None:
            parts.append(f"node {scope!r}")
        if field is not None:
            parts.append(f"field {field!r}")
        super().__init__(f"{', '.join(parts)}: {message}")


@dataclass
class Node:
    """One node of an energy tree: the whole model, a module, or an ML primitive (leaf).

    ``features`` maps each name of :data:`FEATURE_FIELDS` to a float (units in the module doc).
    ``ground_truth_energy`` and ``predicted_energy`` are joules per call, or None when absent.
    ``extra`` holds every key this package does not know, in file order, for a lossless round trip.
    """

    id: str
    scope: str
    parent_name: str
    level: int
    instance_type: str
    type: str
    features: dict[str, float]
    ground_truth_energy: float | None = None
    predicted_energy: float | None = None
    children: list[Node] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_leaf(self) -> bool:
        return not self.children

    def walk(self) -> Iterator[Node]:
        """Yield this node and all its descendants, parents before children (pre-order)."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    def copy(self) -> Node:
        """A deep copy of this node and its subtree (much faster than ``copy.deepcopy``)."""
        return Node(
            id=self.id, scope=self.scope, parent_name=self.parent_name, level=self.level,
            instance_type=self.instance_type, type=self.type, features=dict(self.features),
            ground_truth_energy=self.ground_truth_energy,
            predicted_energy=self.predicted_energy,
            children=[child.copy() for child in self.children],
            extra=copy.deepcopy(self.extra) if self.extra else {})

    def to_dict(self) -> dict[str, Any]:
        """The node as IrEne's JSON object (children included)."""
        out: dict[str, Any] = {k: getattr(self, k) for k in _STRUCTURE_FIELDS}
        out.update(self.features)
        if self.ground_truth_energy is not None:
            out["ground_truth_energy"] = self.ground_truth_energy
        if self.predicted_energy is not None:
            out["predicted_energy"] = self.predicted_energy
        out.update(self.extra)
        out["child_nodes_obj"] = [c.to_dict() for c in self.children]
        out["child_nodes"] = [c.scope for c in self.children]
        return out


@dataclass
class Tree:
    """One energy tree: a model at one batch size and sequence length on one machine.

    ``meta`` holds the root's optional keys (device, meter, protocol, created_by, ...).
    ``source`` and ``line`` say where the tree was read from, for error messages.
    """

    model_name: str
    batch_size: int
    seq_len: int
    root: Node
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = "<memory>"
    line: int | None = None

    def nodes(self) -> Iterator[Node]:
        """All nodes, root first, parents before children."""
        return self.root.walk()

    @property
    def key(self) -> tuple[str, int, int]:
        """(model_name, batch_size, seq_len): what identifies a tree within one data set."""
        return (self.model_name, self.batch_size, self.seq_len)

    def copy(self) -> Tree:
        """A deep copy of the tree (nodes, features and metadata)."""
        return Tree(model_name=self.model_name, batch_size=self.batch_size,
                    seq_len=self.seq_len, root=self.root.copy(), meta=copy.deepcopy(self.meta),
                    source=self.source, line=self.line)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model_name": self.model_name,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
        }
        out.update(self.meta)
        out["frontend_tree"] = self.root.to_dict()
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False)

    def error(self, message: str, *, field: str | None = None,
              scope: str | None = None) -> TreeFormatError:
        """A :class:`TreeFormatError` that points at this tree's file and line."""
        return TreeFormatError(message, source=self.source, line=self.line, field=field,
                               scope=scope)


# --------------------------------------------------------------------------------------------
# parsing and validation


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_field(obj: dict, name: str, kind: type, ctx: dict, scope: str | None) -> Any:
    if name not in obj:
        raise TreeFormatError("missing field", field=name, scope=scope, **ctx)
    value = obj[name]
    if kind is float:
        ok = _is_number(value) and math.isfinite(value)
    elif kind is int:
        ok = _is_number(value) and float(value).is_integer()
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise TreeFormatError(
            f"expected {'a finite number' if kind is float else kind.__name__}, "
            f"got {type(value).__name__} {str(value)[:60]!r}",
            field=name, scope=scope, **ctx)
    return int(value) if kind is int else value


def _parse_node(obj: Any, ctx: dict, seen_ids: set[str], path: str) -> Node:
    if not isinstance(obj, dict):
        raise TreeFormatError(f"a node must be a JSON object, got {type(obj).__name__}",
                              field=path, **ctx)
    scope = obj.get("scope") if isinstance(obj.get("scope"), str) else None
    values = {}
    for key, kind in _STRUCTURE_FIELDS.items():
        value = obj.get(key)
        values[key] = value if type(value) is kind else _check_field(obj, key, kind, ctx, scope)
    scope = values["scope"]
    if values["type"] not in NODE_TYPES:
        raise TreeFormatError(f"type must be one of {NODE_TYPES}, got {values['type']!r}",
                              field="type", scope=scope, **ctx)
    if values["id"] in seen_ids:
        raise TreeFormatError(f"duplicate id {values['id']!r}", field="id", scope=scope, **ctx)
    seen_ids.add(values["id"])
    features = {}
    for key in FEATURE_FIELDS:  # fast path for plain finite numbers, full check otherwise
        value = obj.get(key)
        if not ((type(value) is float and math.isfinite(value)) or type(value) is int):
            value = _check_field(obj, key, float, ctx, scope)
        features[key] = float(value)
    energies = {}
    for name in _ENERGY_FIELDS:
        if obj.get(name) is not None:
            energies[name] = float(_check_field(obj, name, float, ctx, scope))
    kids = _check_field(obj, "child_nodes_obj", list, ctx, scope)
    children = [_parse_node(k, ctx, seen_ids, f"{path}.child_nodes_obj[{i}]")
                for i, k in enumerate(kids)]
    if not children and values["type"] != "ml":
        raise TreeFormatError(f"a leaf must be an 'ml' node, this one is {values['type']!r}",
                              field="type", scope=scope, **ctx)
    if children and values["type"] == "ml":
        raise TreeFormatError("an 'ml' node must be a leaf, this one has children",
                              field="child_nodes_obj", scope=scope, **ctx)
    extra = {k: v for k, v in obj.items() if k not in _KNOWN_NODE_KEYS}
    return Node(features=features, children=children, extra=extra, **values, **energies)


def tree_from_dict(obj: Any, *, source: str = "<memory>", line: int | None = None) -> Tree:
    """Validate one parsed JSON line and build a :class:`Tree`; raises TreeFormatError."""
    ctx = {"source": source, "line": line}
    if not isinstance(obj, dict):
        raise TreeFormatError(f"a tree line must be a JSON object, got {type(obj).__name__}",
                              **ctx)
    root_values = {k: _check_field(obj, k, t, ctx, None) for k, t in _ROOT_FIELDS.items()}
    if "frontend_tree" not in obj:
        raise TreeFormatError("missing field", field="frontend_tree", **ctx)
    root = _parse_node(obj["frontend_tree"], ctx, set(), "frontend_tree")
    meta = {k: v for k, v in obj.items() if k not in _ROOT_FIELDS and k != "frontend_tree"}
    return Tree(root=root, meta=meta, source=source, line=line, **root_values)


def iter_trees(path: str | os.PathLike) -> Iterator[Tree]:
    """Yield the trees of a JSONL file one by one, validating each line (blank lines skipped)."""
    source = str(path)
    try:
        handle = _open_text(path, "r")
    except OSError as exc:
        raise TreeFormatError(f"cannot open: {exc.strerror}", source=source) from exc
    with handle:
        number = 0
        lines = iter(handle)
        while True:
            try:
                text = next(lines)
            except StopIteration:
                return
            except (OSError, EOFError, UnicodeDecodeError) as exc:
                raise TreeFormatError(f"unreadable ({exc})", source=source,
                                      line=number + 1) from exc
            number += 1
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise TreeFormatError(f"malformed JSON: {exc.msg} at column {exc.colno}",
                                      source=source, line=number) from exc
            yield tree_from_dict(obj, source=source, line=number)


def read_trees(path: str | os.PathLike) -> list[Tree]:
    """Read and validate every tree of a JSONL file."""
    trees = list(iter_trees(path))
    if not trees:
        raise TreeFormatError("the file holds no trees", source=str(path))
    return trees


def require_energy(trees: Iterable[Tree], name: str = "ground_truth_energy") -> None:
    """Check that every node carries a positive ``name`` energy; raise TreeFormatError if not."""
    for tree in trees:
        for node in tree.nodes():
            value = getattr(node, name)
            if value is None:
                raise tree.error("missing (needed here)", field=name, scope=node.scope)
            if value <= 0:
                raise tree.error(f"must be positive, got {value!r}", field=name,
                                 scope=node.scope)


# --------------------------------------------------------------------------------------------
# writing


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file beside ``path``; rename it onto ``path`` only if the block succeeds.

    Nothing half-written is ever left at ``path``: on any exception the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as handle:
            yield handle
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _open_text(path: str | os.PathLike, mode: str) -> IO[str]:
    """Open a text file, gzip-compressed when its name ends in ``.gz``."""
    if str(path).endswith(".gz"):
        return gzip.open(path, mode + "t", encoding="utf-8")
    return open(path, mode, encoding="utf-8")


def write_trees(trees: Iterable[Tree], path: str | os.PathLike) -> None:
    """Write trees as JSONL (gzip-compressed if ``path`` ends in ``.gz``), atomically."""
    lines = "".join(tree.to_json() + "\n" for tree in trees)
    if str(path).endswith(".gz"):
        with atomic_write(path, "wb") as handle:
            handle.write(gzip.compress(lines.encode("utf-8"), mtime=0))
    else:
        with atomic_write(path) as handle:
            handle.write(lines)


def append_tree(tree: Tree, path: str | os.PathLike) -> None:
    """Append one tree to a JSONL file and flush it to disk (for crash-safe sweeps)."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(tree.to_json() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
