"""Two trees side by side, module by module (matched by scope) and per primitive type.

Energies are joules per call; which energy of each tree is compared (predicted or measured) is
chosen as in :func:`irene.report.breakdown.energy_source`.
"""

from __future__ import annotations

from dataclasses import dataclass

from irene.report.breakdown import (
    Source,
    display_name,
    energy_source,
    node_energy,
    primitive_type_shares,
)
from irene.tree import Node, Tree


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
