"""Adapting a trained predictor to other hardware from a few measured trees of that hardware.

Energy on another device is not a constant multiple of the first: in IrEne's two devices the
ratio runs 0.70–0.90 with the model and the input size, because compute-bound and memory-bound
primitives change by different factors and fixed per-call costs differ. So calibration refits a
few parameters that carry exactly those differences and keeps everything that is structure
(which nodes exist, how children add up, the shape of each leaf's dependence on its features):

* per primitive type ``k``, a power-law correction of the base prediction of each leaf,
  ``E_new = exp(a_k) · E_base^b_k`` (two numbers per type, fitted in log space by ridge
  regression shrunk towards a correction shared by all types, which types with few measured
  leaves use as it is);
* one factor on the module overhead term (the work a module does beyond its children), fitted
  in closed form on the inner nodes after the leaves are corrected.

A structure predictor whose leaves keep their per-call, per-FLOP and per-byte terms apart (the
physical leaf form, or the relative one) is calibrated more physically, with three numbers for
every primitive type at once (``form="terms"``, the default for it): the device's fixed energy
per call (launch, idle draw), its energy per FLOP and its energy per byte, as factors on the
fitted terms (``term_log_scale``: their logarithms, fitted on the calibration trees' leaves by
Levenberg–Marquardt on log residuals, lightly pulled towards 1), plus the overhead factor.

The child weights and the leaf regressors themselves are unchanged. The calibrated model is a
new model directory that records both what the predictor was trained on and what it was
calibrated on.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence

import numpy as np

from irene.features import FlatForest
from irene.model.base import TreePredictor
from irene.model.params import SHARED_TYPE
from irene.model.state import EXPONENT_RANGE, TERM_RANGE, Calibration, TrainingData
from irene.tree import Tree, check_unique_keys, require_energy

#: ridge penalty (per leaf) pulling a type's log ratio towards the shared one
SHRINKAGE = 0.05
#: ridge penalty (per leaf) pulling an exponent towards its prior (the shared one; 1 for the
#: shared): an exponent is only fitted where the leaf energies span a range of sizes
SLOPE_PRIOR = 0.05
#: leaves a type needs in the calibration trees to get a correction of its own
MIN_LEAVES = 3
#: pull of the term scales towards 1 (weight of log scale² against the mean squared log
#: residual of the leaves)
TERM_PRIOR = 1e-3
#: bound of a term's log scale (a factor of about 150 either way)
#: calibration forms: per-type power laws, term scales, or terms where the predictor has them
FORMS = ("auto", "power_law", "terms")


class CalibrationRefused(ValueError):
    """A calibration that does not improve the trees it was fitted on (the message says by how
    much it fails)."""


def check_improves(before: dict[str, float], after: dict[str, float]) -> None:
    """Refuse (:class:`CalibrationRefused`) a calibration whose model-level error on its own
    calibration trees (mean absolute %, ``before``/``after`` as from
    :func:`irene.evaluation.percentage_errors`) is not lower than the uncalibrated model's: a
    correction that cannot even fit the trees it saw is not a device change, and writing it
    would make every later prediction worse without a word."""
    if not after["model"] < before["model"]:
        raise CalibrationRefused(
            f"the calibration does not improve its own calibration trees (model-level error "
            f"{before['model']:.2f} % -> {after['model']:.2f} %); nothing written: measure "
            "trees of other shapes or models, or keep the uncalibrated predictor")


def calibrate(model: TreePredictor, trees: Sequence[Tree], form: str = "auto") -> TreePredictor:
    """A copy of the fitted ``model`` calibrated to the hardware the measured ``trees`` come
    from (every node needs a ground truth, in J). ``form``: ``terms`` (scale the per-call,
    per-FLOP and per-byte terms of every leaf), ``power_law`` (a power-law correction per
    primitive type) or ``auto`` (terms where the predictor has them, see the module docstring).

    Raises ValueError when the trees do not fit the model (schema, features) or are too few.
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {', '.join(FORMS)}, got {form!r}")
    trees = list(trees)
    if not trees:
        raise ValueError("calibration needs at least one measured tree")
    require_energy(trees)
    check_unique_keys(trees, "calibration trees")
    base = copy.deepcopy(model)
    base.state_.calibration = None
    base._check_trees(trees)
    flat = FlatForest.from_trees(trees, base.state_.feature_names)
    scalable = getattr(base, "term_scalable", None)
    if form == "terms" and not (scalable and scalable()):
        raise ValueError("this predictor's leaves have no separate per-call, per-FLOP and "
                         "per-byte terms to scale: use form='power_law'")
    if form == "terms" or (form == "auto" and scalable and scalable()):
        return _calibrate_terms(base, flat, trees)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unseen types get the shared correction
        leaf_base = base._leaf_energies(flat)
    leaf_rows = _regressed(base, flat)
    keys = base._type_keys(flat)
    calibration = _fit_leaf_corrections(keys[leaf_rows], leaf_base[leaf_rows],
                                        flat.gold[leaf_rows])
    calibration.calibrated_on = TrainingData.of(trees, base.schema)
    corrected = calibration.apply(leaf_base, calibration.index(keys))
    calibration.overhead_factor = _fit_overhead_factor(base, flat, corrected)
    base.state_.calibration = calibration
    return base


