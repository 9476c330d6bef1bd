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

import re
from dataclasses import dataclass, field
from typing import Literal

from irene.evaluation import percent_error
from irene.report.format import short_model_name
from irene.schema import NODE_TYPES
from irene.tree import Node, Tree

Source = Literal["predicted", "measured"]
SOURCE_FIELDS: dict[str, str] = {"predicted": "predicted_energy", "measured": "ground_truth_energy"}

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
    nodes = list(tree.nodes())
    missing = {s: [n for n in nodes if getattr(n, SOURCE_FIELDS[s]) is None]
               for s in candidates}
    for source in candidates:
        if not missing[source]:
            return source
    where = f"{tree.source}{'' if tree.line is None else f':{tree.line}'}: tree {tree.label!r}"
    partial = [s for s in candidates if len(missing[s]) < len(nodes)]
    if partial:  # name the node where the energy the tree does carry is missing
        source = min(partial, key=lambda s: len(missing[s]))
        lacking = missing[source]
        raise ValueError(f"{where} has {SOURCE_FIELDS[source]} on some nodes but not on node "
                         f"{lacking[0].scope!r} ({len(lacking)} of {len(nodes)} nodes lack it)")
    wanted = " or ".join(SOURCE_FIELDS[s] for s in candidates)
    raise ValueError(f"{where} has no {wanted} on node {nodes[0].scope!r} nor on any other"
                     + (" (run `irene predict` first)" if "predicted" in candidates else ""))


def node_energy(node: Node, source: Source) -> float:
    """The node's energy in joules for ``source``; raises ValueError when the node has none."""
    value = getattr(node, SOURCE_FIELDS[source])
    if value is None:
        raise ValueError(f"node {node.scope!r} has no {SOURCE_FIELDS[source]}")
    return float(value)


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


def breakdown_json(breakdown: Breakdown, *, note: str | None = None) -> dict:
    """The breakdown as plain JSON-ready data (energies in J, shares as fractions, errors in
    signed percent); ``note`` says which hardware the energies are for."""
    tree = breakdown.tree
    key = tree.key
    return {
        "tree": {"model_name": tree.model_name, "batch_size": tree.batch_size,
                 "seq_len": tree.seq_len, "phase": key.phase, "context_len": key.context_len,
                 "dtype": key.dtype, "device": key.device, "hardware": key.hardware,
                 "schema": key.schema},
        "energy_for": note,
        "source": breakdown.source,
        "total_j": breakdown.total_j,
        "measured_total_j": breakdown.measured_total_j,
        "error_pct": breakdown.error_pct,
        "notes": breakdown.notes,
        "nodes": [{"scope": r.scope, "name": r.name, "depth": r.depth, "type": r.node.type,
                   "instance_type": r.node.instance_type, "energy_j": r.energy_j,
                   "share_of_parent": r.share_of_parent, "share_of_model": r.share_of_model,
                   "measured_j": r.measured_j, "predicted_j": r.predicted_j,
                   "error_pct": r.error_pct} for r in breakdown.rows],
        "top_primitives": [_hotspot_json(s) for s in breakdown.top_primitives],
        "top_modules": [_hotspot_json(s) for s in breakdown.top_modules],
        "primitive_types": [{"instance_type": s.instance_type, "count": s.count,
                             "energy_j": s.energy_j, "share": s.share,
                             "measured_j": s.measured_j} for s in breakdown.type_shares],
    }


def _hotspot_json(spot: Hotspot) -> dict:
    return {"label": spot.label, "instance_type": spot.instance_type, "count": spot.count,
            "energy_j": spot.energy_j, "share_of_model": spot.share_of_model,
            "measured_j": spot.measured_j, "error_pct": spot.error_pct}
