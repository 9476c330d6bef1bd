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

import copy
import gzip
import hashlib
import io
import json
import math
import os
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

from irene.checks import InputError
from irene.files import atomic_write, is_temp_name
from irene.schema import ENERGY_FIELDS, FEATURE_FIELDS, NODE_TYPES, Schema, schema_of_meta

__all__ = ["FEATURE_FIELDS", "NODE_TYPES", "Node", "Tree", "TreeFormatError", "TreeKey",
           "TailRepair", "append_tree", "atomic_write", "check_unique_keys", "inspect_tail",
           "iter_trees", "node_id",
           "place_nodes", "read_tree_files", "read_trees", "repair_torn_tail", "require_energy",
           "tree_from_dict", "tree_key", "write_trees"]

#: the largest magnitude a feature or energy may have: far beyond any real model (1e18 MFLOP
#: is 1e24 FLOPs), small enough that no computation on it overflows or runs away
MAX_MAGNITUDE = 1e18
#: the smallest positive energy accepted (J): a femtojoule is far below any measured primitive,
#: so a smaller value is a unit mistake (and would make relative-error weights overflow)
MIN_ENERGY = 1e-15
#: the deepest tree accepted (transformer trees are under 20 levels deep)
MAX_DEPTH = 200

_STRUCTURE_FIELDS = {
    "id": str,
    "scope": str,
    "parent_name": str,
    "level": int,
    "instance_type": str,
    "type": str,
}
_ROOT_FIELDS = {"model_name": str, "batch_size": int, "seq_len": int}
_KNOWN_NODE_KEYS = (
    set(_STRUCTURE_FIELDS) | set(FEATURE_FIELDS) | set(ENERGY_FIELDS)
    | {"child_nodes_obj", "child_nodes"}
)
#: protocol settings that do not change a measured value (left out of a tree's key)
_PROTOCOL_NOT_IN_KEY = ("dedup", "effective_min_run_seconds")


class TreeFormatError(InputError):
    """A tree file or tree object that does not follow the format; the message says where."""

    def __init__(self, message: str, *, source: str = "<memory>", line: int | None = None,
                 field: str | None = None, scope: str | None = None) -> None:
        self.source, self.line, self.field, self.scope = source, line, field, scope
        self.message = message
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

    ``features`` maps each name of :data:`FEATURE_FIELDS` to a float (units in
    :mod:`irene.schema`). ``ground_truth_energy`` and ``predicted_energy`` are joules per model
    call, or None when absent. ``extra`` holds every key this package does not know, in file
    order, for a lossless round trip.
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


class TreeKey(NamedTuple):
    """Everything that makes two trees different measurements (DESIGN: "the tree's key").

    Resume, duplicate detection, the campaign's measurement cache, joining gold trees with their
    predictions and the report's labels all use it. Fields absent from a tree's metadata (as in
    IrEne's published files) are None, except ``phase`` ("forward") and ``context_len`` (0).
    ``protocol`` holds the sorted (setting, value) pairs that change a measured value.
    """

    model_name: str
    batch_size: int
    seq_len: int
    phase: str = "forward"
    context_len: int = 0
    optimizer: str | None = None
    dtype: str | None = None
    attn: str | None = None
    device: str | None = None
    hardware: str | None = None
    schema: str | None = None
    meter: str | None = None
    protocol: tuple = ()

    def describe(self) -> str:
        """``"gpt2 · batch 8 · seq 128"`` plus what sets the tree apart (phase, dtype, ...)."""
        parts = [self.model_name, f"batch {self.batch_size}", f"seq {self.seq_len}"]
        if self.phase != "forward":
            parts.append(self.phase + (f" @ context {self.context_len}"
                                       if self.context_len else "")
                         + (f" ({self.optimizer})" if self.optimizer else ""))
        return " · ".join(parts)


def protocol_key(protocol: Any) -> tuple:
    """The (setting, value) pairs of a protocol dict that change a measurement, sorted."""
    if not isinstance(protocol, dict):
        return ()
    return tuple(sorted((k, v) for k, v in protocol.items()
                        if k not in _PROTOCOL_NOT_IN_KEY and isinstance(v, (int, float, str,
                                                                           bool))))


