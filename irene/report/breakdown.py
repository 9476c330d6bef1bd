"""Energy breakdowns of trees: pure functions, no printing.

Everything here reads :class:`irene.tree.Tree` objects and returns plain data (dataclasses, dicts,
lists) that the terminal, HTML and plot renderers draw. Energies are joules per call; shares are
fractions in [0, 1] (renderers turn them into percent); errors are signed percent
``100 * (predicted - measured) / measured``.

Which energy is explained (the *source*):

- ``"predicted"``: ``predicted_energy`` (a predictor's output), compared with
  ``ground_truth_energy`` wherever that is present too;
- ``"measured"``: ``ground_truth_energy``, for trees that carry no prediction.

``"auto"`` picks ``"predicted"`` when every node has a prediction, else ``"measured"`` when every
node has a ground truth, else it raises :class:`ValueError` naming the first node that has neither.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from irene.tree import NODE_TYPES, Node, Tree

Source = Literal["predicted", "measured"]
SOURCE_FIELDS: dict[str, str] = {"predicted": "predicted_energy", "measured": "ground_truth_energy"}

_UNITS = ((1e3, "kJ"), (1.0, "J"), (1e-3, "mJ"), (1e-6, "µJ"), (1e-9, "nJ"))


# --------------------------------------------------------------------------------------------
# formatting helpers shared by every renderer


def format_energy(joules: float | None, digits: int = 3) -> str:
    """An energy in joules as text with a readable unit: ``0.0123`` -> ``"12.3 mJ"``.

    ``digits`` significant digits; ``None`` -> ``"—"``; negative values keep their sign (used for
    differences).
    """
    if joules is None or (isinstance(joules, float) and math.isnan(joules)):
        return "—"
    rounded = float(f"{joules:.{digits}g}")  # round first: 0.9999 mJ is "1.00 mJ"
    if rounded == 0:
        return "0 J"
    magnitude = abs(rounded)
    scale, unit = next(((s, u) for s, u in _UNITS if magnitude >= s), _UNITS[-1])
    value = rounded / scale
    decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(value)) + 1e-9)))
    return f"{value:.{decimals}f} {unit}"


def format_percent(fraction: float | None, decimals: int = 1) -> str:
    """A fraction as percent text: ``0.613`` -> ``"61.3 %"``; ``None`` -> ``"—"``."""
    if fraction is None:
        return "—"
    return f"{100 * fraction:.{decimals}f} %"


def format_error(percent: float | None) -> str:
    """A signed percent error as text: ``-4.26`` -> ``"-4.3 %"``; ``None`` -> ``"—"``."""
    if percent is None:
        return "—"
    return f"{percent:+.1f} %"


# --------------------------------------------------------------------------------------------
# which energy to explain


def energy_source(tree: Tree, prefer: str = "auto") -> Source:
    """The energy field to explain for ``tree`` (see the module doc); raises ValueError if absent.

    ``prefer`` is ``"auto"``, ``"predicted"`` or ``"measured"``; an explicit choice is checked:
    every node must carry that energy.
    """
    if prefer not in ("auto", "predicted", "measured"):
        raise ValueError(f"energy source must be auto, predicted or measured, got {prefer!r}")
    candidates: tuple[Source, ...] = (
        ("predicted", "measured") if prefer == "auto" else (prefer,))  # type: ignore[assignment]
    for source in candidates:
        if _first_missing(tree, source) is None:
            return source
    missing = _first_missing(tree, candidates[0])
    assert missing is not None
    wanted = " or ".join(SOURCE_FIELDS[s] for s in candidates)
    raise ValueError(
        f"{tree.source}{'' if tree.line is None else f':{tree.line}'}: tree "
        f"{describe_tree(tree)!r} has no {wanted} on node {missing.scope!r}"
        + (" (run `irene predict` first)" if "predicted" in candidates else ""))


def _first_missing(tree: Tree, source: Source) -> Node | None:
    name = SOURCE_FIELDS[source]
    return next((n for n in tree.nodes() if getattr(n, name) is None), None)


def node_energy(node: Node, source: Source) -> float:
    """The node's energy in joules for ``source``; raises ValueError when the node has none."""
    value = getattr(node, SOURCE_FIELDS[source])
    if value is None:
        raise ValueError(f"node {node.scope!r} has no {SOURCE_FIELDS[source]}")
    return float(value)


