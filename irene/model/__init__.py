"""The predictor: leaf regressors per primitive type and learned weighted sums up the tree."""

from irene.model.persist import ModelFormatError
from irene.model.regressor import DEFAULT_CONFIG, IreneRegressor, PredictionError
from irene.model.state import FittedState, TrainingData

__all__ = ["DEFAULT_CONFIG", "FittedState", "IreneRegressor", "ModelFormatError",
           "PredictionError", "TrainingData"]
