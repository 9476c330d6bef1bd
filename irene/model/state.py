"""What a fitted :class:`~irene.model.IreneRegressor` holds: one typed, documented dataclass.

Persistence (:mod:`irene.model.persist`) walks these fields: the numeric arrays go to
``tensors.safetensors``, everything else to ``config.json``. Shapes use ``F`` features, ``L``
leaf-regressor inputs, ``T`` leaf regressors (primitive types + the shared one), ``A`` additive
features, ``P`` weight-network inputs (``F`` or its polynomial expansion); the first dimension
of the overhead and weight arrays is the inner node kind (module, model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from irene.model.params import SHARED_TYPE
from irene.schema import Schema


@dataclass
class TrainingData:
    """What a predictor was trained on: it speaks for that hardware, with that schema.

    ``source``: the file(s) the trees came from; ``trees`` and ``models``: how many trees and
    which models; ``synthetic``: True when the energies were not real measurements (a formula or
    a simulated meter); ``schema``: ``{"name", "version"}``; ``hardware``: the device names the
    trees were measured on (e.g. ``["NVIDIA H100 80GB HBM3"]``); ``device``, ``meter`` and
    ``dtype``: as recorded in the trees (None where they do not say); ``phases``: the workloads
    of the trees (``forward``, ``prefill``, ``decode``; empty for predictors saved before it was
    recorded).
    """

    source: list[str] = field(default_factory=list)
    trees: int = 0
    models: list[str] = field(default_factory=list)
    synthetic: bool = False
    schema: dict[str, Any] = field(default_factory=dict)
    hardware: list[str] = field(default_factory=list)
    device: list[str] = field(default_factory=list)
    meter: list[str] = field(default_factory=list)
    dtype: list[str] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, trees: Sequence[Any], schema: Schema) -> TrainingData:
        """Describe a training set of trees (see :class:`irene.tree.Tree`)."""
        from irene.datasets import is_synthetic

        def values(key: str) -> list[str]:
            return sorted({str(t.meta[key]) for t in trees if t.meta.get(key) is not None})

        return cls(source=sorted({t.source for t in trees}), trees=len(trees),
                   models=sorted({t.model_name for t in trees}), synthetic=is_synthetic(trees),
                   schema=schema.to_dict(), hardware=values("device_name"),
                   device=values("device"), meter=values("meter"), dtype=values("dtype"),
                   phases=sorted({t.key.phase for t in trees}))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingData:
        """Inverse of :meth:`to_dict`; ValueError on a field of the wrong type."""
        known = {f.name: f for f in fields(cls)}
        out = cls()
        for name, value in data.items():
            if name not in known:
                continue
            default = getattr(out, name)
            if isinstance(default, list):
                ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            elif isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int):
                ok = type(value) is int and value >= 0
            else:
                ok = isinstance(value, dict)
            if not ok:
                raise ValueError(f"training_data.{name} has the wrong type: {value!r}")
            setattr(out, name, value)
        return out

    def hardware_text(self) -> str:
        """Which hardware (and meter) the predictor's energies are for, in words."""
        if self.synthetic:
            return "synthetic data (a formula, not a measurement)"
        where = ", ".join(self.hardware) or ", ".join(self.device) or "unrecorded hardware"
        meter = ", ".join(m for m in self.meter if m != "none")
        return where + (f" (meter: {meter})" if meter else "")