def _calibrate_terms(base: TreePredictor, flat: FlatForest, trees: list[Tree]) -> TreePredictor:
    """Term scales fitted on the leaves, then the overhead factor (see the module docstring)."""
    from irene.model.optim import levenberg_marquardt

    leaf = flat.is_leaf
    log_gold = np.log(flat.gold[leaf])
    weight = 1.0 / np.sqrt(leaf.sum())
    prior = np.sqrt(TERM_PRIOR)

    def residual(scales: np.ndarray) -> np.ndarray:
        energy = base.scaled_leaf_energies(flat, scales)[leaf]
        return np.concatenate([weight * (np.log(np.maximum(energy, 1e-300)) - log_gold),
                               prior * scales])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unseen types: priced like their nearest known type
        scales = np.clip(levenberg_marquardt(residual, np.zeros(3)), -TERM_RANGE, TERM_RANGE)
        corrected = base.scaled_leaf_energies(flat, scales)
    calibration = Calibration(leaf_types=[SHARED_TYPE], log_scale=np.zeros(1),
                              exponent=np.ones(1), overhead_factor=1.0,
                              calibrated_on=TrainingData.of(trees, base.schema),
                              term_log_scale=scales)
    calibration.overhead_factor = _fit_overhead_factor(base, flat, corrected)
    base.state_.calibration = calibration
    return base


def _regressed(model: TreePredictor, flat: FlatForest) -> np.ndarray:
    """The nodes whose energy comes from a regressor of their own (the leaves; every node for a
    predictor that regresses inner nodes directly)."""
    if getattr(model, "training_strategy", None) == "unstructured":
        return np.ones(len(flat.gold), dtype=bool)
    return flat.is_leaf


def _fit_leaf_corrections(keys: np.ndarray, base: np.ndarray, gold: np.ndarray) -> Calibration:
    """log(gold) = a_k + b_k·(log(base) − x0) per type k (x0: the mean log base energy, so a_k is
    the log ratio at a typical leaf and b_k how the ratio changes with the leaf's size).

    First a common exponent b with one intercept per type (so differences between types do not
    masquerade as a size effect), pulled towards b = 1 (a constant factor); then each type's
    own (a_k, b_k) by ridge regression towards (its intercept, the common b). The shared
    correction, for types absent from the calibration trees, is (mean intercept, b).
    """
    if (base <= 0).any():
        raise ValueError("the base predictor gives non-positive leaf energies on the "
                         "calibration trees: they lie outside what it was trained on")
    x, y = np.log(base), np.log(gold)
    x0 = float(x.mean())
    names = sorted(k for k in set(keys.tolist()) if (keys == k).sum() >= MIN_LEAVES)
    if not names:
        raise ValueError(f"no primitive type has {MIN_LEAVES} measured leaves to calibrate on")
    used = np.isin(keys, names)
    intercepts, slope = _common_slope(keys[used], x[used] - x0, y[used], names)
    corrections = [_ridge_line(x[keys == k] - x0, y[keys == k],
                               prior=np.array([intercepts[i], slope]),
                               strength=(SHRINKAGE, SLOPE_PRIOR)) for i, k in enumerate(names)]
    corrections.append(np.array([float(np.mean(intercepts)), slope]))
    a = np.array([c[0] for c in corrections])
    b = np.array([c[1] for c in corrections])
    # exp(a + b·(log E − x0)) = exp(a − b·x0) · E^b
    return Calibration(leaf_types=[*names, SHARED_TYPE], log_scale=a - b * x0, exponent=b,
                       overhead_factor=1.0)


def _common_slope(keys: np.ndarray, x: np.ndarray, y: np.ndarray,
                  names: list[str]) -> tuple[np.ndarray, float]:
    """One intercept per type and one slope (pulled towards 1), by least squares."""
    n = len(x)
    design = np.column_stack([*(keys == k for k in names), x]).astype(float)
    penalty = np.zeros(design.shape[1])
    penalty[-1] = n * SLOPE_PRIOR
    target = np.zeros(design.shape[1])
    target[-1] = n * SLOPE_PRIOR * 1.0
    theta = np.linalg.solve(design.T @ design + np.diag(penalty) + 1e-12 * np.eye(len(penalty)),
                            design.T @ y + target)
    slope = float(np.clip(theta[-1], *EXPONENT_RANGE))
    intercepts = np.array([float(np.mean(y[keys == k] - slope * x[keys == k])) for k in names])
    return intercepts, slope


def _ridge_line(x: np.ndarray, y: np.ndarray, *, prior: np.ndarray,
                strength: tuple[float, float]) -> np.ndarray:
    """(a, b) minimising Σ (y − a − b·x)² + n·(λa·(a − prior_a)² + λb·(b − prior_b)²), with b
    kept in :data:`EXPONENT_RANGE` (a refitted with b clipped); ``x`` is centred by the caller,
    so a and b are nearly independent."""
    n = len(x)
    design = np.stack([np.ones(n), x], axis=1)
    penalty = n * np.diag(strength)
    a, b = np.linalg.solve(design.T @ design + penalty + 1e-12 * np.eye(2),
                           design.T @ y + penalty @ prior)
    low, high = EXPONENT_RANGE
    if not low <= b <= high:
        b = float(np.clip(b, low, high))
        a = float((np.sum(y - b * x) + n * strength[0] * prior[0]) / (n + n * strength[0]))
    return np.array([a, b])


def _fit_overhead_factor(model: TreePredictor, flat: FlatForest,
                         leaf_energy: np.ndarray) -> float:
    """The factor c on the module overhead that minimises the relative squared error of the
    inner nodes: predictions are linear in c (pred = A + c·B), so c has a closed form."""
    without = model._combine(flat, leaf_energy, 0.0)
    with_one = model._combine(flat, leaf_energy, 1.0)
    inner = ~flat.is_leaf
    a, b, g = without[inner], with_one[inner] - without[inner], flat.gold[inner]
    denominator = float(np.sum(b**2 / g**2))
    if denominator <= 0:
        return 1.0
    factor = float(np.sum(b * (g - a) / g**2) / denominator)
    return float(np.clip(factor, 0.0, 10.0))