@dataclass
class Tree:
    """One energy tree: a model at one batch size and sequence length on one machine.

    ``meta`` holds the root's optional keys (device, meter, protocol, schema, created_by, ...).
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
    def schema(self) -> Schema:
        """The feature schema the tree was made with (see :mod:`irene.schema`)."""
        return schema_of_meta(self.meta)

    @property
    def key(self) -> TreeKey:
        """What identifies this tree among others (:class:`TreeKey`)."""
        return tree_key(self.model_name, self.batch_size, self.seq_len, self.meta)

    @property
    def label(self) -> str:
        """How the tree is named to a person: ``"gpt2 · batch 8 · seq 128"`` (or the root's
        ``label``, which a tree derived from others carries, e.g. a sum of decode steps)."""
        label = self.meta.get("label")
        return label if isinstance(label, str) and label else self.key.describe()

    @property
    def where(self) -> str:
        """``file:line`` of the tree (or ``<memory>``), for messages."""
        return self.source if self.line is None else f"{self.source}:{self.line}"

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


def tree_key(model_name: str, batch_size: int, seq_len: int, meta: dict[str, Any]) -> TreeKey:
    """The :class:`TreeKey` of a tree with this root metadata (also of a tree about to be made:
    the tracer builds the metadata it will record and asks for its key)."""
    return TreeKey(
        model_name=model_name, batch_size=batch_size, seq_len=seq_len,
        phase=str(meta.get("phase", "forward")), context_len=int(meta.get("context_len", 0) or 0),
        optimizer=_text_or_none(meta.get("optimizer")), dtype=_text_or_none(meta.get("dtype")),
        attn=_text_or_none(meta.get("attn")), device=_text_or_none(meta.get("device")),
        hardware=_text_or_none(meta.get("device_name")), schema=str(schema_of_meta(meta)),
        meter=_text_or_none(meta.get("meter")), protocol=protocol_key(meta.get("protocol")))


def place_nodes(root: Node) -> Node:
    """Set every node's ``level`` and ``parent_name`` from its position under ``root`` (for trees
    built in code); returns ``root``."""
    stack: list[tuple[Node, str, int]] = [(root, "", 0)]
    while stack:
        node, parent, level = stack.pop()
        node.parent_name, node.level = parent, level
        stack.extend((child, node.scope, level + 1) for child in node.children)
    return root


def node_id(model_name: str, batch_size: int, seq_len: int, scope: str) -> str:
    """Deterministic node id: md5 of the model name, input shape and scope (32 hex digits)."""
    text = f"{model_name}|{batch_size}|{seq_len}|{scope}"
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


# --------------------------------------------------------------------------------------------
# parsing and validation


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_field(obj: dict, name: str, kind: type, ctx: dict, scope: str | None) -> Any:
    """``obj[name]`` checked to be a ``kind`` (float: a finite number; int: a whole number);
    TreeFormatError naming the field (``ctx``: source and line) otherwise."""
    if name not in obj:
        raise TreeFormatError("missing field", field=name, scope=scope, **ctx)
    value = obj[name]
    if kind is float:
        ok = _is_number(value) and math.isfinite(value)
    elif kind is int:
        ok = _is_number(value) and math.isfinite(value) and float(value).is_integer()
    else:
        ok = isinstance(value, kind)
    if not ok and _is_number(value) and math.isinf(value):
        raise TreeFormatError(f"a number too large to be real ({str(value)}: more than "
                              "hundreds of digits, or an overflow)", field=name, scope=scope,
                              **ctx)
    if not ok:
        raise TreeFormatError(
            f"expected {'a finite number' if kind is float else kind.__name__}, "
            f"got {type(value).__name__} {str(value)[:60]!r}",
            field=name, scope=scope, **ctx)
    return int(value) if kind is int else value


def check_magnitude(value: float, name: str, ctx: dict, scope: str) -> float:
    """A feature or energy must be >= 0 and at most :data:`MAX_MAGNITUDE`."""
    if value < 0:
        raise TreeFormatError(f"must not be negative, got {value!r}", field=name, scope=scope,
                              **ctx)
    if value > MAX_MAGNITUDE:
        raise TreeFormatError(f"{value!r} is beyond any real model (at most {MAX_MAGNITUDE:g})",
                              field=name, scope=scope, **ctx)
    return value


def _parse_node(obj: Any, ctx: dict, seen_ids: set[str], path: str,
                parent: tuple[str, int] | None) -> Node:
    """Validate one node object and its children (``parent``: the parent's scope and level)."""
    if not isinstance(obj, dict):
        raise TreeFormatError(f"a node must be a JSON object, got {type(obj).__name__}",
                              field=path, **ctx)
    scope = obj.get("scope") if isinstance(obj.get("scope"), str) else None
    values = {}
    for key, kind in _STRUCTURE_FIELDS.items():
        value = obj.get(key)
        values[key] = value if type(value) is kind else check_field(obj, key, kind, ctx, scope)
    scope = values["scope"]
    _check_place(values, parent, ctx)
    if values["id"] in seen_ids:
        raise TreeFormatError(f"duplicate id {values['id']!r}", field="id", scope=scope, **ctx)
    seen_ids.add(values["id"])
    features = {}
    for key in FEATURE_FIELDS:  # fast path for plain finite numbers, full check otherwise
        value = obj.get(key)
        if not ((type(value) is float and math.isfinite(value)) or type(value) is int):
            value = check_field(obj, key, float, ctx, scope)
        if not 0 <= value <= MAX_MAGNITUDE:
            check_magnitude(float(value), key, ctx, scope)
        features[key] = float(value)
    energies = {}
    for name in ENERGY_FIELDS:
        if obj.get(name) is not None:
            value = float(check_field(obj, name, float, ctx, scope))
            energies[name] = check_magnitude(value, name, ctx, scope)
            if 0 < value < MIN_ENERGY:
                raise TreeFormatError(f"{value!r} J is below a femtojoule: not a measurement "
                                      "(energies are joules per call)", field=name,
                                      scope=scope, **ctx)
    kids = check_field(obj, "child_nodes_obj", list, ctx, scope)
    if kids and values["level"] >= MAX_DEPTH:
        raise TreeFormatError(f"the tree is deeper than {MAX_DEPTH} levels", field="level",
                              scope=scope, **ctx)
    here = (scope, values["level"])
    children = [_parse_node(k, ctx, seen_ids, f"{path}.child_nodes_obj[{i}]", here)
                for i, k in enumerate(kids)]
    if not children and values["type"] != "ml":
        raise TreeFormatError(f"a leaf must be an 'ml' node, this one is {values['type']!r}",
                              field="type", scope=scope, **ctx)
    if children and values["type"] == "ml":
        raise TreeFormatError("an 'ml' node must be a leaf, this one has children",
                              field="child_nodes_obj", scope=scope, **ctx)
    listed = obj.get("child_nodes")
    if listed is not None and listed != [c.scope for c in children]:
        raise TreeFormatError(f"lists {_short(listed)} but the node's children "
                              f"(child_nodes_obj) are {_short([c.scope for c in children])}",
                              field="child_nodes", scope=scope, **ctx)
    extra = {k: v for k, v in obj.items() if k not in _KNOWN_NODE_KEYS}
    return Node(features=features, children=children, extra=extra, **values, **energies)


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**100 else "a huge number"
    return text if len(text) <= 80 else text[:77] + "..."


def _check_place(values: dict, parent: tuple[str, int] | None, ctx: dict) -> None:
    """Type, level and parent name must agree with the node's place in the tree."""
    scope, kind = values["scope"], values["type"]
    if kind not in NODE_TYPES:
        raise TreeFormatError(f"type must be one of {NODE_TYPES}, got {kind!r}",
                              field="type", scope=scope, **ctx)
    if parent is None:
        if kind != "model":
            raise TreeFormatError(f"the root must be the 'model' node, this one is {kind!r}",
                                  field="type", scope=scope, **ctx)
        expected_level, expected_parent = 0, ""
    else:
        if kind == "model":
            raise TreeFormatError("only the root may be a 'model' node", field="type",
                                  scope=scope, **ctx)
        expected_level, expected_parent = parent[1] + 1, parent[0]
    if values["level"] != expected_level:
        raise TreeFormatError(f"level {values['level']} does not match the node's depth "
                              f"{expected_level}", field="level", scope=scope, **ctx)
    if values["parent_name"] != expected_parent:
        raise TreeFormatError(f"parent_name {values['parent_name']!r} is not the parent's scope "
                              f"{expected_parent!r}", field="parent_name", scope=scope, **ctx)


def tree_from_dict(obj: Any, *, source: str = "<memory>", line: int | None = None) -> Tree:
    """Validate one parsed JSON line and build a :class:`Tree`; raises TreeFormatError."""
    ctx = {"source": source, "line": line}
    if not isinstance(obj, dict):
        raise TreeFormatError(f"a tree line must be a JSON object, got {type(obj).__name__}",
                              **ctx)
    root_values = {k: check_field(obj, k, t, ctx, None) for k, t in _ROOT_FIELDS.items()}
    for name in ("batch_size", "seq_len"):
        if not 1 <= root_values[name] <= 2**31:
            raise TreeFormatError(f"must be a positive integer, got {root_values[name]}",
                                  field=name, **ctx)
    if "frontend_tree" not in obj:
        raise TreeFormatError("missing field", field="frontend_tree", **ctx)
    meta = {k: v for k, v in obj.items() if k not in _ROOT_FIELDS and k != "frontend_tree"}
    try:
        schema_of_meta(meta)
    except ValueError as exc:
        raise TreeFormatError(str(exc), field="schema", **ctx) from exc
    root = _parse_node(obj["frontend_tree"], ctx, set(), "frontend_tree", None)
    return Tree(root=root, meta=meta, source=source, line=line, **root_values)


def iter_trees(path: str | os.PathLike, *, end: int | None = None) -> Iterator[Tree]:
    """Yield the trees of a JSONL file one by one, validating each line (blank lines skipped).

    ``end``: read only the file's first ``end`` bytes (the complete trees before a torn tail,
    see :func:`inspect_tail`). Bounded for files a user hands in (:func:`_numbered_lines`,
    :func:`_parse_line`)."""
    source = str(path)
    if os.path.isdir(path):
        raise TreeFormatError("is a directory, not a trees file", source=source)
    try:
        handle = _open_text(path, "r", end=end)
    except OSError as exc:
        raise TreeFormatError(f"cannot open: {exc.strerror or exc}", source=source) from exc
    with handle:
        for number, text in _numbered_lines(handle, source):
            yield tree_from_dict(_parse_line(text, source, number), source=source, line=number)


def _numbered_lines(handle: IO[str], source: str) -> Iterator[tuple[int, str]]:
    """The non-blank lines of a text file with their (1-based) numbers; TreeFormatError when
    the file cannot be read or decoded, and as soon as a line is longer than
    :data:`irene.limits.MAX_LINE_CHARS` or there are more than
    :data:`irene.limits.MAX_BLANK_LINES` blank lines (or MAX_LINE_CHARS blank characters): a
    small ``.gz`` that expands to gigabytes of nothing is refused early."""
    from irene.limits import MAX_BLANK_LINES, MAX_LINE_CHARS

    number = blank = blank_chars = 0
    while True:
        try:
            text = handle.readline(MAX_LINE_CHARS + 1)
        except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
            raise TreeFormatError(f"unreadable ({_one_line(exc)})", source=source,
                                  line=number + 1) from exc
        if not text:
            return
        number += 1
        if len(text) > MAX_LINE_CHARS:
            raise TreeFormatError(f"line longer than {MAX_LINE_CHARS} characters: not a tree",
                                  source=source, line=number)
        if text.strip():
            yield number, text
            continue
        blank += 1
        blank_chars += len(text)
        if blank > MAX_BLANK_LINES or blank_chars > MAX_LINE_CHARS:
            raise TreeFormatError(f"more than {MAX_BLANK_LINES} blank lines or "
                                  f"{MAX_LINE_CHARS} blank characters: not a trees file",
                                  source=source, line=number)


def _parse_line(text: str, source: str, number: int) -> Any:
    """One line's JSON (:func:`irene.files.loads_json`: bounded nesting, huge integers read as
    infinite so the field's check names them); TreeFormatError naming the line otherwise."""
    from irene.files import loads_json

    try:
        return loads_json(text)
    except json.JSONDecodeError as exc:
        raise TreeFormatError(f"malformed JSON: {exc.msg} at column {exc.colno}",
                              source=source, line=number) from exc
    except ValueError as exc:  # nested too deeply
        raise TreeFormatError(str(exc), source=source, line=number) from exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def read_trees(path: str | os.PathLike) -> list[Tree]:
    """Read and validate every tree of a JSONL file (``.gz``: gzip-compressed)."""
    trees = list(iter_trees(path))
    if not trees:
        raise TreeFormatError("the file holds no trees", source=str(path))
    return trees


def keys_in_file(path: str | os.PathLike, *, torn_tail_ok: bool = False) -> set[TreeKey]:
    """The :class:`TreeKey` of every tree already in ``path`` (validated read; an absent or
    empty file has none): what a resumed sweep skips. ``torn_tail_ok``: leave out a torn tail
    that :func:`repair_torn_tail` would drop (the file is not changed)."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return set()
    repair = inspect_tail(path) if torn_tail_ok else None
    end = repair.cut if repair is not None else None
    return {t.key for t in iter_trees(path, end=end)}


def check_appendable(path: str | os.PathLike, writer: str) -> None:
    """Refuse, before it is touched, an output that trees cannot be appended to: it must be a new
    path, an empty file or a trees file (a JSON file is read, so the error names its line and
    field) whose compression matches its name and whose end is intact or repairable
    (:func:`inspect_tail`). ``writer`` names what appends ("trace", "a campaign") in the
    message."""
    from irene.files import OutputError, file_kind, resolve_output

    resolve_output(path)
    kind = file_kind(path)
    if kind not in (None, "empty", "trees", "json"):
        raise OutputError(f"{path}: holds {kind} data, not energy trees; {writer} appends trees "
                          "to a trees file: give another output")
    if kind is not None:
        inspect_tail(path)  # raises TreeFormatError when appending would lose or hide trees
    if kind == "json":
        keys_in_file(path, torn_tail_ok=True)  # raises TreeFormatError naming line and field


def tree_files(path: str | os.PathLike) -> list[Path]:
    """``path`` itself, or for a directory its ``*.jsonl`` / ``*.jsonl.gz`` files (sorted, temp
    files of interrupted writes skipped)."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    found = sorted(p for p in path.iterdir() if p.is_file() and not is_temp_name(p.name)
                   and (p.name.endswith(".jsonl") or p.name.endswith(".jsonl.gz")))
    if not found:
        raise TreeFormatError("the directory holds no .jsonl or .jsonl.gz files",
                              source=str(path))
    return found


