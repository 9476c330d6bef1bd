"""The predictor: leaf regressors per primitive type and learned weighted sums up the tree."""

from irene.model.persist import ModelFormatError
from irene.model.regressor import DEFAULT_CONFIG, IreneRegressor

__all__ = ["DEFAULT_CONFIG", "IreneRegressor", "ModelFormatError"]
