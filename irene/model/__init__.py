"""The predictors: energy (J per call) of every node of a tree.

- :class:`IreneRegressor`: the IrEne method (leaf regressors per primitive type, learned near-1
  child weights, a module overhead), best with readings taken on the hardware
  (``resource_utilization`` features);
- :class:`StructureRegressor`: from the model's structure alone (FLOPs, bytes, shapes), for
  predicting before the model runs on the hardware.

Both follow :class:`~irene.model.base.TreePredictor`: ``fit(trees)``, ``predict(trees)``,
``save(dir)``, ``load(dir)`` (any predictor: ``load_predictor(dir)``), and
:func:`~irene.model.calibrate.calibrate` adapts either to other hardware.
"""

from irene.model.base import PredictionError, TreePredictor
from irene.model.persist import ESTIMATORS, ModelFormatError, load_model
from irene.model.regressor import DEFAULT_CONFIG, IreneRegressor
from irene.model.state import FittedState, TrainingData
from irene.model.structure import StructureRegressor

# ESTIMATORS: predictor classes by the name users and model directories give them (each
# TreePredictor subclass with a name enters itself when it is defined: persist.register)


def load_predictor(directory: str) -> TreePredictor:
    """Load any predictor directory written by ``save`` (its class is recorded in it)."""
    return load_model(directory)


def make_predictor(estimator: str = "irene", **params) -> TreePredictor:
    """A predictor of class ``estimator`` (``irene`` or ``structure``) with these settings."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {sorted(ESTIMATORS)}, got {estimator!r}")
    return ESTIMATORS[estimator](**params)


__all__ = ["DEFAULT_CONFIG", "ESTIMATORS", "FittedState", "IreneRegressor", "ModelFormatError",
           "PredictionError", "StructureRegressor", "TrainingData", "TreePredictor",
           "load_predictor", "make_predictor"]