def read_tree_files(paths: Iterable[str | os.PathLike]) -> list[Tree]:
    """The trees of several files or directories, in order (see :func:`tree_files`)."""
    trees: list[Tree] = []
    for path in paths:
        for file in tree_files(path):
            trees.extend(read_trees(file))
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


def check_unique_keys(trees: Sequence[Tree], what: str = "trees") -> None:
    """Raise TreeFormatError when two trees share a :class:`TreeKey` (the same measurement twice:
    which one to use would be a silent choice)."""
    first: dict[TreeKey, Tree] = {}
    for tree in trees:
        key = tree.key
        if key in first:
            other = first[key]
            raise tree.error(f"the same tree ({key.describe()}, same settings) appears twice in "
                             f"the {what}: also at {other.where}; remove one",
                             field="model_name")
        first[key] = tree


# --------------------------------------------------------------------------------------------
# writing


class _Prefix(io.RawIOBase):
    """The first ``size`` bytes of a binary file, as a readable stream."""

    def __init__(self, handle: IO[bytes], size: int) -> None:
        self._handle, self._left = handle, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._handle.read(min(len(buffer), self._left))
        buffer[:len(data)] = data
        self._left -= len(data)
        return len(data)

    def close(self) -> None:
        self._handle.close()
        super().close()


