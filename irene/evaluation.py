"""Percentage errors per node type and leave-one-model-out cross-validation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from irene.tree import Tree, TreeFormatError

NODE_TYPES = ("ml", "module", "model")


def node_errors(gold: Sequence[Tree], pred: Sequence[Tree]) -> dict[str, np.ndarray]:
    """Absolute percentage error |pred - gold| / gold × 100 of every gold node, per node type.

    Trees are matched by (model_name, batch_size, seq_len) and nodes by id. A gold node without a
    prediction is an error that names it (it is never counted as 0).
    """
    by_key = {}
    for tree in pred:
        by_key[tree.key] = {n.id: n.predicted_energy for n in tree.nodes()}
    errors: dict[str, list[float]] = {t: [] for t in NODE_TYPES}
    for tree in gold:
        predicted = by_key.get(tree.key)
        if predicted is None:
            raise tree.error(f"no predicted tree for model {tree.model_name!r}, batch size "
                             f"{tree.batch_size}, sequence length {tree.seq_len}")
        for node in tree.nodes():
            if node.ground_truth_energy is None:
                raise tree.error("missing in the gold file", field="ground_truth_energy",
                                 scope=node.scope)
            if node.ground_truth_energy <= 0:
                raise tree.error("must be positive", field="ground_truth_energy",
                                 scope=node.scope)
            value = predicted.get(node.id)
            if value is None:
                raise TreeFormatError(
                    f"no prediction for this node (id {node.id}) of tree {tree.key}",
                    source="predictions", field="predicted_energy", scope=node.scope)
            gold_e = node.ground_truth_energy
            errors[node.type].append(abs(value - gold_e) / gold_e * 100.0)
    return {t: np.asarray(v) for t, v in errors.items()}


def percentage_errors(gold: Sequence[Tree], pred: Sequence[Tree],
                      node_types: Sequence[str] = NODE_TYPES) -> dict[str, float]:
    """Mean absolute percentage error (%) per node type (NaN for a type with no nodes)."""
    errors = node_errors(gold, pred)
    return {t: float(errors[t].mean()) if errors[t].size else float("nan") for t in node_types}


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
    models = list(dict.fromkeys(t.model_name for t in trees))
    if len(models) < 2:
        raise ValueError(f"leave-one-model-out needs at least 2 models, the data has {models}")
    per_model, predictions = {}, {}
    for name in tqdm(models, desc="cross-validation", unit="fold", disable=not progress):
        train = [t for t in trees if t.model_name != name]
        test = [t for t in trees if t.model_name == name]
        predicted = make_model().fit(train).predict(test)
        per_model[name] = percentage_errors(test, predicted)
        predictions[name] = predicted
    overall = {t: float(np.mean([row[t] for row in per_model.values()])) for t in NODE_TYPES}
    return CrossValidation(per_model=per_model, overall=overall, predictions=predictions)