@dataclass
class FittedState:
    """The fitted parameters of an :class:`~irene.model.IreneRegressor` (energies in J).

    ``feature_names`` [F]: what the model reads; ``leaf_types`` [T]: lower-cased primitive types
    with one regressor each, :data:`~irene.model.params.SHARED_TYPE` last-but-inner (for unseen
    types), and ``<module>``/``<model>`` with the unstructured strategy; ``additive_index`` [A]
    and ``leaf_index`` [L]: columns of the features used by the overhead term and the leaves;
    ``x_mean``/``x_std`` [F]: standardisation; ``leaf_theta`` [T, L+1]: closed-form leaf fits
    (last column the bias) and ``leaf_delta`` [T, L+1] their end-to-end corrections (times
    ``leaf_scale`` [T], the median gold energy per type); ``overhead_beta`` [2, A] module
    overhead per unit of ``Δx / overhead_scale`` [A] and ``beta_delta`` [2, A] its correction
    (times ``overhead_unit`` [2]); ``weight_a`` [2, P], ``weight_b`` [2]: the child-weight
    networks; ``schema``: the feature schema of the training trees; ``training_data``: what it
    was trained on; ``calibration``: a correction to other hardware
    (:class:`Calibration`), or None.
    """

    feature_names: list[str]
    leaf_types: list[str]
    additive_index: list[int]
    leaf_index: list[int]
    schema: dict[str, Any]
    training_data: TrainingData
    x_mean: np.ndarray
    x_std: np.ndarray
    leaf_theta: np.ndarray
    leaf_scale: np.ndarray
    leaf_delta: np.ndarray
    overhead_beta: np.ndarray
    overhead_scale: np.ndarray
    overhead_unit: np.ndarray
    beta_delta: np.ndarray
    weight_a: np.ndarray
    weight_b: np.ndarray
    calibration: Calibration | None = None

    @classmethod
    def array_fields(cls) -> list[str]:
        """Names of the numeric array fields (stored as tensors)."""
        return [f.name for f in fields(cls) if f.type in ("np.ndarray", np.ndarray)]

    def expected_shapes(self, n_weight_inputs: int) -> dict[str, tuple[int, ...]]:
        """The shape every array must have, given the weight networks' input width ``P``."""
        f, t = len(self.feature_names), len(self.leaf_types)
        a, leaf = len(self.additive_index), len(self.leaf_index) + 1
        return {"x_mean": (f,), "x_std": (f,), "leaf_theta": (t, leaf), "leaf_scale": (t,),
                "leaf_delta": (t, leaf), "overhead_beta": (2, a), "overhead_scale": (a,),
                "overhead_unit": (2,), "beta_delta": (2, a), "weight_a": (2, n_weight_inputs),
                "weight_b": (2,)}


#: exponents outside this range are not a device change but a fit gone wrong
EXPONENT_RANGE = (0.5, 1.5)
#: the largest |log factor| a term calibration may apply (a factor of e^5 ~ 150)
TERM_RANGE = 5.0


@dataclass
class Calibration:
    """A fitted correction (see the module docstring). ``leaf_types`` [C] (lower-cased, the
    shared correction last); ``log_scale`` [C] and ``exponent`` [C]: ``E_new = exp(log_scale) ·
    E_base^exponent`` per type; ``overhead_factor``: multiplies the module overhead;
    ``calibrated_on``: the measured trees used."""

    leaf_types: list[str]
    log_scale: np.ndarray
    exponent: np.ndarray
    overhead_factor: float
    calibrated_on: TrainingData = field(default_factory=TrainingData)
    #: log factors on the (per-call, per-FLOP, per-byte) leaf terms (``form="terms"``; the
    #: power-law rows are then the identity)
    term_log_scale: np.ndarray | None = None

    @property
    def form(self) -> str:
        """``terms`` or ``power_law``."""
        return "power_law" if self.term_log_scale is None else "terms"

    def index(self, keys: np.ndarray) -> np.ndarray:
        """Row of each node's type key in :attr:`leaf_types` (the shared row when absent)."""
        lookup = {k: i for i, k in enumerate(self.leaf_types)}
        shared = lookup[SHARED_TYPE]
        return np.array([lookup.get(k, shared) for k in keys.tolist()], dtype=np.int64)

    def apply(self, leaf_energy: np.ndarray, index: np.ndarray) -> np.ndarray:
        """Corrected leaf energies (J) from base ones (J), per node type row ``index``
        (non-positive base values stay as they are: the prediction check reports them)."""
        safe = np.maximum(leaf_energy, 1e-300)
        corrected = np.exp(self.log_scale[index] + self.exponent[index] * np.log(safe))
        return np.where(leaf_energy > 0, corrected, leaf_energy)

    def to_dict(self) -> dict:
        return {"leaf_types": list(self.leaf_types), "overhead_factor": self.overhead_factor,
                "calibrated_on": self.calibrated_on.to_dict(), "form": self.form}

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"calibration.log_scale": self.log_scale, "calibration.exponent": self.exponent}
        if self.term_log_scale is not None:
            out["calibration.term_log_scale"] = self.term_log_scale
        return out