def _open_text(path: str | os.PathLike, mode: str, *, end: int | None = None) -> IO[str]:
    """Open a text file, gzip-compressed when its name ends in ``.gz`` (reading: only its first
    ``end`` bytes, when given)."""
    if end is not None:
        raw: IO[bytes] = io.BufferedReader(_Prefix(open(path, "rb"), end))
        if str(path).endswith(".gz"):
            raw = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
        return io.TextIOWrapper(raw, encoding="utf-8")
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
    """Append one tree to a JSONL file (``.gz``: as a new gzip member) and flush it to disk.

    Call :func:`repair_torn_tail` once before a sweep's first append, so a line torn by an
    earlier crash is not glued to the new one. The tree is validated as a reader would
    (:func:`tree_from_dict`) before a byte is written. A failed write (a full disk) is cut
    back off, so the file still ends cleanly, and the error names ``path``.
    """
    from irene.files import output_errors

    text = tree.to_json()
    tree_from_dict(json.loads(text), source=f"{path} (the tree about to be appended)")
    line = (text + "\n").encode("utf-8")
    if str(path).endswith(".gz"):
        line = gzip.compress(line, mtime=0)
    with output_errors(path), open(path, "ab") as handle:
        size = handle.seek(0, os.SEEK_END)
        try:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        except OSError:
            try:
                handle.truncate(size)
            except OSError:
                pass  # the torn line stays; repair_torn_tail drops it at the next run
            raise


