"""Scoring predictions: the one join of gold and predicted energies, errors, cross-validation.

Everything that compares a prediction with a measurement reads one :class:`PairedNodes` table —
one row per node: its tree, the node, its type, its primitive type, its model, the measured
(gold) energy, the predicted energy and the signed percent error. ``irene evaluate``,
cross-validation, the report's error tables, the figures and the HTML page all use it.

Errors are percent: signed ``100 · (predicted − gold) / gold``; absolute ``|…|``; MAPE is the
mean absolute percentage error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from irene.schema import NODE_TYPES, REPORT_ORDER  # noqa: F401 (REPORT_ORDER re-exported)
from irene.tree import Node, Tree, TreeFormatError, check_unique_keys

#: node types in the order errors are reported: primitives first, as in IrEne's tables


def percent_error(predicted: float | None, measured: float | None) -> float | None:
    """Signed percent error of one prediction, or None without both values (or measured <= 0)."""
    if predicted is None or measured is None or measured <= 0:
        return None
    return 100.0 * (predicted - measured) / measured


@dataclass
class PairedNodes:
    """Gold vs predicted energy, one row per node (all arrays of length ``len(self)``).

    ``trees[tree_index[i]]`` is row i's tree and ``nodes[i]`` its node (the gold node);
    ``node_type`` (model/module/ml), ``instance_type`` (as written in the tree), ``model``
    (the tree's model name); ``gold`` and ``predicted`` in joules per call; ``error`` the signed
    percent error.
    """

    trees: list[Tree]
    tree_index: np.ndarray
    nodes: list[Node]
    node_type: np.ndarray
    instance_type: np.ndarray
    model: np.ndarray
    gold: np.ndarray
    predicted: np.ndarray

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def error(self) -> np.ndarray:
        """Signed percent error per row."""
        return 100.0 * (self.predicted - self.gold) / self.gold

    @property
    def abs_error(self) -> np.ndarray:
        """Absolute percent error per row."""
        return np.abs(self.error)

    def tree_of(self, row: int) -> Tree:
        return self.trees[int(self.tree_index[row])]

    def where(self, mask: np.ndarray) -> PairedNodes:
        """The rows where ``mask`` is True."""
        rows = np.flatnonzero(mask)
        return PairedNodes(self.trees, self.tree_index[rows], [self.nodes[i] for i in rows],
                           self.node_type[rows], self.instance_type[rows], self.model[rows],
                           self.gold[rows], self.predicted[rows])

    @classmethod
    def from_rows(cls, trees: list[Tree], rows: list[tuple[int, Node, float, float]]
                  ) -> PairedNodes:
        """Build from (tree index, node, gold J, predicted J) rows."""
        index = np.asarray([r[0] for r in rows], dtype=np.int64)
        nodes = [r[1] for r in rows]
        return cls(trees=trees, tree_index=index, nodes=nodes,
                   node_type=np.asarray([n.type for n in nodes], dtype=object),
                   instance_type=np.asarray([n.instance_type for n in nodes], dtype=object),
                   model=np.asarray([trees[i].model_name for i in index.tolist()], dtype=object),
                   gold=np.asarray([r[2] for r in rows], dtype=np.float64),
                   predicted=np.asarray([r[3] for r in rows], dtype=np.float64))


def pair_predictions(gold: Sequence[Tree], predicted: Sequence[Tree]) -> PairedNodes:
    """Join gold trees with the trees of their predictions: trees by :attr:`Tree.key`, nodes by
    id. Every gold node must have a positive ground truth and a prediction (else
    TreeFormatError naming it: a missing value is never counted as 0); a key that appears twice
    on either side is an error too."""
    check_unique_keys(gold, "gold trees")
    check_unique_keys(predicted, "predicted trees")
    by_key = {t.key: t for t in predicted}
    rows: list[tuple[int, Node, float, float]] = []
    for index, tree in enumerate(gold):
        other = by_key.get(tree.key)
        if other is None:
            raise tree.error(f"no predicted tree for {tree.label} (with the same settings)")
        values = {n.id: n.predicted_energy for n in other.nodes()}
        for node in tree.nodes():
            if node.ground_truth_energy is None:
                raise tree.error("missing in the gold file", field="ground_truth_energy",
                                 scope=node.scope)
            if node.ground_truth_energy <= 0:
                raise tree.error("must be positive", field="ground_truth_energy",
                                 scope=node.scope)
            value = values.get(node.id)
            if value is None:
                raise TreeFormatError(
                    f"no prediction for this node (id {node.id}) of {tree.label}",
                    source=other.source, line=other.line, field="predicted_energy",
                    scope=node.scope)
            rows.append((index, node, node.ground_truth_energy, value))
    return PairedNodes.from_rows(list(gold), rows)


def pair_within(trees: Iterable[Tree]) -> PairedNodes:
    """Every node of ``trees`` that carries both a prediction and a positive ground truth."""
    trees = list(trees)
    rows = [(i, n, float(n.ground_truth_energy), float(n.predicted_energy))
            for i, t in enumerate(trees) for n in t.nodes()
            if n.predicted_energy is not None and n.ground_truth_energy is not None
            and n.ground_truth_energy > 0]
    return PairedNodes.from_rows(trees, rows)


def merge_predictions(gold: Sequence[Tree], predicted: Sequence[Tree]) -> list[Tree]:
    """Copies of the ``gold`` trees with ``predicted_energy`` taken from ``predicted`` (joined as
    :func:`pair_predictions` does)."""
    paired = pair_predictions(gold, predicted)
    value = {id(node): p for node, p in zip(paired.nodes, paired.predicted.tolist(), strict=True)}
    merged = []
    for tree in gold:
        copy = tree.copy()
        for original, node in zip(tree.nodes(), copy.nodes(), strict=True):
            node.predicted_energy = value[id(original)]
        merged.append(copy)
    return merged


# --------------------------------------------------------------------------------------------
# statistics


@dataclass(frozen=True)
class ErrorStats:
    """Percent errors of a group of nodes: count, mean absolute (MAPE), median, 90th percentile
    and max absolute, and the mean signed error (bias)."""

    group: str
    count: int
    mape: float
    median_ape: float
    p90_ape: float
    max_ape: float
    mean_signed: float


def error_stats(paired: PairedNodes, by: str = "node_type") -> list[ErrorStats]:
    """:class:`ErrorStats` per group of rows; ``by`` is ``"node_type"`` (in the order model,
    module, ml), ``"instance_type"`` (leaves only, case-insensitive, largest MAPE first) or
    ``"model"`` (in first-seen order)."""
    if by == "instance_type":
        leaves = paired.where(paired.node_type == "ml")
        keys = np.asarray([t.lower() for t in leaves.instance_type], dtype=object)
        names = dict(zip(keys.tolist(), leaves.instance_type.tolist(), strict=True))
        groups = _group(leaves.error, keys, list(dict.fromkeys(keys.tolist())))
        stats = [_stats(names[k], v) for k, v in groups.items()]
        return sorted(stats, key=lambda s: -s.mape)
    if by == "node_type":
        return [_stats(k, v) for k, v in
                _group(paired.error, paired.node_type, list(NODE_TYPES)).items()]
    if by == "model":
        order = list(dict.fromkeys(paired.model.tolist()))
        return [_stats(k, v) for k, v in _group(paired.error, paired.model, order).items()]
    raise ValueError(f"group errors by node_type, instance_type or model, not {by!r}")


def _group(errors: np.ndarray, keys: np.ndarray, order: list[str]) -> dict[str, np.ndarray]:
    return {k: errors[keys == k] for k in order if np.any(keys == k)}


def _stats(group: str, errors: np.ndarray) -> ErrorStats:
    absolute = np.abs(errors)
    return ErrorStats(group=str(group), count=int(errors.size), mape=float(absolute.mean()),
                      median_ape=float(np.quantile(absolute, 0.5)),
                      p90_ape=float(np.quantile(absolute, 0.9)), max_ape=float(absolute.max()),
                      mean_signed=float(errors.mean()))


def mape_by_node_type(paired: PairedNodes,
                      node_types: Sequence[str] = REPORT_ORDER) -> dict[str, float]:
    """MAPE (%) per node type (NaN for a type without rows)."""
    out = {}
    for kind in node_types:
        errors = paired.abs_error[paired.node_type == kind]
        out[kind] = float(errors.mean()) if errors.size else float("nan")
    return out


def percentage_errors(gold: Sequence[Tree], pred: Sequence[Tree],
                      node_types: Sequence[str] = REPORT_ORDER) -> dict[str, float]:
    """Mean absolute percentage error (%) per node type of ``pred`` against ``gold``."""
    return mape_by_node_type(pair_predictions(gold, pred), node_types)


# --------------------------------------------------------------------------------------------
# cross-validation


@dataclass
class CrossValidation:
    """Leave-one-model-out results: ``per_model[name][node_type]`` = MAPE (%) on the trees of the
    held-out model; ``overall[node_type]`` = mean of the per-model values; ``predictions[name]`` =
    the held-out trees with their predictions."""

    per_model: dict[str, dict[str, float]]
    overall: dict[str, float]
    predictions: dict[str, list[Tree]] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"per_model": self.per_model, "overall": self.overall}

    def held_out(self, trees: Sequence[Tree]) -> list[Tree]:
        """The held-out prediction of each of ``trees`` (the trees cross-validated), in their
        order: each carries its ground truth and its prediction on every node, as
        :func:`merge_predictions` of ``trees`` and the predictions would give, without a
        second copy."""
        by_key = {t.key: t for fold in self.predictions.values() for t in fold}
        return [by_key[t.key] for t in trees]

    def table(self) -> str:
        """A plain-text table: one row per held-out model and an overall row, in percent."""
        width = max([len("overall")] + [len(m) for m in self.per_model])
        lines = [f"{'held-out model':<{width}}  {'ml %':>8} {'module %':>9} {'model %':>8}"]
        rows = [*self.per_model.items(), ("overall", self.overall)]
        for name, row in rows:
            lines.append(f"{name:<{width}}  {row['ml']:8.2f} {row['module']:9.2f} "
                         f"{row['model']:8.2f}")
        return "\n".join(lines)


def leave_one_model_out(trees: Sequence[Tree], make_model: Callable[[], Any], *,
                        progress: bool = False) -> CrossValidation:
    """Train on all models but one, predict the one left out, for every model in turn."""
    check_unique_keys(trees)
    models = list(dict.fromkeys(t.model_name for t in trees))
    if len(models) < 2:
        raise ValueError(f"leave-one-model-out needs at least 2 models, the data has {models}")
    per_model, predictions = {}, {}
    flat = _flatten_once(make_model, trees)
    names = np.asarray([t.model_name for t in trees], dtype=object)
    for name in tqdm(models, desc="cross-validation", unit="fold", disable=not progress):
        train = [t for t in trees if t.model_name != name]
        test = [t for t in trees if t.model_name == name]
        if flat is None:
            predicted = make_model().fit(train).predict(test)
        else:
            held_out = names == name
            predicted = make_model().fit(train, flat=flat.select(~held_out)).predict(
                test, flat=flat.select(held_out))
        per_model[name] = percentage_errors(test, predicted)
        predictions[name] = predicted
    overall = {t: float(np.mean([row[t] for row in per_model.values()])) for t in REPORT_ORDER}
    return CrossValidation(per_model=per_model, overall=overall, predictions=predictions)


def _flatten_once(make_model: Callable[[], Any], trees: Sequence[Tree]) -> Any:
    """All ``trees`` flattened once for every fold (a ``FlatForest``), when the models
    ``make_model`` makes can take one (a tree predictor's ``flatten``); else None."""
    flatten = getattr(make_model(), "flatten", None)
    return None if flatten is None else flatten(trees)