def percent_error(predicted: float | None, measured: float | None) -> float | None:
    """Signed percent error of a prediction, or None without both values (or measured <= 0)."""
    if predicted is None or measured is None or measured <= 0:
        return None
    return 100.0 * (predicted - measured) / measured


def describe_tree(tree: Tree) -> str:
    """``"bert-base-uncased · batch 8 · seq 128"``: how trees are named to the user."""
    return f"{tree.model_name} · batch {tree.batch_size} · seq {tree.seq_len}"


# --------------------------------------------------------------------------------------------
# selecting a tree


def select_tree(trees: Sequence[Tree], *, index: int | None = None, model: str | None = None,
                batch_size: int | None = None, seq_len: int | None = None) -> Tree:
    """One tree out of a file: by 0-based ``index``, or by model/batch size/sequence length.

    With no criterion a file of one tree gives that tree. Raises ValueError listing what the file
    holds when the choice is ambiguous or matches nothing.
    """
    if not trees:
        raise ValueError("no trees to choose from")
    if index is not None:
        if any(v is not None for v in (model, batch_size, seq_len)):
            raise ValueError("choose a tree either by index or by model/batch size/seq len")
        if not -len(trees) <= index < len(trees):
            raise ValueError(f"tree index {index} out of range: the file holds {len(trees)} trees")
        return trees[index]
    matches = [t for t in trees
               if (model is None or t.model_name == model)
               and (batch_size is None or t.batch_size == batch_size)
               and (seq_len is None or t.seq_len == seq_len)]
    if len(matches) == 1:
        return matches[0]
    listing = "; ".join(f"[{i}] {describe_tree(t)}" for i, t in enumerate(trees[:12]))
    if len(trees) > 12:
        listing += f"; ... ({len(trees)} trees)"
    if not matches:
        raise ValueError(f"no tree matches the choice; the file holds: {listing}")
    raise ValueError(f"{len(matches)} trees match; choose one with --tree INDEX or "
                     f"--model/--batch-size/--seq-len. The file holds: {listing}")


# --------------------------------------------------------------------------------------------
# the breakdown tree


def display_name(node: Node, parent: Node | None) -> str:
    """A node's short name: its scope relative to its parent's (``"attention.self.query"`` ->
    ``"query"`` under ``"attention.self"``), or the whole scope at the root."""
    if parent is not None and parent.scope and node.scope.startswith(parent.scope + "."):
        return node.scope[len(parent.scope) + 1:]
    if parent is not None and "." in node.scope:
        return node.scope.rsplit(".", 1)[1]
    return node.scope or node.instance_type


@dataclass(frozen=True)
class NodeRow:
    """One node of a breakdown, in pre-order.

    ``energy_j`` is the explained energy (see :class:`Breakdown`); ``share_of_parent`` and
    ``share_of_model`` are fractions of the parent's and the root's explained energy (None at the
    root for the parent share). ``measured_j``/``predicted_j`` are the node's two energies when
    present; ``error_pct`` the signed percent error when both are. ``is_last`` says whether the
    node is its parent's last child (for drawing tree guides) and ``ancestors_last`` the same for
    each ancestor below the root.
    """

    node: Node
    depth: int
    name: str
    energy_j: float
    share_of_parent: float | None
    share_of_model: float
    measured_j: float | None
    predicted_j: float | None
    error_pct: float | None
    is_last: bool = True
    ancestors_last: tuple[bool, ...] = ()

    @property
    def scope(self) -> str:
        return self.node.scope