# --------------------------------------------------------------------------------------------
# the torn end of an appended file


class TailRepair(NamedTuple):
    """What :func:`repair_torn_tail` does to a file: cut it at byte ``cut`` (the complete trees
    end there), then add a newline when ``newline`` (the last complete line lacked one)."""

    cut: int
    newline: bool
    message: str


#: how much of a file is read at a time when scanning it (bytes)
_CHUNK = 1 << 20


def inspect_tail(path: str | os.PathLike) -> TailRepair | None:
    """Whether a trees file that is about to be appended to ends cleanly; the repair it needs
    if not (None: nothing to do). Nothing is changed.

    Only what an interrupted append leaves is repairable: a last line without its newline
    (plain JSONL) or a truncated last gzip member (``.gz``), and only when every complete tree
    before it is intact. Anything else -- a damaged member or line before the end, a ``.gz``
    that is not gzip data, a ``.jsonl`` that is -- raises :class:`TreeFormatError` saying why,
    since appending to it or cutting it would lose complete trees.
    """
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return None
    with open(path, "rb") as handle:
        if str(path).endswith(".gz"):
            return _inspect_gzip(path, handle)
        return _inspect_plain(path, handle)


def repair_torn_tail(path: str | os.PathLike) -> str | None:
    """Make an appendable trees file end cleanly; returns what was repaired (None if nothing).

    See :func:`inspect_tail` for what is repaired and what is refused (TreeFormatError): the
    torn remainder of an interrupted append is cut off in place (the complete trees before it
    are never rewritten), and the message says so.
    """
    repair = inspect_tail(path)
    if repair is None:
        return None
    with open(path, "r+b") as handle:
        handle.truncate(repair.cut)
        if repair.newline:
            handle.seek(0, os.SEEK_END)
            handle.write(gzip.compress(b"\n", mtime=0) if str(path).endswith(".gz") else b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    return repair.message


def _inspect_plain(path: Path, handle: IO[bytes]) -> TailRepair | None:
    if handle.read(2) == b"\x1f\x8b":
        raise TreeFormatError("holds gzip-compressed data although its name does not end in "
                              ".gz: appending plain lines would make it unreadable; rename it "
                              "to end in .gz", source=str(path))
    size = handle.seek(0, os.SEEK_END)
    handle.seek(size - 1)
    if handle.read(1) == b"\n":
        return None
    cut = _after_last_newline(handle, size)
    handle.seek(cut)
    torn = handle.read()
    try:
        json.loads(torn)
    except (ValueError, RecursionError):
        pass
    else:  # a complete line that only lacks its newline: nothing is dropped
        return TailRepair(size, True, f"{path}: added the missing newline at the end")
    complete, last_line = _check_intact(path, cut)
    line = last_line + 1
    if not torn.lstrip().startswith(b"{"):
        raise TreeFormatError(f"ends in {len(torn)} bytes without a newline that are neither a "
                              "tree nor the start of one (not left by an interrupted write); "
                              "not appending to the file or cutting it: check it",
                              source=str(path), line=line)
    return TailRepair(cut, False, f"{path}: dropped a torn last line (line {line}, {len(torn)} "
                                  "bytes) left by an interrupted write; the "
                                  f"{complete} complete tree(s) before it are kept")


def _after_last_newline(handle: IO[bytes], size: int) -> int:
    """The offset just after the last newline of a file (0 without one)."""
    pos = size
    while pos > 0:
        start = max(0, pos - _CHUNK)
        handle.seek(start)
        block = handle.read(pos - start)
        found = block.rfind(b"\n")
        if found >= 0:
            return start + found + 1
        pos = start
    return 0


def _check_intact(path: Path, end: int) -> tuple[int, int]:
    """Validate every tree in the first ``end`` bytes of a file (TreeFormatError saying the
    torn end is left alone otherwise); returns (trees, lines) counted."""
    trees = lines = 0
    source = str(path)
    with _open_text(path, "r", end=end) as handle:
        try:
            for lines, text in _numbered_lines(handle, source):
                tree_from_dict(_parse_line(text, source, lines), source=source, line=lines)
                trees += 1
        except TreeFormatError as exc:
            raise TreeFormatError(exc.message + "; the file also ends in a torn line, which is "
                                  "not repaired while complete trees before it are damaged",
                                  source=exc.source, line=exc.line, field=exc.field,
                                  scope=exc.scope) from exc
    return trees, lines


def _inspect_gzip(path: Path, handle: IO[bytes]) -> TailRepair | None:
    if handle.read(2) != b"\x1f\x8b":
        raise TreeFormatError("is not gzip-compressed although its name ends in .gz (plain "
                              "text?): appending a compressed tree would make its trees "
                              "unreadable; rename it without .gz, or compress it with gzip",
                              source=str(path))
    handle.seek(0)
    members, torn_at, ends_in_newline = _scan_gzip_members(path, handle)
    size = handle.seek(0, os.SEEK_END)
    if torn_at is None and ends_in_newline:
        return None
    cut = size if torn_at is None else torn_at
    complete, _ = _check_intact(path, cut)  # a last complete line without newline included
    if torn_at is None:
        return TailRepair(cut, True, f"{path}: added the missing newline at the end")
    return TailRepair(cut, not ends_in_newline,
                      f"{path}: dropped a truncated last gzip member ({size - cut} bytes) left "
                      f"by an interrupted write; the {complete} complete tree(s) in the "
                      f"{members} member(s) before it are kept")


def _scan_gzip_members(path: Path, handle: IO[bytes]) -> tuple[int, int | None, bool]:
    """Walk the gzip members of a file (every CRC and length checked, memory bounded): returns
    (complete members, offset where a truncated last member starts or None, whether the
    complete members' text ends in a newline). TreeFormatError for a damaged member."""
    members = start = fed = 0
    last = b"\n"  # the last byte of the complete members' text ("" counts as ending cleanly)
    member_last = b""
    stream = zlib.decompressobj(31)
    pending = b""
    while True:
        if not pending:
            pending = handle.read(_CHUNK)
            if not pending:
                break
        fed += len(pending)
        data, pending = pending, b""
        while True:
            try:
                out = stream.decompress(data, _CHUNK)
            except zlib.error as exc:
                raise TreeFormatError(
                    f"gzip member {members + 1} (at byte {start}) is damaged ({exc}): the trees "
                    "in it and after it cannot be read; not appending to the file or cutting "
                    "it, which would lose complete trees", source=str(path)) from exc
            if out:
                member_last = out[-1:]
            if stream.eof:
                rest = stream.unused_data + stream.unconsumed_tail
                members += 1
                start += fed - len(rest)
                last = member_last or last
                stream, fed, member_last, pending = zlib.decompressobj(31), 0, b"", rest
                break
            if not stream.unconsumed_tail and len(out) < _CHUNK:
                break  # all input taken and no output held back
            data = stream.unconsumed_tail
    return members, (start if fed else None), last == b"\n"
