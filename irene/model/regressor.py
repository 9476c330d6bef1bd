"""IreneRegressor: per-node energy prediction over whole trees (the IrEne method, vectorised).

Prediction for a tree (all energies in joules per call):

* a leaf (``ml`` node) of primitive type ``k``: ``pred = f_k(x)``, a linear model of its features
  (or, with ``leaf_fit="log"``, ``exp`` of a linear model of log features), one per primitive type
  plus one shared by all types for types never seen in training;
* an inner node: ``pred = Σ_children w(x_child) · pred(child) + overhead(node)`` with
  ``w(x) = 1 + tanh(a·φ(x) + b) / τ`` (``close_to_one``; ``exact_one`` gives w = 1, ``free``
  gives ``w = 1 + a·φ(x) + b``), ``φ`` the degree-3 polynomial expansion of standardised
  features, and ``overhead(node) = β · Δx`` where ``Δx`` is how much a node's additive features
  (FLOPs, bytes, latency, GPU energy, parameters) exceed the sum of its children's: the energy a
  module spends beyond its parts (launches, reshapes, operations not traced as primitives).
  ``module_overhead=False`` drops that term and gives IrEne's original model.

Training minimises the relative squared error ``((pred - gold) / gold)²`` over every node of every
tree with Adam, full batch: trees are flattened once into arrays and each forward pass aggregates
level by level from the deepest up with ``bincount`` — a handful of array operations per epoch,
independent of the order of the trees. The gradient is written out (reverse mode by hand, from the
root level down; :meth:`IreneRegressor._gradients`), so the predictor needs numpy only: no torch
import (a second or more of every command that trains or predicts).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from itertools import combinations_with_replacement
from typing import Any

import numpy as np

from irene.checks import Checker
from irene.features import FlatForest
from irene.model.base import PredictionError, TreePredictor
from irene.model.optim import Adam, weighted_lstsq
from irene.model.params import (
    INNER_KINDS,
    LEAF_FITS,
    SHARED_TYPE,
    STRATEGIES,
    WEIGHTINGS,
    check_params,
)
from irene.model.state import FittedState, TrainingData
from irene.schema import ADDITIVE_FEATURES, NODE_TYPE_CODES, Schema, feature_names

#: what leaves read with leaf_features="auto" when the direct readings are among the features
AUTO_LEAF_FEATURES = ("times_mean", "gpu_energy_mean", "num_parameters", "input_size")

__all__ = ["DEFAULT_CONFIG", "INNER_KINDS", "LEAF_FITS", "SHARED_TYPE", "STRATEGIES",
           "WEIGHTINGS", "IreneRegressor", "PredictionError"]


def polynomial_expand(z: np.ndarray, degree: int) -> np.ndarray:
    """All monomials of the columns of ``z`` [N, F] of degree 1..``degree``, [N, M]."""
    columns = [z]
    for d in range(2, degree + 1):
        combos = np.array(list(combinations_with_replacement(range(z.shape[1]), d)),
                          dtype=np.int64).reshape(-1, d)
        columns.append(np.prod(z[:, combos], axis=2))
    return np.concatenate(columns, axis=1)


def _standardize_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


class IreneRegressor(TreePredictor):
    """Predict the energy (J per model call) of every node of energy trees.

    Parameters (IrEne's configuration keys plus ours; all keyword-only, checked at once —
    a bad value raises ValueError naming it):

    feature_sets : IrEne's feature sets (``"model_specs"``: batch size, sequence length, FLOPs,
        bytes — structure only; ``"resource_utilization"``: latency, utilisation, clocks, GPU
        energy — readings taken on the hardware); parameters and tokens are always added.
    polynomial_features, polynomial_degree : expand the child-weight inputs into monomials of
        degree 1..``polynomial_degree`` (at most 4).
    standardize_features : standardise features (zero mean, unit variance on the training set).
    training_strategy : ``end2end`` (train weights and overheads over whole trees), ``stepwise``
        (children's gold energies in the sums during training), ``unstructured`` (every node a
        regressor of its own features) or ``none`` (closed-form start only).
    weighting_setting : ``close_to_one`` (w = 1 + tanh(·)/τ), ``exact_one`` (w = 1) or ``free``.
    tanh_scalar : τ, > 0.
    normalize_loss_scale : relative squared error (True) or squared error over mean gold².
    leaf_fit : ``relative`` (minimise relative squared error, closed form), ``ols`` or ``log``.
    leaf_features : ``"auto"`` (latency, GPU energy, parameters, tokens when both readings are
        features, else all), ``"all"``, or a list of feature names.
    leaf_ridge : ridge penalty (>= 0) of the closed-form fits.
    module_overhead : add ``β·Δx`` at inner nodes (their work beyond their children).
    epochs, learning_rate, tol, n_iter_no_change : full-batch Adam with early stopping.
    finetune_leaves : also train the leaf regressors end to end.
    seed : random seed.

    ``fit(trees)`` returns ``self`` and sets ``state_`` (:class:`FittedState`); ``predict(trees)``
    returns deep copies of the trees with ``predicted_energy`` (J) on every node.
    """

    estimator = "irene"

    def __init__(self, *, feature_sets: Sequence[str] = ("model_specs", "resource_utilization"),
                 polynomial_features: bool = False, polynomial_degree: int = 3,
                 standardize_features: bool = True, training_strategy: str = "end2end",
                 weighting_setting: str = "close_to_one", tanh_scalar: float = 10.0,
                 normalize_loss_scale: bool = True, leaf_fit: str = "relative",
                 leaf_features: str | Sequence[str] = "auto", leaf_ridge: float = 1e-6,
                 module_overhead: bool = True, epochs: int = 300, learning_rate: float = 0.01,
                 finetune_leaves: bool = False, tol: float = 1e-4, n_iter_no_change: int = 10,
                 seed: int = 0) -> None:
        self.feature_sets = list(feature_sets) if isinstance(feature_sets, (list, tuple)) \
            else feature_sets
        self.polynomial_features = polynomial_features
        self.polynomial_degree = polynomial_degree
        self.standardize_features = standardize_features
        self.training_strategy = training_strategy
        self.weighting_setting = weighting_setting
        self.tanh_scalar = tanh_scalar
        self.normalize_loss_scale = normalize_loss_scale
        self.leaf_fit = leaf_fit
        self.leaf_features = list(leaf_features) if isinstance(leaf_features, (list, tuple)) \
            else leaf_features
        self.leaf_ridge = leaf_ridge
        self.module_overhead = module_overhead
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.finetune_leaves = finetune_leaves
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.seed = seed
        check_params(self.get_params())
        self.state_: FittedState | None = None

    @classmethod
    def check_params(cls, params: dict[str, Any], check: Checker | None = None,
                     at: tuple = ()) -> None:
        """InputError naming an unknown or the first invalid setting (see
        :func:`irene.model.params.check_params`)."""
        check_params(params, None, check, at)

    # ----------------------------------------------------------------------------------- fit
    def _feature_names(self) -> list[str]:
        return feature_names(self.feature_sets)

    def _fit_flat(self, flat: FlatForest, schema: Schema, training_data: TrainingData,
                  progress: bool) -> None:
        self.state_ = self._initial_state(flat, schema, training_data)
        self._train(flat, progress=progress)

    def _initial_state(self, flat: FlatForest, schema: Schema,
                       training_data: TrainingData) -> FittedState:
        """Closed-form start: leaf fits, overheads, weights at 1 (corrections at 0)."""
        leaf = flat.is_leaf
        x_mean, x_std = _standardize_stats(self._transform(flat.x))
        if not self.standardize_features:
            x_mean, x_std = np.zeros_like(x_mean), np.ones_like(x_std)
        additive = [i for i, n in enumerate(flat.feature_names) if n in ADDITIVE_FEATURES]
        # one leaf regressor per primitive type + one shared; "unstructured": one per inner kind
        keys = sorted(set(flat.instance_type[leaf].tolist())) + [SHARED_TYPE]
        if self.training_strategy == "unstructured":
            keys += [f"<{k}>" for k in INNER_KINDS]
        n_poly = self._poly(np.zeros((1, len(flat.feature_names)))).shape[1]
        gold_inner = [flat.gold[flat.node_type == NODE_TYPE_CODES[k]] for k in INNER_KINDS]
        state = FittedState(
            feature_names=list(flat.feature_names), leaf_types=keys, additive_index=additive,
            leaf_index=self._leaf_index(flat.feature_names), schema=schema.to_dict(),
            training_data=training_data, x_mean=x_mean, x_std=x_std,
            leaf_theta=np.zeros(0), leaf_scale=np.zeros(0), leaf_delta=np.zeros(0),
            overhead_beta=np.zeros(0), overhead_scale=np.zeros(0),
            overhead_unit=np.array([float(np.median(g)) if g.size else 1.0
                                    for g in gold_inner]),
            beta_delta=np.zeros(0), weight_a=np.zeros((len(INNER_KINDS), n_poly)),
            weight_b=np.zeros(len(INNER_KINDS)))
        self._fit_leaves(flat, state)
        self._fit_overheads(flat, state)
        state.leaf_delta = np.zeros_like(state.leaf_theta)
        state.beta_delta = np.zeros_like(state.overhead_beta)
        return state

    def _fit_leaves(self, flat: FlatForest, state: FittedState) -> None:
        design = self._leaf_design(flat.x, state)
        thetas, scales = [], []
        for key in state.leaf_types:
            rows = self._rows_for_key(flat, key)
            if not rows.any():
                thetas.append(np.zeros(design.shape[1]))
                scales.append(1.0)
                continue
            thetas.append(self._fit_leaf(design[rows], flat.gold[rows]))
            scales.append(float(np.median(flat.gold[rows])))
        state.leaf_theta = np.asarray(thetas)
        state.leaf_scale = np.asarray(scales)

    def _fit_overheads(self, flat: FlatForest, state: FittedState) -> None:
        """gold(node) − Σ gold(children) ≈ β·Δx, fitted in relative terms per inner kind."""
        delta = self._overhead_design(flat, state)
        spread = delta.std(axis=0) if delta.size else np.ones(delta.shape[1])
        state.overhead_scale = np.where(spread > 0, spread, 1.0)
        betas = []
        child_gold = flat.gold_child_sum()
        for kind in INNER_KINDS:
            rows = flat.node_type == NODE_TYPE_CODES[kind]
            if not (self.module_overhead and rows.any() and delta.shape[1] > 0):
                betas.append(np.zeros(delta.shape[1]))
                continue
            a = delta[rows] / state.overhead_scale
            target = flat.gold[rows] - child_gold[rows]
            w = 1.0 / flat.gold[rows] ** 2
            a1 = np.hstack([a, np.zeros((len(a), 1))])  # no bias: a module with Δx = 0 adds 0
            betas.append(weighted_lstsq(a1, target, w, self.leaf_ridge)[:-1])
        state.overhead_beta = np.asarray(betas)

    def _rows_for_key(self, flat: FlatForest, key: str) -> np.ndarray:
        if key == SHARED_TYPE:
            return flat.is_leaf.copy()
        if key.startswith("<"):
            return flat.node_type == NODE_TYPE_CODES[key.strip("<>")]
        return flat.is_leaf & (flat.instance_type == key)

    def _transform(self, x: np.ndarray) -> np.ndarray:
        """Feature transform before standardising: log (offset 1e-9) for the log-space fit."""
        return np.log(np.abs(x) + 1e-9) if self.leaf_fit == "log" else x

    def _leaf_index(self, names: list[str]) -> list[int]:
        """Columns the leaf regressors read. ``leaf_features``: "all"; a list of names (those
        among the model's features); or "auto" (default): the direct readings of a primitive's
        cost — latency and GPU energy — plus parameters and tokens when both readings are among
        the features (measured best on IrEne's data: fewer, physical inputs generalise better
        across models), else all features."""
        chosen = self.leaf_features
        if chosen == "auto":
            readings = {"times_mean", "gpu_energy_mean"}
            chosen = list(AUTO_LEAF_FEATURES) if readings <= set(names) else "all"
        if chosen == "all":
            return list(range(len(names)))
        index = [i for i, n in enumerate(names) if n in chosen]
        if not index:
            raise ValueError(f"leaf_features {chosen} names none of the features {names}")
        return index

    def _standardized(self, x: np.ndarray, state: FittedState) -> np.ndarray:
        return (self._transform(x) - state.x_mean) / state.x_std

    def _leaf_design(self, x: np.ndarray, state: FittedState) -> np.ndarray:
        z = self._standardized(x, state)[:, state.leaf_index]
        return np.hstack([z, np.ones((len(z), 1))])

    def _overhead_design(self, flat: FlatForest, state: FittedState) -> np.ndarray:
        idx = state.additive_index
        return flat.x[:, idx] - flat.child_sum_x[:, idx]

    def _fit_leaf(self, design: np.ndarray, gold: np.ndarray) -> np.ndarray:
        kind, ridge = self.leaf_fit, self.leaf_ridge
        if kind == "ols":
            return weighted_lstsq(design, gold, np.ones_like(gold), ridge)
        if kind == "relative":
            return weighted_lstsq(design, gold, 1.0 / gold**2, ridge)
        return weighted_lstsq(design, np.log(gold), np.ones_like(gold), ridge)

    def _poly(self, z: np.ndarray) -> np.ndarray:
        if self.polynomial_features:
            return polynomial_expand(z, self.polynomial_degree)
        return z

    # ------------------------------------------------------------------------------ forward
    def _type_keys(self, flat: FlatForest) -> np.ndarray:
        """The regressor key of every node: its lower-cased primitive type for a leaf, and
        ``<module>`` / ``<model>`` for inner nodes."""
        inner = np.array([f"<{k}>" for k in INNER_KINDS], dtype=object)
        return np.where(flat.is_leaf, flat.instance_type.astype(object),
                        inner[np.maximum(flat.node_type - 1, 0)])

    def _tensors(self, flat: FlatForest, *, warn_unseen: bool) -> dict[str, Any]:
        """Constant arrays of one flattened forest for the forward pass."""
        state = self._fitted()
        keys = {k: i for i, k in enumerate(state.leaf_types)}
        leaf = flat.is_leaf
        uniq, inverse = np.unique(flat.instance_type, return_inverse=True)
        lookup = np.array([keys.get(u, keys[SHARED_TYPE]) for u in uniq.tolist()], dtype=np.int64)
        type_index = np.where(leaf, lookup[inverse], keys[SHARED_TYPE])
        unstructured = self.training_strategy == "unstructured"
        if unstructured:
            inner_keys = np.array([keys[f"<{k}>"] for k in INNER_KINDS])
            type_index = np.where(leaf, type_index, inner_keys[np.maximum(flat.node_type - 1, 0)])
        unseen = sorted({t for t in flat.instance_type[leaf].tolist() if t not in keys})
        if unseen and warn_unseen:
            warnings.warn(f"primitive type(s) {unseen} were not seen in training: predicted with "
                          "the regressor shared by all types", stacklevel=4)
        z = self._standardized(flat.x, state)
        order = np.argsort(-flat.depth, kind="stable")
        levels = [order[flat.depth[order] == d] for d in range(int(flat.depth.max()), 0, -1)]
        return {
            "design": self._leaf_design(flat.x, state), "type_index": type_index,
            "leaf": leaf if not unstructured else np.ones_like(leaf),
            "kind": np.maximum(flat.node_type - 1, 0),
            "parent_kind": np.maximum(flat.node_type[np.maximum(flat.parent, 0)] - 1, 0),
            "phi": self._poly(z),
            "delta": self._overhead_design(flat, state) / state.overhead_scale,
            "parent": flat.parent, "levels": levels, "gold": flat.gold,
            "node_type": flat.node_type,
        }

    def _leaf_linear(self, params: dict[str, np.ndarray], t: dict[str, Any]) -> np.ndarray:
        """Each node's leaf regressor before the link: design · θ[type] (θ = start + scale·δ)."""
        theta = params["leaf_theta"] + params["leaf_scale"][:, None] * params["leaf_delta"]
        return np.einsum("ij,ij->i", t["design"], theta[t["type_index"]])

    def _leaf_values(self, params: dict[str, np.ndarray], t: dict[str, Any]) -> np.ndarray:
        """The leaf regressors' energy (J) for every node (meaningful where ``t["leaf"]``)."""
        linear = self._leaf_linear(params, t)
        return np.exp(linear) if self.leaf_fit == "log" else linear

    def _forward(self, params: dict[str, np.ndarray], t: dict[str, Any],
                 source: np.ndarray | None = None, *, leaf_pred: np.ndarray | None = None,
                 overhead_factor: float = 1.0) -> np.ndarray:
        """Predicted energy (J) of every node; ``source`` replaces children's predictions in the
        sum (the gold energies, for stepwise training); ``leaf_pred`` replaces the leaf
        regressors' values and ``overhead_factor`` scales the module overhead (calibration)."""
        if leaf_pred is None:
            leaf_pred = self._leaf_values(params, t)
        pred = np.where(t["leaf"], leaf_pred, 0.0)
        if self.training_strategy == "unstructured":
            return pred
        if self.module_overhead:
            pred = pred + np.where(t["leaf"], 0.0, overhead_factor * self._overhead(params, t))
        weight = self._child_weight(params, t)
        n = len(pred)
        for idx in t["levels"]:
            values = (pred if source is None else source)[idx]
            pred = pred + np.bincount(t["parent"][idx], weights=weight[idx] * values, minlength=n)
        return pred

    def _overhead(self, params: dict[str, np.ndarray], t: dict[str, Any]) -> np.ndarray:
        """β[kind] · Δx of every node (J; meaningful at inner nodes)."""
        beta = params["overhead_beta"] + params["overhead_unit"][:, None] * params["beta_delta"]
        return np.einsum("ij,ij->i", t["delta"], beta[t["kind"]])

    def _logit(self, params: dict[str, np.ndarray], t: dict[str, Any]) -> np.ndarray:
        k = t["parent_kind"]
        return np.einsum("ij,ij->i", t["phi"], params["weight_a"][k]) + params["weight_b"][k]

    def _child_weight(self, params: dict[str, np.ndarray], t: dict[str, Any]) -> np.ndarray:
        if self.weighting_setting == "exact_one" or self.training_strategy == "none":
            return np.ones(len(t["parent"]))
        logit = self._logit(params, t)
        if self.weighting_setting == "free":
            return 1.0 + logit
        return 1.0 + np.tanh(logit) / self.tanh_scalar

    def _params(self) -> dict[str, np.ndarray]:
        """The fitted state's parameter arrays (copies of the learned ones, which Adam moves)."""
        s = self._fitted()
        fixed = {name: getattr(s, name)
                 for name in ("leaf_theta", "leaf_scale", "overhead_beta", "overhead_unit")}
        learned = {name: np.array(getattr(s, name), dtype=float)
                   for name in ("leaf_delta", "beta_delta", "weight_a", "weight_b")}
        return {**fixed, **learned}

    # -------------------------------------------------------------------------------- train
    def _train(self, flat: FlatForest, *, progress: bool) -> None:
        from tqdm.auto import tqdm

        s = self._fitted()
        names = self._learned_names()
        if self.training_strategy == "none" or self.epochs == 0 or not names:
            return
        t = self._tensors(flat, warn_unseen=False)
        params = self._params()
        optimizer = Adam([params[k] for k in names], lr=self.learning_rate)
        source = t["gold"] if self.training_strategy == "stepwise" else None
        masks = self._loss_masks(t)
        best, stale = math.inf, 0
        bar = tqdm(range(self.epochs), desc="training", unit="epoch", disable=not progress,
                   leave=False)
        for _ in bar:
            value, grads = self._loss_and_gradients(params, t, source, masks)
            if not math.isfinite(value):
                raise ValueError("training diverged (the loss is not finite); lower "
                                 "learning_rate or check the trees' features")
            # stop once the loss has not improved by a relative `tol` for n_iter_no_change epochs
            stale = stale + 1 if value > best * (1 - self.tol) else 0
            if value < best:  # keep the parameters of the lowest training loss seen
                best = value
                for k in names:
                    setattr(s, k, params[k].copy())
            if stale >= self.n_iter_no_change:
                break
            optimizer.step([grads[k] for k in names])

    def _learned_names(self) -> tuple[str, ...]:
        """Parameters trained end to end; leaf regressors start at their closed-form fit and
        move only with ``finetune_leaves``."""
        if self.training_strategy == "unstructured":
            return ("leaf_delta",)  # every node is its own regressor: nothing else to learn
        names: tuple[str, ...] = ()
        if self.weighting_setting != "exact_one":
            names = ("weight_a", "weight_b")
        if self.module_overhead:
            names = ("beta_delta", *names)
        return ("leaf_delta", *names) if self.finetune_leaves else names

    @staticmethod
    def _loss_masks(t: dict[str, Any]) -> list[np.ndarray]:
        """One mask per node type present (ml / module / model)."""
        masks = [t["node_type"] == code for code in NODE_TYPE_CODES.values()]
        return [m for m in masks if m.any()]

    def _loss(self, pred: np.ndarray, gold: np.ndarray, masks: list[np.ndarray]) -> float:
        """Mean squared relative error per node type (ml / module / model), averaged over the
        types so that the few model-level nodes weigh as much as the many primitives."""
        if self.normalize_loss_scale:
            err = ((pred - gold) / gold) ** 2
        else:
            err = (pred - gold) ** 2 / (gold**2).mean()
        return float(np.mean([err[m].mean() for m in masks]))

    def _loss_and_gradients(self, params: dict[str, np.ndarray], t: dict[str, Any],
                            source: np.ndarray | None,
                            masks: list[np.ndarray]) -> tuple[float, dict[str, np.ndarray]]:
        """The training loss and its gradient for every learned parameter."""
        pred = self._forward(params, t, source)
        gold = t["gold"]
        scale = gold**2 if self.normalize_loss_scale else np.full_like(gold, (gold**2).mean())
        # d loss / d pred: each type's mean, then the mean over types
        d_pred = np.zeros_like(pred)
        for m in masks:
            d_pred[m] = 2.0 * (pred[m] - gold[m]) / scale[m] / (m.sum() * len(masks))
        return self._loss(pred, gold, masks), self._gradients(params, t, source, pred, d_pred)

    def _gradients(self, params: dict[str, np.ndarray], t: dict[str, Any],
                   source: np.ndarray | None, pred: np.ndarray,
                   d_pred: np.ndarray) -> dict[str, np.ndarray]:
        """Reverse mode through :meth:`_forward`: ``d_pred`` is d loss / d (final prediction of
        each node); returns d loss / d each learned parameter.

        A node's final prediction is its own term plus Σ w(child)·value(child), so with the
        children's predictions as values (end to end) a node's total gradient is its own plus
        w(node) times its parent's total, accumulated from the root level down."""
        grads = {k: np.zeros_like(params[k])
                 for k in ("leaf_delta", "beta_delta", "weight_a", "weight_b")}
        total = d_pred.copy()
        if self.training_strategy != "unstructured":
            weight = self._child_weight(params, t)
            parent = t["parent"]
            if source is None:
                for idx in reversed(t["levels"]):
                    total[idx] += weight[idx] * total[parent[idx]]
            if self.weighting_setting != "exact_one":
                d_weight = np.zeros_like(pred)
                values = pred if source is None else source
                for idx in t["levels"]:
                    d_weight[idx] = total[parent[idx]] * values[idx]
                if self.weighting_setting == "free":
                    d_logit = d_weight
                else:
                    d_logit = d_weight * (1.0 - np.tanh(self._logit(params, t)) ** 2) \
                        / self.tanh_scalar
                for k in range(len(grads["weight_b"])):
                    rows = t["parent_kind"] == k
                    grads["weight_a"][k] = d_logit[rows] @ t["phi"][rows]
                    grads["weight_b"][k] = d_logit[rows].sum()
            if self.module_overhead:
                d_overhead = np.where(t["leaf"], 0.0, total)
                for k in range(len(grads["beta_delta"])):
                    rows = t["kind"] == k
                    grads["beta_delta"][k] = params["overhead_unit"][k] * (
                        d_overhead[rows] @ t["delta"][rows])
        d_linear = np.where(t["leaf"], total, 0.0)
        if self.leaf_fit == "log":
            d_linear = d_linear * np.exp(self._leaf_linear(params, t))
        d_theta = np.stack([np.bincount(t["type_index"], weights=d_linear * column,
                                        minlength=len(grads["leaf_delta"]))
                            for column in t["design"].T], axis=1)
        grads["leaf_delta"] = params["leaf_scale"][:, None] * d_theta
        return grads

    # ------------------------------------------------------------------------- persistence
    def state_payload(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The fitted state as (JSON-ready fields, named float64 arrays)."""
        state = self._fitted()
        meta = {"feature_names": state.feature_names, "leaf_types": state.leaf_types,
                "additive_index": state.additive_index, "leaf_index": state.leaf_index}
        return meta, {k: getattr(state, k) for k in FittedState.array_fields()}

    def state_from_payload(self, meta: dict[str, Any], arrays: dict[str, np.ndarray], *,
                           schema: dict[str, Any], training_data: TrainingData,
                           calibration: Any) -> FittedState:
        """The fitted state read back, every name, index and shape checked (ValueError)."""
        for key in ("feature_names", "leaf_types", "additive_index", "leaf_index"):
            if not isinstance(meta.get(key), list):
                raise ValueError(f"state field {key!r} missing or not a list")
        if not all(isinstance(v, str) for v in meta["feature_names"] + meta["leaf_types"]):
            raise ValueError("feature_names and leaf_types must be strings")
        n = len(meta["feature_names"])
        for key in ("additive_index", "leaf_index"):
            if not all(type(i) is int and 0 <= i < n for i in meta[key]):
                raise ValueError(f"state field {key!r} out of range")
        missing = [k for k in FittedState.array_fields() if k not in arrays]
        if missing:
            raise ValueError(f"tensor(s) {missing} missing")
        state = FittedState(
            feature_names=meta["feature_names"], leaf_types=meta["leaf_types"],
            additive_index=meta["additive_index"], leaf_index=meta["leaf_index"],
            schema=schema, training_data=training_data, calibration=calibration,
            **{k: arrays[k] for k in FittedState.array_fields()})
        n_poly = self._poly(np.zeros((1, n))).shape[1]
        for key, shape in state.expected_shapes(n_poly).items():
            if getattr(state, key).shape != shape:
                raise ValueError(f"tensor {key!r} has shape {getattr(state, key).shape}, "
                                 f"expected {shape}")
        if SHARED_TYPE not in state.leaf_types or np.any(state.x_std <= 0):
            raise ValueError("no shared leaf regressor or a non-positive feature scale")
        return state

    # ------------------------------------------------------------------------------ predict
    def _constants(self, flat: FlatForest) -> dict[str, Any]:
        """The forward pass's constant tensors for ``flat`` (kept for the last forest, so the
        leaf energies and their combination share one preparation)."""
        cached = getattr(self, "_last", None)
        if cached is None or cached[0] is not flat:
            cached = (flat, self._tensors(flat, warn_unseen=True))
            self._last = cached
        return cached[1]

    def _leaf_energies(self, flat: FlatForest) -> np.ndarray:
        return self._leaf_values(self._params(), self._constants(flat))

    def _combine(self, flat: FlatForest, leaf_energy: np.ndarray,
                 overhead_factor: float | None) -> np.ndarray:
        t = self._constants(flat)
        pred = self._forward(self._params(), t, leaf_pred=np.asarray(leaf_energy, dtype=float),
                             overhead_factor=1.0 if overhead_factor is None else overhead_factor)
        self._last = None
        return pred


#: the default settings, read from the signature of IreneRegressor.__init__
DEFAULT_CONFIG: dict[str, Any] = IreneRegressor.defaults()