def short_model_name(name: str) -> str:
    """The last part of a model name or path: ``"owner/gpt2"`` -> ``"gpt2"``,
    ``"/configs/tiny/config.json"`` -> ``"tiny"``."""
    parts = [p for p in name.replace("\\", "/").split("/") if p]
    if len(parts) > 1 and parts[-1].endswith(".json"):
        return parts[-2]
    return parts[-1] if parts else name


def breakdown_rows(tree: Tree, source: Source, max_depth: int | None = None) -> list[NodeRow]:
    """Every node down to ``max_depth`` (root = 0, None = all), parents before children.

    The root row is named after the model (its scope is often just ``"root"``).
    """
    total = node_energy(tree.root, source)
    rows: list[NodeRow] = []
    stack: list[tuple[Node, Node | None, int, bool, tuple[bool, ...]]] = [
        (tree.root, None, 0, True, ())]
    while stack:
        node, parent, depth, is_last, ancestors = stack.pop()
        energy = node_energy(node, source)
        parent_energy = None if parent is None else node_energy(parent, source)
        name = short_model_name(tree.model_name) if parent is None else display_name(node, parent)
        rows.append(NodeRow(
            node=node, depth=depth, name=name, energy_j=energy,
            share_of_parent=_share(energy, parent_energy),
            share_of_model=_share(energy, total) or 0.0,
            measured_j=node.ground_truth_energy, predicted_j=node.predicted_energy,
            error_pct=percent_error(node.predicted_energy, node.ground_truth_energy),
            is_last=is_last, ancestors_last=ancestors))
        if max_depth is not None and depth >= max_depth:
            continue
        below = ancestors + (is_last,) if depth > 0 else ()
        for i, child in enumerate(reversed(node.children)):
            stack.append((child, node, depth + 1, i == 0, below))
    return rows


def _share(part: float, whole: float | None) -> float | None:
    if whole is None:
        return None
    return part / whole if whole > 0 else 0.0


# --------------------------------------------------------------------------------------------
# top-N and per-type aggregates

_INDEX_PART = re.compile(r"(?<=\.)\d+(?=\.|$)|^\d+(?=\.)")


def scope_pattern(scope: str) -> str:
    """The scope with numeric path components replaced by ``*``: repeated layers share it.

    ``"bert.encoder.layer.11.output.dense"`` -> ``"bert.encoder.layer.*.output.dense"``.
    """
    return _INDEX_PART.sub("*", scope)


@dataclass(frozen=True)
class Hotspot:
    """A node, or a group of repeated nodes (same scope pattern), ranked by energy.

    ``label`` is the scope (or scope pattern with ``*`` for a group of ``count`` nodes);
    ``energy_j`` the summed explained energy; ``share_of_model`` its fraction of the root's;
    ``measured_j`` the summed ground truth (None unless every member has one).
    """

    label: str
    instance_type: str
    count: int
    energy_j: float
    share_of_model: float
    measured_j: float | None = None

    @property
    def error_pct(self) -> float | None:
        return percent_error(self.energy_j, self.measured_j) if self.measured_j else None


def top_nodes(tree: Tree, source: Source, kind: str = "ml", n: int = 10,
              group_repeated: bool = True) -> list[Hotspot]:
    """The ``n`` most energy-hungry nodes of one ``kind`` (``"ml"`` primitives or ``"module"``).

    With ``group_repeated`` the nodes that differ only by a layer index (same
    :func:`scope_pattern` and instance type) are summed into one entry: twelve identical encoder
    layers appear once, with ``count=12``. Modules nest, so a module's energy also counts in its
    parents' entries. Ties keep tree order.
    """
    if kind not in NODE_TYPES:
        raise ValueError(f"kind must be one of {NODE_TYPES}, got {kind!r}")
    total = node_energy(tree.root, source)
    groups: dict[tuple[str, str], list[Node]] = {}
    for node in tree.nodes():
        if node.type != kind:
            continue
        label = scope_pattern(node.scope) if group_repeated else node.scope
        groups.setdefault((label, node.instance_type), []).append(node)
    spots = []
    for (label, instance_type), members in groups.items():
        energy = sum(node_energy(m, source) for m in members)
        measured = [m.ground_truth_energy for m in members]
        spots.append(Hotspot(
            label=label, instance_type=instance_type, count=len(members), energy_j=energy,
            share_of_model=_share(energy, total) or 0.0,
            measured_j=None if any(v is None for v in measured) else float(sum(measured))))
    spots.sort(key=lambda s: -s.energy_j)
    return spots[:n] if n >= 0 else spots


