"""What every tree predictor shares: settings, the fit and predict contracts, provenance,
schema checks, calibration hooks and persistence.

A predictor subclasses :class:`TreePredictor`, declares its settings as keyword-only arguments
of ``__init__`` (checked by :meth:`check_params`) and implements:

* ``_feature_names()``: the features it reads;
* ``_fit_flat(flat, schema, training_data, progress)``: learn from a flattened forest with gold
  energies, setting ``state_`` (a dataclass with at least ``feature_names``, ``schema``,
  ``training_data`` and ``calibration``);
* ``_leaf_energies(flat)``: the leaves' own predictions (J), uncalibrated;
* ``_combine(flat, leaf_energy, overhead_factor)``: every node's prediction (J) from given leaf
  energies, the module overhead scaled by ``overhead_factor``;
* ``_type_keys(flat)``: each node's regressor key (lower-cased primitive type for a leaf).

Energies are joules per model call.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from irene.checks import Checker, InputError
from irene.features import FlatForest, drop_leaky_features
from irene.model import persist
from irene.model.state import TrainingData
from irene.schema import Schema, schema_of_meta
from irene.tree import Tree, check_unique_keys, require_energy


class PredictionError(InputError):
    """A prediction that is not a positive finite number of joules; the message names the tree
    (file:line) and the node."""


class TreePredictor:
    """Base class of the tree predictors (see the module docstring)."""

    #: the name persistence records (``config.json``'s ``estimator``)
    estimator: ClassVar[str] = ""

    state_: Any = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        persist.register(cls)  # a named predictor can be loaded from its directory

    # ---------------------------------------------------------------- scikit-learn conventions
    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The default settings, read from the signature of ``__init__``."""
        return {name: (list(p.default) if isinstance(p.default, tuple) else p.default)
                for name, p in inspect.signature(cls.__init__).parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY}

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The settings, as keyword arguments of ``__init__`` (copies)."""
        return {name: copy.deepcopy(getattr(self, name)) for name in self.defaults()}

    def set_params(self, **params: Any):
        """Change settings (checked as in ``__init__``); a fitted state is dropped."""
        self.__init__(**{**self.get_params(), **params})
        return self

    def __repr__(self) -> str:
        defaults = self.defaults()
        changed = {k: v for k, v in self.get_params().items() if defaults[k] != v}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    # ------------------------------------------------------------------------------ fitted
    def _fitted(self) -> Any:
        if self.state_ is None:
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet: call fit(trees) "
                               "first")
        return self.state_

    def required_features(self) -> list[str]:
        """The node/tree feature names the fitted model reads."""
        return list(self._fitted().feature_names)

    @property
    def schema(self) -> Schema:
        """The feature schema the fitted model was trained on (trees must share it)."""
        return schema_of_meta({"schema": self._fitted().schema})

    @property
    def training_data(self) -> TrainingData:
        """What the fitted model was trained on (:class:`TrainingData`)."""
        return self._fitted().training_data

    @property
    def energy_for(self) -> str:
        """Which hardware the predicted energies speak for, in words (the calibration's when
        the model is calibrated, else its training data's)."""
        state = self._fitted()
        if state.calibration is not None:
            return (f"{state.calibration.calibrated_on.hardware_text()} (calibrated from "
                    f"{state.training_data.hardware_text()})")
        return state.training_data.hardware_text()

    # ----------------------------------------------------------------------------------- fit
    def fit(self, trees: Sequence[Tree], *, progress: bool = False,
            flat: FlatForest | None = None):
        """Learn from trees with ground-truth energy (J) on every node; returns ``self``.

        All trees must share one feature schema, carry a positive ground truth on every node and
        appear once; the fitted model records what it was trained on (:attr:`training_data`).
        ``flat``: these trees already flattened by :meth:`flatten` (cross-validation flattens
        its trees once); the result is the same.
        """
        trees = list(trees)
        if not trees:
            raise ValueError("fit needs at least one tree")
        require_energy(trees)
        check_unique_keys(trees, "training trees")
        schema = common_schema(trees)
        names = drop_leaky_features(self._feature_names(), trees)
        flat = (FlatForest.from_trees(trees, names) if flat is None
                else flattened(flat, trees).select(names=names))
        self._fit_flat(flat, schema, TrainingData.of(trees, schema), progress)
        return self

    def flatten(self, trees: Sequence[Tree]) -> FlatForest:
        """``trees`` flattened with every feature this predictor may read, for ``flat=`` of
        :meth:`fit` and :meth:`predict` (with :meth:`FlatForest.select` for a subset)."""
        return FlatForest.from_trees(list(trees), self._feature_names())

    # ------------------------------------------------------------------------------ predict
    def predict_flat(self, flat: FlatForest) -> np.ndarray:
        """Predicted energy (J per call) of every node of a flattened forest, [N] (calibrated
        when the model is); values are returned as they are (see :meth:`predict`)."""
        leaf = self._leaf_energies(flat)
        calibration = self._fitted().calibration
        factor = None
        if calibration is not None:
            leaf = calibration.apply(leaf, calibration.index(self._type_keys(flat)))
            factor = calibration.overhead_factor
        return self._combine(flat, leaf, factor)

    def predict(self, trees: Sequence[Tree], *, flat: FlatForest | None = None) -> list[Tree]:
        """Deep copies of ``trees`` with ``predicted_energy`` (J per call) on every node.

        Trees must have the schema the model was trained on and supply the features it reads.
        A prediction that is not a positive finite number raises :class:`PredictionError`
        naming the tree and node (never a silently clipped value). Each copy records what the
        predictor was trained (and calibrated) on (root key ``predictor``). ``flat``: these
        trees already flattened by :meth:`flatten`; the result is the same.
        """
        state = self._fitted()
        trees = list(trees)
        if not trees:
            return []
        self._check_trees(trees)
        flat = (FlatForest.from_trees(trees, state.feature_names) if flat is None
                else flattened(flat, trees).select(names=state.feature_names))
        values = self.predict_flat(flat)
        check_predictions(flat, values, trees)
        copies = [t.copy() for t in trees]
        copied_nodes = (node for tree in copies for node in tree.nodes())  # flat's order
        for node, value in zip(copied_nodes, values.tolist(), strict=True):
            node.predicted_energy = value
        stamp = {"estimator": self.estimator, "trained_on": state.training_data.to_dict(),
                 "schema": state.schema}
        if state.calibration is not None:
            stamp["calibrated_on"] = state.calibration.calibrated_on.to_dict()
        for tree in copies:
            tree.meta["predictor"] = copy.deepcopy(stamp)
        return copies

    def _check_trees(self, trees: Sequence[Tree]) -> None:
        """Refuse trees of another schema or lacking a feature the model reads."""
        needed = set(self._fitted().feature_names)
        mine = self.schema
        for tree in trees:
            if tree.schema != mine:
                raise tree.error(
                    f"this tree follows schema {tree.schema} but the predictor was trained on "
                    f"{mine}: trace it with --schema {mine.name} (no conversion exists)",
                    field="schema")
            missing = needed & set(tree.meta.get("features_unavailable", []))
            if missing:
                raise tree.error(
                    f"this predictor reads feature(s) {sorted(missing)} that the tree records as "
                    "unavailable on the machine that traced it; use a structure-only predictor "
                    "or trace on the target hardware", field="features_unavailable")

    # ------------------------------------------------------------------------- persistence
    def save(self, directory: str) -> None:
        """Write config.json (JSON) and tensors.safetensors into ``directory``, as one unit."""
        self._fitted()
        persist.save_model(self, directory)

    @classmethod
    def load(cls, directory: str):
        """Load a model directory written by :meth:`save`; never unpickles anything."""
        model = persist.load_model(directory)
        if cls is not TreePredictor and not isinstance(model, cls):
            raise persist.ModelFormatError(f"{directory}: holds a {type(model).__name__}, not a "
                                   f"{cls.__name__}")
        return model

    # --------------------------------------------------------------------- to implement
    @classmethod
    def check_params(cls, params: dict[str, Any], check: Checker | None = None,
                     at: tuple = ()) -> None:
        """InputError naming an unknown or the first invalid setting of ``params`` (``check``:
        the file they come from, ``at``: where in it)."""
        raise NotImplementedError

    def state_payload(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        raise NotImplementedError

    def state_from_payload(self, meta: dict[str, Any], arrays: dict[str, np.ndarray], *,
                           schema: dict[str, Any], training_data: TrainingData,
                           calibration: Any) -> Any:
        raise NotImplementedError

    def _feature_names(self) -> list[str]:
        raise NotImplementedError

    def _fit_flat(self, flat: FlatForest, schema: Schema, training_data: TrainingData,
                  progress: bool) -> None:
        raise NotImplementedError

    def _leaf_energies(self, flat: FlatForest) -> np.ndarray:
        raise NotImplementedError

    def _combine(self, flat: FlatForest, leaf_energy: np.ndarray,
                 overhead_factor: float | None) -> np.ndarray:
        raise NotImplementedError

    def _type_keys(self, flat: FlatForest) -> np.ndarray:
        raise NotImplementedError


def common_schema(trees: Sequence[Tree]) -> Schema:
    """The one schema all training trees share (TreeFormatError naming the first that differs)."""
    first = trees[0].schema
    for tree in trees[1:]:
        if tree.schema != first:
            raise tree.error(f"schema {tree.schema} differs from {first} of {trees[0].where}: "
                             "train on trees of one schema", field="schema")
    return first


def flattened(flat: FlatForest, trees: Sequence[Tree]) -> FlatForest:
    """``flat`` after checking that it is the flattening of exactly ``trees`` (their roots, in
    order); ValueError if not."""
    roots = flat.roots()
    if len(roots) != len(trees) or any(r is not t.root for r, t in zip(roots, trees, strict=True)):
        raise ValueError("the flattened forest given is not that of these trees")
    return flat


def check_predictions(flat: FlatForest, values: np.ndarray, trees: Sequence[Tree]) -> None:
    """Raise PredictionError for the first prediction that is not a positive finite number."""
    bad = np.flatnonzero(~np.isfinite(values) | (values <= 0))
    if not bad.size:
        return
    i = int(bad[0])
    node = flat.nodes[i]
    tree = next(t for t in trees if any(n is node for n in t.nodes()))
    more = f" (and {bad.size - 1} more node(s))" if bad.size > 1 else ""
    raise PredictionError(
        f"{tree.where}: node {node.scope!r} of {tree.label}: the predicted energy "
        f"{values[i]:.3g} J is not a positive number{more}; its features lie far outside what "
        "the predictor was trained on")
