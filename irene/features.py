"""Flattening trees into arrays of features (the names and sets are declared in irene.schema).

A node's feature vector is made of node fields (:data:`irene.schema.FEATURE_FIELDS`) and the
tree-level values broadcast to every node (:data:`irene.schema.TREE_FEATURE_NAMES`:
``batch_size``, ``seq_len``, ``input_size = batch_size * seq_len`` (tokens per call), the
``phase`` code and ``context_len``, from the root's ``phase`` / ``context_len``).
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from irene.schema import NODE_TYPE_CODES, PHASE_CODES, TREE_FEATURE_NAMES
from irene.tree import Node, Tree


def drop_leaky_features(names: list[str], trees: Sequence[Tree]) -> list[str]:
    """Remove features that are the training target itself (e.g. ``gpu_energy_mean`` when NVML
    measured the ground truth, per the trees' ``meter`` / ``leaky_features`` metadata), with a
    warning that says which and why."""
    from irene.measure import leaky_features

    leaky: set[str] = set()
    for tree in trees:
        leaky |= leaky_features(tree.meta.get("meter"))
        leaky |= set(tree.meta.get("leaky_features", []))
    dropped = [n for n in names if n in leaky]
    if dropped:
        warnings.warn(
            f"dropping feature(s) {dropped}: the ground truth was measured by the same meter, so "
            "they would be the target itself", stacklevel=3)
    return [n for n in names if n not in leaky]


def tree_level_value(tree: Tree, name: str) -> float:
    """A feature that belongs to the whole tree: batch_size, seq_len, input_size (tokens),
    phase (its code in :data:`irene.schema.PHASE_CODES`) or context_len (tokens)."""
    if name == "phase":
        phase = tree.key.phase
        if phase not in PHASE_CODES:
            raise tree.error(f"unknown phase {phase!r} (known: {', '.join(PHASE_CODES)})",
                             field="phase")
        return float(PHASE_CODES[phase])
    if name == "context_len":
        return float(tree.key.context_len)
    if name == "batch_size":
        return float(tree.batch_size)
    if name == "seq_len":
        return float(tree.seq_len)
    if name == "input_size":
        return float(tree.batch_size * tree.seq_len)
    raise KeyError(name)


def segment_sum(values: np.ndarray, index: np.ndarray, size: int) -> np.ndarray:
    """``out[i] = Σ values[index == i]`` for ``values`` of shape [M] or [M, F]."""
    if values.ndim == 1:
        return np.bincount(index, weights=values, minlength=size)
    columns = [np.bincount(index, weights=values[:, j], minlength=size)
               for j in range(values.shape[1])]
    return np.stack(columns, axis=1) if columns else np.zeros((size, 0))


def _c_order(array: np.ndarray) -> np.ndarray:
    """``array`` laid out row by row, as :meth:`FlatForest.from_trees` builds it (reductions
    over another layout may add in another order and differ in the last bits)."""
    return np.ascontiguousarray(array)


@dataclass
class FlatForest:
    """All nodes of many trees as arrays, ordered so that every parent precedes its children.

    Shapes: ``N`` nodes, ``F`` features. ``x`` [N, F] raw features; ``gold`` [N] ground-truth
    energy in joules (NaN where absent); ``parent`` [N] index of the parent (-1 for roots);
    ``depth`` [N] (0 at roots); ``node_type`` [N] codes of :data:`NODE_TYPE_CODES`;
    ``instance_type`` [N] lower-cased instance type; ``nodes`` the Node objects
    in the same order (for writing predictions back); ``child_sum_x`` [N, F] the sum of the
    children's raw features (0 at leaves).
    """

    feature_names: list[str]
    x: np.ndarray
    gold: np.ndarray
    parent: np.ndarray
    depth: np.ndarray
    node_type: np.ndarray
    instance_type: np.ndarray
    nodes: list[Node]
    child_sum_x: np.ndarray

    @classmethod
    def from_trees(cls, trees: Sequence[Tree], names: Sequence[str]) -> FlatForest:
        """Flatten ``trees`` once (the only per-node Python loop of training and prediction)."""
        node_cols = [i for i, n in enumerate(names) if n not in TREE_FEATURE_NAMES]
        parent, depth, tree_idx, nodes = [], [], [], []
        for t, tree in enumerate(trees):
            stack: list[tuple[Node, int, int]] = [(tree.root, -1, 0)]
            while stack:
                node, parent_index, d = stack.pop()
                index = len(nodes)
                nodes.append(node)
                parent.append(parent_index)
                depth.append(d)
                tree_idx.append(t)
                for child in reversed(node.children):
                    stack.append((child, index, d + 1))
        tree_idx_arr = np.asarray(tree_idx, dtype=np.int64)
        x = np.empty((len(nodes), len(names)))
        if node_cols:
            getter = operator.itemgetter(*[names[i] for i in node_cols])
            values = [getter(node.features) for node in nodes]
            x[:, node_cols] = np.asarray(values, dtype=np.float64).reshape(len(nodes), -1)
        for i, name in enumerate(names):
            if name in TREE_FEATURE_NAMES:
                per_tree = np.array([tree_level_value(tree, name) for tree in trees])
                x[:, i] = per_tree[tree_idx_arr]
        gold = [np.nan if n.ground_truth_energy is None else n.ground_truth_energy for n in nodes]
        kind = [NODE_TYPE_CODES[n.type] for n in nodes]
        inst = [n.instance_type.lower() for n in nodes]
        parent_arr = np.asarray(parent, dtype=np.int64)
        has_parent = parent_arr >= 0
        child_sum = segment_sum(x[has_parent], parent_arr[has_parent], len(nodes))
        return cls(
            feature_names=list(names), x=x, gold=np.asarray(gold, dtype=np.float64),
            parent=parent_arr, depth=np.asarray(depth, dtype=np.int64),
            node_type=np.asarray(kind, dtype=np.int64), instance_type=np.asarray(inst),
            nodes=nodes, child_sum_x=child_sum,
        )

    def select(self, trees: np.ndarray | None = None,
               names: Sequence[str] | None = None) -> FlatForest:
        """The forest of the trees where the boolean mask ``trees`` (one entry per flattened
        tree, in order; None: all) is True, with the columns ``names`` (a subset of
        ``feature_names``; None: all): the same arrays :meth:`from_trees` gives for those trees
        and names, without walking the trees again."""
        names = list(self.feature_names if names is None else names)
        columns = [self.feature_names.index(name) for name in names]
        if trees is None:  # the same nodes: share what does not depend on the columns
            return FlatForest(
                feature_names=names, x=_c_order(self.x[:, columns]), gold=self.gold,
                parent=self.parent, depth=self.depth, node_type=self.node_type,
                instance_type=self.instance_type, nodes=self.nodes,
                child_sum_x=_c_order(self.child_sum_x[:, columns]))
        tree_of_node = np.cumsum(self.parent < 0) - 1
        rows = np.flatnonzero(np.asarray(trees, dtype=bool)[tree_of_node])
        new_index = np.full(len(self.nodes), -1, dtype=np.int64)
        new_index[rows] = np.arange(rows.size)
        parent = self.parent[rows]
        return FlatForest(
            feature_names=names, x=_c_order(self.x[np.ix_(rows, columns)]), gold=self.gold[rows],
            parent=np.where(parent >= 0, new_index[parent], -1), depth=self.depth[rows],
            node_type=self.node_type[rows], instance_type=self.instance_type[rows],
            nodes=[self.nodes[i] for i in rows.tolist()],
            child_sum_x=_c_order(self.child_sum_x[np.ix_(rows, columns)]))

    def roots(self) -> list[Node]:
        """The root node of every flattened tree, in order."""
        return [self.nodes[i] for i in np.flatnonzero(self.parent < 0).tolist()]

    @property
    def is_leaf(self) -> np.ndarray:
        return self.node_type == NODE_TYPE_CODES["ml"]

    def gold_child_sum(self) -> np.ndarray:
        """Σ of the children's ground-truth energies per node, joules (0 at leaves)."""
        has_parent = self.parent >= 0
        return segment_sum(self.gold[has_parent], self.parent[has_parent], len(self.gold))