@dataclass(frozen=True)
class TypeShare:
    """The summed energy of every primitive (leaf) of one type, and its share of all leaves."""

    instance_type: str
    count: int
    energy_j: float
    share: float
    measured_j: float | None = None


def primitive_type_shares(tree: Tree, source: Source) -> list[TypeShare]:
    """Energy per primitive type over the leaves, largest first; shares sum to 1.

    Shares are of the *sum of the leaves* (not of the root: a module's measured or predicted
    energy need not equal its children's sum), so they always add up to 100 %. Types are grouped
    case-insensitively (``Linear`` and ``linear`` are one type), named as first seen.
    """
    by_type: dict[str, list[Node]] = {}
    names: dict[str, str] = {}
    for node in tree.nodes():
        if node.is_leaf:
            key = node.instance_type.lower()
            names.setdefault(key, node.instance_type)
            by_type.setdefault(key, []).append(node)
    energies = {k: sum(node_energy(n, source) for n in v) for k, v in by_type.items()}
    total = sum(energies.values())
    shares = []
    for key, members in by_type.items():
        measured = [m.ground_truth_energy for m in members]
        shares.append(TypeShare(
            instance_type=names[key], count=len(members), energy_j=energies[key],
            share=energies[key] / total if total > 0 else 1.0 / len(by_type),
            measured_j=None if any(v is None for v in measured) else float(sum(measured))))
    shares.sort(key=lambda s: -s.energy_j)
    return shares


# --------------------------------------------------------------------------------------------
# the whole explanation of one tree


@dataclass
class Breakdown:
    """Everything shown for one tree: what the terminal, the HTML page and the plots draw.

    ``source`` says which energy ``total_j`` and every row's ``energy_j`` are (predicted or
    measured); ``measured_total_j`` is the root's ground truth when present (then
    ``error_pct`` is the model-level percent error of the prediction).
    """

    tree: Tree
    source: Source
    total_j: float
    rows: list[NodeRow]
    top_primitives: list[Hotspot]
    top_modules: list[Hotspot]
    type_shares: list[TypeShare]
    measured_total_j: float | None = None
    error_pct: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def has_ground_truth(self) -> bool:
        return any(r.measured_j is not None for r in self.rows)


def explain_tree(tree: Tree, *, source: str = "auto", depth: int | None = None,
                 top: int = 10, group_repeated: bool = True) -> Breakdown:
    """The :class:`Breakdown` of one tree: rows down to ``depth``, ``top`` hotspots per kind."""
    chosen = energy_source(tree, source)
    total = node_energy(tree.root, chosen)
    notes = []
    if chosen == "measured":
        notes.append("this tree has no prediction: explaining its measured (ground-truth) energy")
    error = None
    if chosen == "predicted":
        error = percent_error(tree.root.predicted_energy, tree.root.ground_truth_energy)
    return Breakdown(
        tree=tree, source=chosen, total_j=total,
        rows=breakdown_rows(tree, chosen, depth),
        top_primitives=top_nodes(tree, chosen, "ml", top, group_repeated),
        top_modules=top_nodes(tree, chosen, "module", top, group_repeated),
        type_shares=primitive_type_shares(tree, chosen),
        measured_total_j=tree.root.ground_truth_energy, error_pct=error, notes=notes)


# --------------------------------------------------------------------------------------------
# predicted vs measured over many trees


@dataclass(frozen=True)
class ErrorStats:
    """Absolute percent errors of a group of nodes: count, mean (MAPE), median, 90th pct, max."""

    group: str
    count: int
    mape: float
    median_ape: float
    p90_ape: float
    max_ape: float
    mean_signed: float


