"""The model directory: ``config.json`` (JSON) + ``tensors.safetensors`` (plain float64 arrays).

Loading reads exactly these two files, with ``json`` and ``safetensors.numpy`` — formats that hold
data only — and checks every name, shape and value before use. Nothing is unpickled, no code is
imported from the directory, and any other file in it is ignored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save

from irene.tree import atomic_write

if TYPE_CHECKING:
    from irene.model.regressor import IreneRegressor

FORMAT_NAME = "irene-regressor"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
TENSOR_FILE = "tensors.safetensors"
_ARRAYS = ("x_mean", "x_std", "leaf_theta", "leaf_scale", "leaf_delta", "overhead_beta",
           "overhead_scale", "overhead_unit", "beta_delta", "weight_a", "weight_b")


class ModelFormatError(ValueError):
    """A model directory that is missing, corrupt or tampered with; the message names the file."""


def save_model(model: IreneRegressor, directory: str | Path) -> None:
    """Write a fitted model to ``directory`` (created if needed); each file written atomically."""
    from irene import __version__

    state = model.state_
    directory = Path(directory)
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "created_by": f"irene {__version__}",
        "config": model.config,
        "feature_names": state["feature_names"],
        "leaf_types": state["leaf_types"],
        "additive_index": state["additive_index"],
        "leaf_index": state["leaf_index"],
        "training_data": state.get("training_data", {}),
    }
    tensors = {k: np.ascontiguousarray(np.asarray(state[k], dtype=np.float64)) for k in _ARRAYS}
    with atomic_write(directory / TENSOR_FILE, "wb") as handle:
        handle.write(save(tensors, metadata={"format": FORMAT_NAME}))
    with atomic_write(directory / CONFIG_FILE) as handle:
        json.dump(meta, handle, indent=2, allow_nan=False)
        handle.write("\n")


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelFormatError(f"{path}: missing (not a model directory written by irene)") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ModelFormatError(f"{path}: field 'format' must be {FORMAT_NAME!r}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFormatError(f"{path}: field 'format_version' must be {FORMAT_VERSION}, "
                               f"got {meta.get('format_version')!r}")
    for key, kind in (("config", dict), ("feature_names", list), ("leaf_types", list),
                      ("additive_index", list), ("leaf_index", list)):
        if not isinstance(meta.get(key), kind):
            raise ModelFormatError(f"{path}: field {key!r} missing or not a {kind.__name__}")
    if not all(isinstance(v, str) for v in meta["feature_names"] + meta["leaf_types"]):
        raise ModelFormatError(f"{path}: feature_names and leaf_types must be strings")
    n = len(meta["feature_names"])
    for key in ("additive_index", "leaf_index"):
        if not all(isinstance(i, int) and 0 <= i < n for i in meta[key]):
            raise ModelFormatError(f"{path}: field {key!r} out of range")
    return meta


def _read_tensors(path: Path) -> dict[str, np.ndarray]:
    try:
        tensors = load_file(str(path))
    except FileNotFoundError as exc:
        raise ModelFormatError(f"{path}: missing") from exc
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFormatError(f"{path}: not a valid safetensors file ({exc})") from exc
    for key in _ARRAYS:
        if key not in tensors:
            raise ModelFormatError(f"{path}: tensor {key!r} missing")
        if tensors[key].dtype != np.float64 or not np.all(np.isfinite(tensors[key])):
            raise ModelFormatError(f"{path}: tensor {key!r} must hold finite float64 values")
    return tensors


def _expected_shapes(model: IreneRegressor, meta: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    import torch

    f, t, a = len(meta["feature_names"]), len(meta["leaf_types"]), len(meta["additive_index"])
    leaf_f = len(meta["leaf_index"])
    p = model._poly(torch.zeros(1, f, dtype=torch.float64)).shape[1]
    return {"x_mean": (f,), "x_std": (f,), "leaf_theta": (t, leaf_f + 1), "leaf_scale": (t,),
            "leaf_delta": (t, leaf_f + 1), "overhead_beta": (2, a), "overhead_scale": (a,),
            "overhead_unit": (2,), "beta_delta": (2, a), "weight_a": (2, p), "weight_b": (2,)}


def load_model(cls: type[IreneRegressor], directory: str | Path) -> IreneRegressor:
    """Read and check a model directory; raise :class:`ModelFormatError` naming what is wrong."""
    from irene.model.regressor import SHARED_TYPE

    directory = Path(directory)
    if not directory.is_dir():
        raise ModelFormatError(f"{directory}: not a directory")
    meta = _read_meta(directory / CONFIG_FILE)
    try:
        model = cls(**meta["config"])
    except (TypeError, ValueError) as exc:
        raise ModelFormatError(f"{directory / CONFIG_FILE}: field 'config': {exc}") from exc
    tensors = _read_tensors(directory / TENSOR_FILE)
    for key, shape in _expected_shapes(model, meta).items():
        if tensors[key].shape != shape:
            raise ModelFormatError(f"{directory / TENSOR_FILE}: tensor {key!r} has shape "
                                   f"{tensors[key].shape}, expected {shape}")
    if SHARED_TYPE not in meta["leaf_types"] or np.any(tensors["x_std"] <= 0):
        raise ModelFormatError(f"{directory}: inconsistent model (no shared leaf regressor or "
                               "non-positive feature scale)")
    model.state_ = {
        "feature_names": meta["feature_names"], "leaf_types": meta["leaf_types"],
        "additive_index": meta["additive_index"], "leaf_index": meta["leaf_index"],
        "training_data": meta.get("training_data", {}),
        **{k: tensors[k] for k in _ARRAYS},
    }
    return model
