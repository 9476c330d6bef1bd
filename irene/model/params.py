"""The regressor's settings: their choices and ranges, checked before anything is fitted or
written (a bad value is one clear :class:`~irene.checks.InputError` that names the setting,
and its file and line when read from one)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from irene.checks import Checker, describe
from irene.schema import FEATURE_SETS, FEATURES

STRATEGIES = ("end2end", "stepwise", "unstructured", "none")
WEIGHTINGS = ("close_to_one", "exact_one", "free")
LEAF_FITS = ("ols", "relative", "log")
#: the leaf regressor used for primitive types unseen in training
SHARED_TYPE = "<shared>"
#: inner node kinds that get their own overhead and weight parameters
INNER_KINDS = ("module", "model")
#: the largest polynomial degree of the weight features (the feature count grows as F^degree)
MAX_POLYNOMIAL_DEGREE = 4


def choice(allowed: tuple[str, ...]):
    """A check: one of ``allowed``."""
    def check(value: Any) -> str | None:
        return None if value in allowed else f"one of {', '.join(allowed)}"
    return check


def boolean(value: Any) -> str | None:
    """A check: true or false."""
    return None if type(value) is bool else "true or false"


def integer(low: int, high: int):
    """A check: an integer from ``low`` to ``high``."""
    def check(value: Any) -> str | None:
        ok = type(value) is int and low <= value <= high
        return None if ok else f"an integer from {low} to {high}"
    return check


def number(low: float, high: float, *, low_open: bool = False):
    """A check: a finite number in [low, high] (or (low, high] with ``low_open``)."""
    def check(value: Any) -> str | None:
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
              and math.isfinite(value) and (value > low if low_open else value >= low)
              and value <= high)
        return None if ok else f"a number {'>' if low_open else '>='} {low:g} and <= {high:g}"
    return check


def _feature_sets(value: Any) -> str | None:
    ok = (isinstance(value, (list, tuple)) and value
          and all(isinstance(v, str) and v in FEATURE_SETS for v in value))
    return None if ok else f"a non-empty list of feature sets from {sorted(FEATURE_SETS)}, " \
                           'e.g. ["model_specs"]'


def _leaf_features(value: Any) -> str | None:
    if value in ("auto", "all"):
        return None
    ok = (isinstance(value, (list, tuple)) and value
          and all(isinstance(v, str) and v in FEATURES for v in value))
    return None if ok else '"auto", "all" or a non-empty list of feature names'


#: setting -> check returning None when the value is valid, else what it must be
RULES = {
    "feature_sets": _feature_sets,
    "polynomial_features": boolean,
    "polynomial_degree": integer(1, MAX_POLYNOMIAL_DEGREE),
    "standardize_features": boolean,
    "training_strategy": choice(STRATEGIES),
    "weighting_setting": choice(WEIGHTINGS),
    "tanh_scalar": number(0, 1e6, low_open=True),
    "normalize_loss_scale": boolean,
    "leaf_fit": choice(LEAF_FITS),
    "leaf_features": _leaf_features,
    "leaf_ridge": number(0, 1e6),
    "module_overhead": boolean,
    "epochs": integer(0, 100_000),
    "learning_rate": number(0, 10, low_open=True),
    "finetune_leaves": boolean,
    "tol": number(0, 1),
    "n_iter_no_change": integer(1, 100_000),
    "seed": integer(0, 2**32 - 1),
}


def check_params(params: Mapping[str, Any], rules: Mapping[str, Any] | None = None,
                 check: Checker | None = None, at: tuple = ()) -> None:
    """Raise an :class:`~irene.checks.InputError` naming an unknown setting or the first whose
    value is invalid (``rules``: setting -> check, default the IrEne regressor's); ``check``
    says which file (and line) the settings come from, ``at`` where they sit in it."""
    rules = RULES if rules is None else rules
    check = check or Checker("configuration", {})
    check.mapping(params, at, tuple(rules))
    for name, value in params.items():
        problem = rules[name](value)
        if problem is not None:
            raise check.error(at + (name,), f"must be {problem}, got {describe(value)}")


def names_from(allowed: tuple[str, ...], *, empty: bool = False):
    """A check: a list of names from ``allowed`` (non-empty unless ``empty``)."""
    def check(value: Any) -> str | None:
        ok = (isinstance(value, (list, tuple)) and (empty or value)
              and all(isinstance(v, str) and v in allowed for v in value))
        size = "" if empty else "non-empty "
        return None if ok else f"a {size}list of names from {list(allowed)}"
    return check