def paired_energies(trees: Iterable[Tree]) -> list[tuple[Tree, Node, float, float]]:
    """Every node with both energies: (tree, node, predicted J, measured J)."""
    return [(t, n, float(n.predicted_energy), float(n.ground_truth_energy))
            for t in trees for n in t.nodes()
            if n.predicted_energy is not None and n.ground_truth_energy is not None
            and n.ground_truth_energy > 0]


def _stats(group: str, errors: Sequence[float]) -> ErrorStats:
    absolute = sorted(abs(e) for e in errors)
    return ErrorStats(group=group, count=len(errors), mape=sum(absolute) / len(absolute),
                      median_ape=_quantile(absolute, 0.5), p90_ape=_quantile(absolute, 0.9),
                      max_ape=absolute[-1], mean_signed=sum(errors) / len(errors))


def _quantile(ordered: Sequence[float], q: float) -> float:
    position = q * (len(ordered) - 1)
    low = int(math.floor(position))
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def error_stats_by_node_type(trees: Iterable[Tree]) -> list[ErrorStats]:
    """Percent-error statistics per node type (model, module, ml), for nodes with both energies."""
    groups: dict[str, list[float]] = {}
    for _, node, predicted, measured in paired_energies(trees):
        groups.setdefault(node.type, []).append(100.0 * (predicted - measured) / measured)
    return [_stats(kind, groups[kind]) for kind in NODE_TYPES if kind in groups]


def error_stats_by_primitive_type(trees: Iterable[Tree]) -> list[ErrorStats]:
    """Percent-error statistics per primitive type (leaves only), largest MAPE first."""
    groups: dict[str, list[float]] = {}
    names: dict[str, str] = {}
    for _, node, predicted, measured in paired_energies(trees):
        if node.is_leaf:
            key = node.instance_type.lower()
            names.setdefault(key, node.instance_type)
            groups.setdefault(key, []).append(100.0 * (predicted - measured) / measured)
    stats = [_stats(names[k], v) for k, v in groups.items()]
    stats.sort(key=lambda s: -s.mape)
    return stats


# --------------------------------------------------------------------------------------------
# comparing two trees


@dataclass(frozen=True)
class CompareRow:
    """One module in a comparison: energies in A and B (None where the module is absent)."""

    key: str
    name: str
    depth: int
    instance_type: str
    energy_a: float | None
    energy_b: float | None

    @property
    def diff_j(self) -> float | None:
        """B minus A in joules (None unless the module is in both)."""
        if self.energy_a is None or self.energy_b is None:
            return None
        return self.energy_b - self.energy_a

    @property
    def ratio(self) -> float | None:
        """B / A (None unless the module is in both and A > 0)."""
        if self.energy_a is None or self.energy_b is None or self.energy_a <= 0:
            return None
        return self.energy_b / self.energy_a


@dataclass
class Comparison:
    """Two trees side by side: totals, per-module rows (matched by scope) and per-type energies."""

    tree_a: Tree
    tree_b: Tree
    source_a: Source
    source_b: Source
    total_a: float
    total_b: float
    rows: list[CompareRow]
    types: list[tuple[str, float | None, float | None]]

    @property
    def diff_j(self) -> float:
        return self.total_b - self.total_a

    @property
    def ratio(self) -> float | None:
        return self.total_b / self.total_a if self.total_a > 0 else None


def match_key(node: Node, root: Node) -> str:
    """The key that matches a node across two trees: its scope relative to the root's scope."""
    if node is root:
        return ""
    if root.scope and node.scope.startswith(root.scope + "."):
        return node.scope[len(root.scope) + 1:]
    return node.scope


