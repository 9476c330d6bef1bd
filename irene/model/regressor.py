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
level by level from the deepest up with ``index_add`` — a handful of tensor operations per epoch,
independent of the order of the trees.
"""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from collections.abc import Iterator, Sequence
from itertools import combinations_with_replacement
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from irene.features import (
    ADDITIVE_FEATURES,
    NODE_TYPE_CODES,
    FlatForest,
    drop_leaky_features,
    feature_names,
)
from irene.tree import Tree, require_energy

STRATEGIES = ("end2end", "stepwise", "unstructured", "none")
WEIGHTINGS = ("close_to_one", "exact_one", "free")
LEAF_FITS = ("ols", "relative", "log")
SHARED_TYPE = "<shared>"  # leaf regressor used for primitive types unseen in training
#: what leaves read with leaf_features="auto" when the direct readings are among the features
AUTO_LEAF_FEATURES = ("times_mean", "gpu_energy_mean", "num_parameters", "input_size")
INNER_KINDS = ("module", "model")

DEFAULT_CONFIG: dict[str, Any] = {
    "feature_sets": ["model_specs", "resource_utilization"],
    "polynomial_features": False,
    "polynomial_degree": 3,
    "standardize_features": True,
    "training_strategy": "end2end",
    "weighting_setting": "close_to_one",
    "tanh_scalar": 10.0,
    "normalize_loss_scale": True,
    "leaf_fit": "relative",
    "leaf_features": "auto",
    "leaf_ridge": 1e-6,
    "module_overhead": True,
    "epochs": 300,
    "learning_rate": 0.01,
    "finetune_leaves": False,
    "tol": 1e-4,
    "n_iter_no_change": 10,
    "seed": 0,
}


def polynomial_expand(z: torch.Tensor, degree: int) -> torch.Tensor:
    """All monomials of the columns of ``z`` [N, F] of degree 1..``degree``, [N, M]."""
    columns = [z]
    for d in range(2, degree + 1):
        combos = torch.tensor(list(combinations_with_replacement(range(z.shape[1]), d)))
        columns.append(torch.prod(z[:, combos], dim=2))
    return torch.cat(columns, dim=1)


def _standardize_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


def _weighted_lstsq(a: np.ndarray, y: np.ndarray, weight: np.ndarray, ridge: float) -> np.ndarray:
    """argmin_θ Σ weight·(aθ - y)² + ridge·|θ[:-1]|² (the last column is the unpenalised bias)."""
    sw = np.sqrt(weight)[:, None]
    aw, yw = a * sw, y * sw[:, 0]
    penalty = np.sqrt(ridge * len(y)) * np.eye(a.shape[1])[:-1]
    a_full = np.vstack([aw, penalty])
    y_full = np.concatenate([yw, np.zeros(a.shape[1] - 1)])
    theta, *_ = np.linalg.lstsq(a_full, y_full, rcond=None)
    return theta


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one thread: the tensors here are small, and on a busy machine torch's
    thread pool costs far more in waiting than it gains (measured: 10x slower on 2 cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Adam:
    """Adam (Kingma & Ba, 2015) on a few full-batch parameter tensors.

    Written out because ``torch.optim`` imports ``torch._dynamo`` on its first step, which costs
    seconds — more than a whole training run here.
    """

    def __init__(self, params: list[torch.Tensor], lr: float, betas=(0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor]) -> None:
        self.t += 1
        b1, b2 = self.betas
        correction1, correction2 = 1 - b1**self.t, 1 - b2**self.t
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v / correction2).sqrt_().add_(self.eps)
            p.addcdiv_(m, denom, value=-self.lr / correction1)


class IreneRegressor:
    """Predict the energy (J per call) of every node of energy trees.

    Parameters are IrEne's configuration keys plus ours (see :data:`DEFAULT_CONFIG`); unknown keys
    raise ``TypeError``. ``fit(trees)`` returns ``self``; ``predict(trees)`` returns deep copies of
    the trees with ``predicted_energy`` (J) on every node.
    """

    def __init__(self, **config: Any) -> None:
        unknown = sorted(set(config) - set(DEFAULT_CONFIG))
        if unknown:
            raise TypeError(f"unknown configuration key(s) {unknown}; "
                            f"known: {sorted(DEFAULT_CONFIG)}")
        self.config = {**DEFAULT_CONFIG, **config}
        self._check_config()
        self.state_: dict[str, Any] | None = None

    # ---------------------------------------------------------------- scikit-learn conventions
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return copy.deepcopy(self.config)

    def set_params(self, **params: Any) -> IreneRegressor:
        self.__init__(**{**self.config, **params})
        return self

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.config.items() if DEFAULT_CONFIG[k] != v}
        return f"IreneRegressor({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    def _check_config(self) -> None:
        c = self.config
        choices = {"training_strategy": STRATEGIES, "weighting_setting": WEIGHTINGS,
                   "leaf_fit": LEAF_FITS}
        for key, allowed in choices.items():
            if c[key] not in allowed:
                raise ValueError(f"{key} must be one of {allowed}, got {c[key]!r}")
        feature_names(c["feature_sets"])  # validates the names
        if c["leaf_features"] not in ("all", "auto") and not (
                isinstance(c["leaf_features"], list)
                and all(isinstance(n, str) for n in c["leaf_features"])):
            raise ValueError("leaf_features must be 'auto', 'all' or a list of feature names, "
                             f"got {c['leaf_features']!r}")
        if not (isinstance(c["epochs"], int) and c["epochs"] >= 0):
            raise ValueError(f"epochs must be a non-negative integer, got {c['epochs']!r}")
        if c["tanh_scalar"] <= 0 or c["learning_rate"] <= 0:
            raise ValueError("tanh_scalar and learning_rate must be positive")

    # ------------------------------------------------------------------------------ features
    def required_features(self) -> list[str]:
        """The node/tree feature names the fitted model reads."""
        self._check_fitted()
        return list(self.state_["feature_names"])

    def _check_fitted(self) -> None:
        if self.state_ is None:
            raise RuntimeError("this IreneRegressor is not fitted yet: call fit(trees) first")

    # ----------------------------------------------------------------------------------- fit
    def fit(self, trees: Sequence[Tree], *, progress: bool = False) -> IreneRegressor:
        """Learn leaf regressors and inner-node weights from trees with ground-truth energy."""
        trees = list(trees)
        if not trees:
            raise ValueError("fit needs at least one tree")
        require_energy(trees)
        names = drop_leaky_features(feature_names(self.config["feature_sets"]), trees)
        flat = FlatForest.from_trees(trees, names)
        with _one_thread():
            self.state_ = self._initial_state(flat)
            self._train(flat, progress=progress)
        return self

    def _initial_state(self, flat: FlatForest) -> dict[str, Any]:
        c = self.config
        leaf = flat.is_leaf
        x_mean, x_std = _standardize_stats(self._transform(flat.x))
        if not c["standardize_features"]:
            x_mean, x_std = np.zeros_like(x_mean), np.ones_like(x_std)
        additive = [i for i, n in enumerate(flat.feature_names) if n in ADDITIVE_FEATURES]
        state: dict[str, Any] = {
            "feature_names": flat.feature_names, "x_mean": x_mean, "x_std": x_std,
            "additive_index": additive, "leaf_index": self._leaf_index(flat.feature_names),
        }
        # leaf regressors, one per primitive type + one shared; in "unstructured" also one per
        # inner node kind
        keys = sorted(set(flat.instance_type[leaf].tolist())) + [SHARED_TYPE]
        if c["training_strategy"] == "unstructured":
            keys += [f"<{k}>" for k in INNER_KINDS]
        state["leaf_types"] = keys
        design = self._leaf_design(flat.x, state)
        thetas, scales = [], []
        for key in keys:
            rows = self._rows_for_key(flat, key)
            if not rows.any():
                thetas.append(np.zeros(design.shape[1]))
                scales.append(1.0)
                continue
            thetas.append(self._fit_leaf(design[rows], flat.gold[rows]))
            scales.append(float(np.median(flat.gold[rows])))
        state["leaf_theta"] = np.asarray(thetas)
        state["leaf_scale"] = np.asarray(scales)
        # overhead: gold(node) - Σ gold(children) ≈ β·Δx, fitted in relative terms per kind
        delta = self._overhead_design(flat, state)
        state["overhead_scale"] = np.where(delta.std(axis=0) > 0, delta.std(axis=0), 1.0) \
            if delta.size else np.ones(0)
        betas = []
        child_gold = flat.gold_child_sum()
        for kind in INNER_KINDS:
            rows = flat.node_type == NODE_TYPE_CODES[kind]
            use = c["module_overhead"] and rows.any() and delta.shape[1] > 0
            if not use:
                betas.append(np.zeros(delta.shape[1]))
                continue
            a = delta[rows] / state["overhead_scale"]
            target = flat.gold[rows] - child_gold[rows]
            w = 1.0 / flat.gold[rows] ** 2
            a1 = np.hstack([a, np.zeros((len(a), 1))])  # no bias: a module with Δx = 0 adds 0
            betas.append(_weighted_lstsq(a1, target, w, c["leaf_ridge"])[:-1])
        state["overhead_beta"] = np.asarray(betas)
        # weight networks w(x_child), one per parent kind, start at w = 1
        n_poly = self._poly(torch.zeros(1, len(flat.feature_names), dtype=torch.float64)).shape[1]
        state["weight_a"] = np.zeros((len(INNER_KINDS), n_poly))
        state["weight_b"] = np.zeros(len(INNER_KINDS))
        return state

    def _rows_for_key(self, flat: FlatForest, key: str) -> np.ndarray:
        if key == SHARED_TYPE:
            return flat.is_leaf.copy()
        if key.startswith("<"):
            return flat.node_type == NODE_TYPE_CODES[key.strip("<>")]
        return flat.is_leaf & (flat.instance_type == key)

    def _transform(self, x: np.ndarray) -> np.ndarray:
        """Feature transform before standardising: log (offset 1e-9) for the log-space fit."""
        return np.log(np.abs(x) + 1e-9) if self.config["leaf_fit"] == "log" else x

    def _leaf_index(self, names: list[str]) -> list[int]:
        """Columns the leaf regressors read. ``leaf_features``: "all"; a list of names (those
        among the model's features); or "auto" (default): the direct readings of a primitive's
        cost — latency and GPU energy — plus parameters and tokens when both readings are among
        the features (measured best on IrEne's data: fewer, physical inputs generalise better
        across models), else all features."""
        chosen = self.config["leaf_features"]
        if chosen == "auto":
            readings = {"times_mean", "gpu_energy_mean"}
            chosen = list(AUTO_LEAF_FEATURES) if readings <= set(names) else "all"
        if chosen == "all":
            return list(range(len(names)))
        index = [i for i, n in enumerate(names) if n in chosen]
        if not index:
            raise ValueError(f"leaf_features {chosen} names none of the features {names}")
        return index

    def _standardized(self, x: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        return (self._transform(x) - state["x_mean"]) / state["x_std"]

    def _leaf_design(self, x: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        z = self._standardized(x, state)[:, state["leaf_index"]]
        return np.hstack([z, np.ones((len(z), 1))])

    def _overhead_design(self, flat: FlatForest, state: dict[str, Any]) -> np.ndarray:
        idx = state["additive_index"]
        return flat.x[:, idx] - flat.child_sum_x[:, idx]

    def _fit_leaf(self, design: np.ndarray, gold: np.ndarray) -> np.ndarray:
        kind, ridge = self.config["leaf_fit"], self.config["leaf_ridge"]
        if kind == "ols":
            return _weighted_lstsq(design, gold, np.ones_like(gold), ridge)
        if kind == "relative":
            return _weighted_lstsq(design, gold, 1.0 / gold**2, ridge)
        return _weighted_lstsq(design, np.log(gold), np.ones_like(gold), ridge)

    def _poly(self, z: torch.Tensor) -> torch.Tensor:
        if self.config["polynomial_features"]:
            return polynomial_expand(z, self.config["polynomial_degree"])
        return z

    # ------------------------------------------------------------------------------ forward
    def _tensors(self, flat: FlatForest, *, warn_unseen: bool) -> dict[str, torch.Tensor]:
        """Constant tensors of one flattened forest for the forward pass."""
        state = self.state_
        keys = {k: i for i, k in enumerate(state["leaf_types"])}
        leaf = flat.is_leaf
        strategy = self.config["training_strategy"]
        uniq, inverse = np.unique(flat.instance_type, return_inverse=True)
        lookup = np.array([keys.get(u, keys[SHARED_TYPE]) for u in uniq.tolist()], dtype=np.int64)
        type_index = np.where(leaf, lookup[inverse], keys[SHARED_TYPE])
        if strategy == "unstructured":
            inner_keys = np.array([keys[f"<{k}>"] for k in INNER_KINDS])
            type_index = np.where(leaf, type_index, inner_keys[np.maximum(flat.node_type - 1, 0)])
        unseen = sorted({t for t in flat.instance_type[leaf].tolist() if t not in keys})
        if unseen and warn_unseen:
            warnings.warn(f"primitive type(s) {unseen} were not seen in training: predicted with "
                          "the regressor shared by all types", stacklevel=4)
        design = self._leaf_design(flat.x, state)
        z = torch.from_numpy(self._standardized(flat.x, state))
        delta = self._overhead_design(flat, state) / state["overhead_scale"]
        order = np.argsort(-flat.depth, kind="stable")
        levels = [torch.from_numpy(order[flat.depth[order] == d])
                  for d in range(int(flat.depth.max()), 0, -1)]
        return {
            "design": torch.from_numpy(design), "type_index": torch.from_numpy(type_index),
            "leaf": torch.from_numpy(leaf if strategy != "unstructured" else np.ones_like(leaf)),
            "kind": torch.from_numpy(np.maximum(flat.node_type - 1, 0)),
            "parent_kind": torch.from_numpy(
                np.maximum(flat.node_type[np.maximum(flat.parent, 0)] - 1, 0)),
            "phi": self._poly(z), "delta": torch.from_numpy(delta),
            "parent": torch.from_numpy(flat.parent), "levels": levels,
            "gold": torch.from_numpy(flat.gold), "node_type": torch.from_numpy(flat.node_type),
        }

    def _forward(self, params: dict[str, torch.Tensor], t: dict[str, Any],
                 source: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted energy (J) of every node; ``source`` replaces children's predictions in the
        sum (the gold energies, for stepwise training)."""
        c = self.config
        theta = params["leaf_theta"] + params["leaf_scale"][:, None] * params["leaf_delta"]
        linear = (t["design"] @ theta.T).gather(1, t["type_index"][:, None])[:, 0]
        leaf_pred = torch.exp(linear) if c["leaf_fit"] == "log" else linear
        pred = torch.where(t["leaf"], leaf_pred, torch.zeros_like(leaf_pred))
        if c["training_strategy"] == "unstructured":
            return pred
        if c["module_overhead"]:
            beta = params["overhead_beta"] + params["overhead_unit"][:, None] * params["beta_delta"]
            overhead = (t["delta"] @ beta.T).gather(1, t["kind"][:, None])[:, 0]
            pred = pred + torch.where(t["leaf"], torch.zeros_like(overhead), overhead)
        weight = self._child_weight(params, t)
        for idx in t["levels"]:
            values = (pred if source is None else source)[idx]
            pred = pred.index_add(0, t["parent"][idx], weight[idx] * values)
        return pred

    def _child_weight(self, params: dict[str, torch.Tensor], t: dict[str, Any]) -> torch.Tensor:
        setting = self.config["weighting_setting"]
        if setting == "exact_one" or self.config["training_strategy"] == "none":
            return torch.ones(len(t["parent"]), dtype=torch.float64)
        k = t["parent_kind"]
        logit = (t["phi"] @ params["weight_a"].T).gather(1, k[:, None])[:, 0]
        logit = logit + params["weight_b"][k]
        if setting == "free":
            return 1.0 + logit
        return 1.0 + torch.tanh(logit) / self.config["tanh_scalar"]

    def _params(self, trainable: bool) -> dict[str, torch.Tensor]:
        s = self.state_
        fixed = {
            "leaf_theta": torch.from_numpy(s["leaf_theta"]),
            "leaf_scale": torch.from_numpy(s["leaf_scale"]),
            "overhead_beta": torch.from_numpy(s["overhead_beta"]),
            "overhead_unit": torch.from_numpy(s["overhead_unit"]),
        }
        learned = {k: torch.tensor(s[k], requires_grad=trainable)
                   for k in ("leaf_delta", "beta_delta", "weight_a", "weight_b")}
        return {**fixed, **learned}

    # -------------------------------------------------------------------------------- train
    def _train(self, flat: FlatForest, *, progress: bool) -> None:
        c, s = self.config, self.state_
        s["leaf_delta"] = np.zeros_like(s["leaf_theta"])
        s["beta_delta"] = np.zeros_like(s["overhead_beta"])
        gold_inner = [flat.gold[flat.node_type == NODE_TYPE_CODES[k]] for k in INNER_KINDS]
        s["overhead_unit"] = np.array([float(np.median(g)) if g.size else 1.0
                                       for g in gold_inner])
        if c["training_strategy"] == "none" or c["epochs"] == 0 or not self._learned_names():
            return
        torch.manual_seed(c["seed"])
        t = self._tensors(flat, warn_unseen=False)
        params = self._params(trainable=True)
        learned = [params[k] for k in self._learned_names()]
        optimizer = _Adam(learned, lr=c["learning_rate"])
        source = t["gold"] if c["training_strategy"] == "stepwise" else None
        masks = [t["node_type"] == code for code in NODE_TYPE_CODES.values()]
        masks = [m for m in masks if bool(m.any())]
        best, stale = math.inf, 0
        bar = tqdm(range(c["epochs"]), desc="training", unit="epoch", disable=not progress,
                   leave=False)
        for _ in bar:
            pred = self._forward(params, t, source)
            loss = self._loss(pred, t["gold"], masks)
            value = float(loss.detach())
            # stop once the loss has not improved by a relative `tol` for n_iter_no_change epochs
            stale = stale + 1 if value > best * (1 - c["tol"]) else 0
            if value < best:  # keep the parameters of the lowest training loss seen
                best = value
                for k in self._learned_names():
                    s[k] = params[k].detach().numpy().copy()
            if stale >= c["n_iter_no_change"]:
                break
            optimizer.step(torch.autograd.grad(loss, learned))

    def _learned_names(self) -> tuple[str, ...]:
        """Parameters trained end to end; leaf regressors start at their closed-form fit and
        move only with ``finetune_leaves``."""
        if self.config["training_strategy"] == "unstructured":
            return ("leaf_delta",)  # every node is its own regressor: nothing else to learn
        names: tuple[str, ...] = ()
        if self.config["weighting_setting"] != "exact_one":
            names = ("weight_a", "weight_b")
        if self.config["module_overhead"]:
            names = ("beta_delta", *names)
        return ("leaf_delta", *names) if self.config["finetune_leaves"] else names

    def _loss(self, pred: torch.Tensor, gold: torch.Tensor,
              masks: list[torch.Tensor]) -> torch.Tensor:
        """Mean squared relative error per node type (ml / module / model), averaged over the
        types so that the few model-level nodes weigh as much as the many primitives."""
        if self.config["normalize_loss_scale"]:
            err = ((pred - gold) / gold) ** 2
        else:
            err = (pred - gold) ** 2 / (gold**2).mean()
        return torch.stack([err[m].mean() for m in masks]).mean()

    # ------------------------------------------------------------------------------ predict
    def predict_flat(self, flat: FlatForest) -> np.ndarray:
        """Predicted energy (J per call) for every node of a flattened forest, [N]."""
        self._check_fitted()
        t = self._tensors(flat, warn_unseen=True)
        with torch.no_grad(), _one_thread():
            pred = self._forward(self._params(trainable=False), t).numpy()
        bad = ~np.isfinite(pred) | (pred <= 0)
        if bad.any():
            warnings.warn(f"{int(bad.sum())} node prediction(s) were not positive and were "
                          "clipped to 1e-12 J (the features lie far outside the training range)",
                          stacklevel=3)
            pred = np.where(bad, 1e-12, pred)
        return pred

    def predict(self, trees: Sequence[Tree]) -> list[Tree]:
        """Deep copies of ``trees`` with ``predicted_energy`` (J per call) on every node."""
        self._check_fitted()
        copies = [t.copy() for t in trees]
        if not copies:
            return []
        self._check_features(copies)
        flat = FlatForest.from_trees(copies, self.state_["feature_names"])
        for node, value in zip(flat.nodes, self.predict_flat(flat).tolist(), strict=True):
            node.predicted_energy = value
        trained_on = self.state_.get("training_data")
        if trained_on:  # say what the predictions rest on (e.g. a SYNTHETIC training set)
            for tree in copies:
                tree.meta["predictor"] = {"trained_on": trained_on}
        return copies

    def _check_features(self, trees: Sequence[Tree]) -> None:
        """Refuse trees that lack a feature the model reads (recorded as unavailable)."""
        needed = set(self.state_["feature_names"])
        for tree in trees:
            missing = needed & set(tree.meta.get("features_unavailable", []))
            if missing:
                raise tree.error(
                    f"this predictor reads feature(s) {sorted(missing)} that the tree records as "
                    "unavailable on the machine that traced it; use a predictor trained on "
                    "model_specs features or trace on the target hardware",
                    field="features_unavailable")

    # ------------------------------------------------------------------------- persistence
    def save(self, directory: str) -> None:
        """Write config.json (JSON numbers) and tensors.safetensors into ``directory``."""
        from irene.model.persist import save_model

        self._check_fitted()
        save_model(self, directory)

    @classmethod
    def load(cls, directory: str) -> IreneRegressor:
        """Load a model directory written by :meth:`save`; never unpickles anything."""
        from irene.model.persist import load_model

        return load_model(cls, directory)
