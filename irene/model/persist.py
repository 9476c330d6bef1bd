"""The model directory: ``config.json`` (JSON) + ``tensors.safetensors`` (plain float64 arrays).

``config.json`` names the predictor class (``estimator``: ``irene`` for
:class:`~irene.model.IreneRegressor`, ``structure`` for
:class:`~irene.model.StructureRegressor`), its settings, the schema and data it was trained on,
an optional calibration, and the class's own fitted state (``state``); the numeric arrays of the
state go to the tensors file. The directory is written as
one unit: both files go into a temporary directory beside it, which then takes the target's
place, so a failure leaves the previous model (or nothing) — never a mix; a save killed
between the two renames of that swap is recovered by the next save or load
(:func:`irene.files.recover_directory_swap`).

Loading reads exactly these two files, with ``json`` and ``safetensors.numpy`` — formats that hold
data only — from regular files of bounded size, and checks every setting, name, shape and value
before use. Nothing is unpickled, no code is imported from the directory, and any other file in
it is ignored.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load, save

from irene.checks import Checker, InputError, describe
from irene.files import (
    check_replaceable_dir,
    directory_unit,
    loads_json,
    read_small_text,
    recover_directory_swap,
)
from irene.model.state import TrainingData

#: a :class:`~irene.model.base.TreePredictor` (not imported here: the base class imports this
#: module to save, load and register its subclasses)
Predictor = Any

FORMAT_NAME = "irene-regressor"
FORMAT_VERSION = 2
CONFIG_FILE = "config.json"
TENSOR_FILE = "tensors.safetensors"
MODEL_FILES = (CONFIG_FILE, TENSOR_FILE)
#: the largest tensors file read (a predictor holds a few thousand numbers)
MAX_TENSOR_BYTES = 256 * 2**20


class ModelFormatError(InputError):
    """A model directory that is missing, corrupt or tampered with; the message names the file."""


# --------------------------------------------------------------------------------------------
# saving


#: predictor classes by the name users and model directories give them (``config.json``'s
#: ``estimator``); every :class:`~irene.model.base.TreePredictor` subclass with a name is
#: entered when it is defined (:func:`register`)
ESTIMATORS: dict[str, type[Predictor]] = {}


def register(cls: type[Predictor]) -> None:
    """Enter a predictor class under its ``estimator`` name (classes without one are skipped)."""
    if cls.estimator:
        ESTIMATORS[cls.estimator] = cls


def estimators() -> dict[str, type[Predictor]]:
    """Predictor classes by the name ``config.json`` records (:data:`ESTIMATORS`)."""
    return ESTIMATORS


def save_model(model: Predictor, directory: str | os.PathLike) -> None:
    """Write a fitted model to ``directory`` as one unit (see the module docstring).

    ``directory`` must be a new path, an empty directory, or a model directory written by irene
    (holding nothing but its two files): OutputError otherwise, so nothing else is replaced.
    """
    from irene import __version__

    state = model._fitted()
    state_meta, arrays = model.state_payload()
    meta: dict[str, Any] = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                            "created_by": f"irene {__version__}", "estimator": model.estimator,
                            "config": model.get_params(), "schema": state.schema,
                            "training_data": state.training_data.to_dict(),
                            "calibration": None, "state": state_meta}
    if state.calibration is not None:
        meta["calibration"] = state.calibration.to_dict()
        arrays.update(state.calibration.arrays())
    tensors = {k: np.ascontiguousarray(np.asarray(v, dtype=np.float64)) for k, v in arrays.items()}
    config_text = json.dumps(meta, indent=2, allow_nan=False) + "\n"  # fails before any write
    with directory_unit(directory, owns=is_model_directory) as staging:
        (staging / TENSOR_FILE).write_bytes(save(tensors, metadata={"format": FORMAT_NAME}))
        (staging / CONFIG_FILE).write_text(config_text, encoding="utf-8")


def check_replaceable(directory: str | os.PathLike) -> None:
    """OutputError unless ``directory`` may receive a model (see :func:`save_model`); call it
    before long work so a bad output path fails early."""
    check_replaceable_dir(directory, owns=is_model_directory)


def is_model_directory(directory: Path) -> bool:
    """Whether ``directory`` holds an irene model and nothing else."""
    names = {p.name for p in directory.iterdir()}
    if not names <= set(MODEL_FILES) or CONFIG_FILE not in names:
        return False
    try:
        meta = loads_json(read_small_text(directory / CONFIG_FILE))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT_NAME


# --------------------------------------------------------------------------------------------
# loading


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = loads_json(read_small_text(path))
    except FileNotFoundError as exc:
        raise ModelFormatError(f"{path}: missing (not a model directory written by irene)") from exc
    except (OSError, ValueError) as exc:  # JSONDecodeError, UnicodeDecodeError are ValueErrors
        raise ModelFormatError(f"{path}: not valid JSON or not readable ({exc})") from exc
    check = Checker(str(path), {}, error=ModelFormatError)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise check.error(("format",), f"must be {FORMAT_NAME!r}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise check.error(("format_version",), f"must be {FORMAT_VERSION}, got "
                          f"{describe(meta.get('format_version'))} (retrain with this irene)")
    estimator = meta.get("estimator")
    if not isinstance(estimator, str) or estimator not in estimators():
        raise check.error(("estimator",), f"must be one of {', '.join(sorted(estimators()))}, "
                                          f"got {describe(estimator)}")
    for key in ("config", "schema", "training_data", "state"):
        if not isinstance(meta.get(key), dict):
            raise check.error((key,), f"missing or not an object, got {describe(meta.get(key))}")
    return meta


def _read_tensors(path: Path) -> dict[str, np.ndarray]:
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_TENSOR_BYTES:
            raise ModelFormatError(f"{path}: not a regular file of at most {MAX_TENSOR_BYTES} "
                                   "bytes")
        with open(path, "rb") as handle:
            tensors = load(handle.read())
    except FileNotFoundError as exc:
        raise ModelFormatError(f"{path}: missing") from exc
    except (SafetensorError, OSError, ValueError) as exc:
        if isinstance(exc, ModelFormatError):
            raise
        raise ModelFormatError(f"{path}: not a valid safetensors file ({exc})") from exc
    for key, value in tensors.items():
        if value.dtype != np.float64 or not np.all(np.isfinite(value)):
            raise ModelFormatError(f"{path}: tensor {key!r} must hold finite float64 values")
    return tensors


def _read_calibration(meta: Any, tensors: dict[str, np.ndarray], path: Path):
    """The checked :class:`~irene.model.state.Calibration` of a model directory, or None."""
    from irene.model.params import SHARED_TYPE
    from irene.model.state import EXPONENT_RANGE, TERM_RANGE, Calibration

    if meta is None:
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("leaf_types"), list) or \
            not all(isinstance(k, str) for k in meta["leaf_types"]):
        raise ModelFormatError(f"{path}: field 'calibration' is malformed")
    factor = Checker(str(path), {}, error=ModelFormatError).number(
        meta.get("overhead_factor"), ("calibration", "overhead_factor"), minimum=0.0,
        maximum=10.0)
    types = meta["leaf_types"]
    arrays = {}
    for name in ("log_scale", "exponent"):
        value = tensors.get(f"calibration.{name}")
        if value is None or value.shape != (len(types),) or value.dtype != np.float64 \
                or not np.all(np.isfinite(value)):
            raise ModelFormatError(f"{path.parent / TENSOR_FILE}: tensor 'calibration.{name}' "
                                   f"missing or not {len(types)} finite numbers")
        arrays[name] = value
    low, high = EXPONENT_RANGE
    if SHARED_TYPE not in types or np.any(arrays["exponent"] < low) or \
            np.any(arrays["exponent"] > high) or np.any(np.abs(arrays["log_scale"]) > 50):
        raise ModelFormatError(f"{path}: calibration values out of range")
    try:
        calibrated_on = TrainingData.from_dict(meta.get("calibrated_on") or {})
    except ValueError as exc:
        raise ModelFormatError(f"{path}: calibration: {exc}") from exc
    form = meta.get("form", "power_law")  # absent before term calibrations existed
    terms = None
    if form == "terms":
        terms = tensors.get("calibration.term_log_scale")
        if terms is None or terms.shape != (3,) or not np.all(np.abs(terms) <= TERM_RANGE):
            raise ModelFormatError(f"{path.parent / TENSOR_FILE}: tensor "
                                   "'calibration.term_log_scale' missing or not 3 numbers "
                                   f"within ±{TERM_RANGE:g}")
    elif form != "power_law":
        raise ModelFormatError(f"{path}: calibration.form must be power_law or terms")
    return Calibration(leaf_types=types, log_scale=arrays["log_scale"],
                       exponent=arrays["exponent"], overhead_factor=float(factor),
                       calibrated_on=calibrated_on, term_log_scale=terms)


def load_model(directory: str | os.PathLike) -> Predictor:
    """Read and check a model directory; raise :class:`ModelFormatError` naming what is wrong."""
    from irene.schema import schema_of_meta

    directory = Path(directory)
    note = recover_directory_swap(directory, owns=is_model_directory)
    if note:  # a save killed between its two renames: the earlier model is back
        print(f"note: {note}", file=sys.stderr)
    if not directory.is_dir():
        raise ModelFormatError(f"{directory}: not a directory")
    config_path = directory / CONFIG_FILE
    meta = _read_meta(config_path)
    cls = estimators()[meta["estimator"]]
    cls.check_params(meta["config"], Checker(str(config_path), {}, error=ModelFormatError),
                     ("config",))
    try:
        model = cls(**meta["config"])
    except (TypeError, ValueError) as exc:
        raise ModelFormatError(f"{config_path}: field 'config': {exc}") from exc
    try:
        schema_of_meta({"schema": meta["schema"]})
        training = TrainingData.from_dict(meta["training_data"])
    except ValueError as exc:
        raise ModelFormatError(f"{config_path}: {exc}") from exc
    tensors = _read_tensors(directory / TENSOR_FILE)
    calibration = _read_calibration(meta.get("calibration"), tensors, config_path)
    try:
        model.state_ = model.state_from_payload(meta["state"], tensors, schema=meta["schema"],
                                                training_data=training,
                                                calibration=calibration)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFormatError(f"{directory}: inconsistent model: {exc}") from exc
    return model