def compare_trees(tree_a: Tree, tree_b: Tree, *, source: str = "auto",
                  depth: int | None = 3) -> Comparison:
    """Compare two trees module by module (nodes down to ``depth``, matched by scope).

    The rows follow A's order; modules only in B are placed after their predecessor in B (so the
    extra layers of a deeper model appear after the shared ones).
    """
    source_a, source_b = energy_source(tree_a, source), energy_source(tree_b, source)
    nodes_a = _nodes_to_depth(tree_a, depth)
    nodes_b = _nodes_to_depth(tree_b, depth)
    b_by_key = {match_key(n, tree_b.root): (n, d, p) for n, d, p in nodes_b}
    rows: list[CompareRow] = []
    seen: set[str] = set()
    for node, d, parent in nodes_a:
        key = match_key(node, tree_a.root)
        other = b_by_key.get(key)
        rows.append(CompareRow(
            key=key, name="whole model" if parent is None else display_name(node, parent),
            depth=d, instance_type=node.instance_type,
            energy_a=node_energy(node, source_a),
            energy_b=None if other is None else node_energy(other[0], source_b)))
        seen.add(key)
    position = {r.key: i for i, r in enumerate(rows)}
    previous = ""
    for node, d, parent in nodes_b:
        key = match_key(node, tree_b.root)
        if key not in seen:
            at = position.get(previous, len(rows) - 1) + 1
            rows.insert(at, CompareRow(
                key=key, name=display_name(node, parent), depth=d,
                instance_type=node.instance_type, energy_a=None,
                energy_b=node_energy(node, source_b)))
            seen.add(key)
            position = {r.key: i for i, r in enumerate(rows)}
        previous = key
    types_a = {s.instance_type.lower(): s for s in primitive_type_shares(tree_a, source_a)}
    types_b = {s.instance_type.lower(): s for s in primitive_type_shares(tree_b, source_b)}
    types = []
    for key in dict.fromkeys(list(types_a) + list(types_b)):
        name = (types_a.get(key) or types_b[key]).instance_type
        types.append((name, types_a[key].energy_j if key in types_a else None,
                      types_b[key].energy_j if key in types_b else None))
    types.sort(key=lambda t: -max(t[1] or 0.0, t[2] or 0.0))
    return Comparison(tree_a=tree_a, tree_b=tree_b, source_a=source_a, source_b=source_b,
                      total_a=node_energy(tree_a.root, source_a),
                      total_b=node_energy(tree_b.root, source_b), rows=rows, types=types)


def _nodes_to_depth(tree: Tree, depth: int | None) -> list[tuple[Node, int, Node | None]]:
    out: list[tuple[Node, int, Node | None]] = []
    stack: list[tuple[Node, int, Node | None]] = [(tree.root, 0, None)]
    while stack:
        node, d, parent = stack.pop()
        out.append((node, d, parent))
        if depth is None or d < depth:
            stack.extend((c, d + 1, node) for c in reversed(node.children))
    return out


# --------------------------------------------------------------------------------------------
# joining gold trees and their predictions


def merge_predictions(gold: Sequence[Tree], predicted: Sequence[Tree]) -> list[Tree]:
    """Copies of the ``gold`` trees with ``predicted_energy`` taken from ``predicted``.

    Trees are matched by (model_name, batch_size, seq_len) and nodes by id, as
    :func:`irene.evaluation.node_errors` does. A gold tree or node without a prediction raises
    ValueError naming it (never a silent 0).
    """
    by_key = {t.key: {n.id: n.predicted_energy for n in t.nodes()} for t in predicted}
    merged = []
    for tree in gold:
        values = by_key.get(tree.key)
        if values is None:
            raise ValueError(f"no predicted tree for {describe_tree(tree)}")
        copy = _copy_tree(tree)
        for node in copy.nodes():
            value = values.get(node.id)
            if value is None:
                raise ValueError(f"{describe_tree(tree)}: no prediction for node {node.scope!r} "
                                 f"(id {node.id})")
            node.predicted_energy = value
        merged.append(copy)
    return merged


def _copy_tree(tree: Tree) -> Tree:
    from irene.tree import tree_from_dict

    return tree_from_dict(tree.to_dict(), source=tree.source, line=tree.line)
