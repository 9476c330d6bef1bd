"""StructureRegressor: the energy of every node from the tree's structure alone.

For predicting energy *before* running a model on the target hardware: it reads only
``model_specs`` features (FLOPs, bytes, parameters per node; batch size, sequence length, tokens
per tree) — no latency, utilisation or energy reading. Energies are joules per call; ``flops`` is
in MFLOP and ``mem_bytes`` in MiB as in the trees.

**Leaves** (``ml`` nodes) of primitive type ``k`` (``leaf_fit="physical"``, the default)::

    Ê = (c0^κ + (c_f · flops)^κ + (c_b · mem_bytes)^κ)^(1/κ) + Σ_o c_o · x_o
    E = Ê · exp(r_k(x))                              (shape memory)
    r_k(x) = Σ_j K(x, x_j) ρ_j / (Σ_j K(x, x_j) + λ),   ρ_j = log(E_j / Ê_j)
    K(x, x_j) = exp(-‖log z(x) − log z(x_j)‖² / (2 h²)),
    z = (flops, mem_bytes, batch_size, seq_len),   h = 0.05,   λ = 1

a smooth maximum (κ fitted per type: κ → ∞ the roofline's max, κ = 1 the sum) of a fixed
per-call energy ``c0`` (launch, idle draw over the shortest kernel), compute-bound energy
``c_f`` J/MFLOP and memory-bound energy ``c_b`` J/MiB, plus non-negative per-unit costs of any
further ``leaf_features`` ``x_o`` (default ``input_size``, tokens per call, and
``num_parameters``: weights are read once per call whatever the batch, so a layer's fixed cost
grows with its weights). The byte term is kept only where it extrapolates across sizes inside
the training data (:func:`_byte_term_extrapolates`: fitted on the middle batch sizes and
sequence lengths, checked on the smallest and largest): IrEne's ``Linear`` leaves count their
weights once per batch element, so their bytes grow at short sequences and large batches while
their energy follows the FLOPs, and a byte term fitted on long sequences prices seq 32 8 %
high. Every coefficient
is positive by construction
(fitted as logarithms), so a leaf is never predicted at or below 0 J, and beyond the training
range the energy grows linearly in the work — it extrapolates by construction
(:func:`physical_energy`; fitted by Levenberg–Marquardt on log residuals, started at κ = 1 from
the non-negative linear fit). ``leaf_fit="relative"`` keeps the former form, ``θ_k · [1, flops,
mem_bytes, input_size]`` by relative least squares, whose signed coefficients can go negative
beyond the grid (a BERT pooler at 128 × 512). The *shape memory* corrects the smooth form by the
mean log residual ρ of the training primitives of the same type and (almost: within about 5 % in
each of z) the same shape: on a GPU the same kernel on the same shape costs the same whichever
model calls it, and these costs jump with tile and wave quantisation in ways no smooth function
of FLOPs and bytes follows. Far from every training shape ``Σ K ≪ λ`` and the correction fades
to 0, leaving the smooth form. A type never seen in training borrows ``θ`` of the type of the
nearest training primitive in (log FLOPs, log bytes), with a warning: an unknown primitive is
priced like the known one of the most similar work and traffic (``unseen_types="shared"``: one
regressor fitted on all types).

**Modules**::

    Ê = Σ_children (1 + α_{type(c)}) · E(c) + β · Δmem_bytes + γ · n_leaf_children
    E = Ê · exp(r_c(x))                              (module memory)

``γ`` (J per leaf child, ≥ 0) is the fixed cost of the untraced calls that come with each
primitive call (reshapes, masks, the element-wise ops of an activation written in torch): they
are launch-bound at small sizes, where a cost proportional to bytes or to the children's energy
vanishes (without it, trained on seq ≥ 128, GPT-2 at seq ≤ 64 is 3 % low at the root from
its modules' glue alone).
``type(c)`` is the child's primitive type for a leaf and ``<module>`` for an inner child; ``Δf``
is how much the node's own ``f`` exceeds the sum of its children's (work done in operations not
traced as primitives). Untraced work is element-wise (activations written as several torch
calls, reshapes, masks): memory-bound, so it is priced by its bytes; its FLOP count is not
comparable across models (GPT-2's MLP does 6 mJ per untraced MFLOP on device 1, BERT's
intermediate 1.6, while per untraced MiB they differ by a factor 1.4: 0.9 and 1.3 mJ), so
``Δflops`` is not a default
overhead feature (``overhead_features`` can add it, a constant, or the leaf-child count). The
*module memory* is the shape memory for inner nodes, keyed by the composition of the node's
children (``"module: linear x3, matmul x2, softmax"``, :func:`composition_keys`) and fitted on
the residual of each training node against its closed form on its measured children: a module of
the same composition and shape as a training one is brought back to its measured cost, any other
keeps the closed form. ``α_k`` prices the glue that comes with a primitive of type ``k`` inside
a module (reshapes and masks around attention MatMul/Softmax, the adds that combine embeddings,
residual adds next to LayerNorm): it depends on the children's primitive types, never on the
module's class name, so it carries over to architectures not seen in training. A child type
unseen in training gets ``α = 0``.

**The root** (``model`` node)::

    E = ((1 + α_root) · Σ_children E(c) + β · Δmem_bytes) · exp(r_c(x))     (β of the modules)

one factor for how a whole-model run differs from the sum of its separately measured parts.

**Fitting** is closed form: leaves first; then the modules by weighted least squares
``E_gold − Σ gold(children) = Σ_k α_k G_k + β · Δx`` with ``G_k`` the summed gold energy of the
node's children of type ``k`` and weights ``1/E_gold²`` (relative error), under α, β ≥ 0 (glue and
untraced work cost energy; without the bound a few module designs can fit cancelling negative
values that extrapolate badly); then ``α_root`` (free sign) the same way on the roots.
``training="end2end"`` then fine-tunes α, β and α_root with Adam on the relative squared error of
every node, predicted bottom-up from the predicted leaves.

What the memories are worth depends on the data: they bring primitives and modules back to their
measured cost where training models share their shapes (IrEne's six models share hidden size 768:
leave-one-model-out mostly measures this recall) and add nothing on shapes never measured, where
the smooth forms alone predict (``benchmarks/structure_splits_bench.py`` holds out shapes and
families so that no twin exists; ``benchmarks/structure_only_bench.py`` ablates the memories).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from irene.checks import Checker
from irene.features import FlatForest
from irene.model.base import TreePredictor
from irene.model.optim import (
    Adam,
    levenberg_marquardt,
    one_thread,
    relative_lstsq,
    relative_nnls,
    rms_scale,
)
from irene.model.params import boolean, check_params, choice, integer, names_from, number
from irene.model.state import TrainingData
from irene.schema import NODE_TYPE_CODES, Schema, feature_names

#: the structure features every node or tree carries (the model_specs set + what is always added)
STRUCTURE_FEATURES = tuple(feature_names(["model_specs"]))
#: features whose excess over the children's sum can price a module's own work
ADDITIVE_STRUCTURE = ("flops", "mem_bytes", "num_parameters")
#: non-additive overhead columns: a constant per node, the number of its leaf children
OVERHEAD_EXTRAS = ("constant", "leaf_children")
LEAF_FORMS = ("physical", "relative", "log", "roofline")
#: leaf forms whose per-call, per-FLOP and per-byte terms a calibration can scale
TERM_FORMS = ("physical", "relative")
CHILD_WEIGHTS = ("per_type", "per_kind", "none")
ROOT_WEIGHTS = ("single", "as_module")
FITS = ("closed_form", "end2end")
UNSEEN_TYPES = ("nearest", "shared")
INNER_KINDS = ("module", "model")
MODULE_CHILD = "<module>"  # the child "type" of an inner child
SHARED_TYPE = "<shared>"  # unseen types predicted by the regressor fitted on all primitives
RESIDUAL_CLIP = 3.0  # |log residual| kept by the shape memory (a factor of 20)
TINY = 1e-12  # J: floor of a backbone value inside the memory's log residual
LOG_K_RANGE = (-3.0, 4.0)  # log of the physical form's smooth-max exponent k
DROPPED = -100.0  # log coefficient of a physical term left out (e^-100 J per unit: none)
#: share of a size axis's distinct values at each end that checks how the byte term extrapolates
EDGE_SHARE = 0.2
#: share of the mean energy a term starts at where the non-negative linear start drops it
START_SHARE = 1e-3

#: setting -> check (see irene.model.params)
RULES = {
    "leaf_features": names_from(STRUCTURE_FEATURES),
    "leaf_fit": choice(LEAF_FORMS),
    "unseen_types": choice(UNSEEN_TYPES),
    "fallback_features": names_from(STRUCTURE_FEATURES),
    "shape_memory": boolean,
    "module_memory": boolean,
    "memory_features": names_from(STRUCTURE_FEATURES),
    "memory_bandwidth": number(0, 10, low_open=True),
    "memory_prior": number(0, 1e6, low_open=True),
    "child_weights": choice(CHILD_WEIGHTS),
    "overhead_features": names_from(ADDITIVE_STRUCTURE + OVERHEAD_EXTRAS, empty=True),
    "root_weights": choice(ROOT_WEIGHTS),
    "nonnegative": boolean,
    "ridge": number(0, 1e6),
    "training": choice(FITS),
    "epochs": integer(0, 100_000),
    "learning_rate": number(0, 10, low_open=True),
    "tol": number(0, 1),
    "n_iter_no_change": integer(1, 100_000),
}


@dataclass
class LeafModel:
    """The fitted regressor of one primitive type (or of the fallback).

    ``theta`` multiplies the design ``[1, features / scale]`` (relative and log fits; the log fit
    reads log features and predicts ``exp``); the roofline fit reads ``theta`` as
    ``[c0, c_other..., log c_f, log c_b, log k]``; the physical fit as
    ``[log c0, log c_f, log c_b, log k, log c_other...]`` (see :func:`physical_energy`).
    """

    features: list[str]
    scale: np.ndarray
    theta: np.ndarray
    form: str

    def expected_theta(self) -> int:
        """How many parameters ``theta`` holds for this form and these features."""
        if self.form == "roofline":
            return 1 + (len(self.features) - 2) + 3
        if self.form == "physical":
            return 4 + (len(self.features) - 2)
        return len(self.features) + 1


@dataclass
class ShapeMemory:
    """Training primitives of one type: unique log shapes [U, D], summed log residuals [U] and
    counts [U]."""

    log_shape: np.ndarray
    residual_sum: np.ndarray
    count: np.ndarray


@dataclass
class StructureState:
    """Everything ``fit`` learns (energies in J). ``leaf``: regressor per primitive type;
    ``fallback``: one fitted on all primitives; ``memory``: shape memory per type;
    ``alpha[q, j]``: child-weight offset for parents of kind ``INNER_KINDS[q]`` and children of
    type ``child_types[j]`` (last column: child types unseen in training); ``beta[q]``: J per
    unit of each ``overhead_features`` column; ``leaf_cloud`` [U, 2]: (log(flops + 0.01),
    log bytes) of the training primitives and ``leaf_cloud_type`` their types (an unseen type
    borrows the regressor of the nearest one); plus what every predictor records."""

    feature_names: list[str]
    schema: dict[str, Any]
    training_data: TrainingData
    leaf: dict[str, LeafModel]
    fallback: LeafModel
    memory: dict[str, ShapeMemory]
    child_types: list[str]
    alpha: np.ndarray
    beta: np.ndarray
    trained_types: list[str] = field(default_factory=list)
    leaf_cloud: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    leaf_cloud_type: list[str] = field(default_factory=list)
    calibration: Any = None
    module_memory: dict[str, ShapeMemory] = field(default_factory=dict)


class StructureRegressor(TreePredictor):
    """Predict the energy (J per call) of every node from structure features only.

    Parameters (keyword-only, checked at once; see the module docstring for the model):

    leaf_features : features of the per-type leaf regressors (default flops, mem_bytes,
        input_size, num_parameters).
    leaf_fit : ``relative`` (linear, relative least squares), ``log`` (power law) or
        ``roofline`` (smooth max of compute and memory terms).
    unseen_types : ``nearest`` (borrow the regressor of the nearest known primitive in
        (FLOPs, bytes)) or ``shared`` (one regressor fitted on all types).
    fallback_features : features of the regressor fitted on all primitive types.
    shape_memory, memory_features, memory_bandwidth, memory_prior : the kernel-smoothed residual
        correction per type: on, its shape coordinates, the kernel width h (in log units) and the
        prior weight λ that fades it away from training shapes.
    module_memory : the same correction for inner nodes, per composition of their children
        (same shape coordinates, width and prior).
    child_weights : ``per_type`` (one α per child primitive type), ``per_kind`` (one per parent
        kind) or ``none``.
    overhead_features : Δ columns of the module overhead (``flops``, ``mem_bytes``,
        ``num_parameters``, ``constant``, ``leaf_children``; default Δmem_bytes and the
        number of leaf children).
    root_weights : ``single`` (one factor on the root's children) or ``as_module``.
    nonnegative : α, β >= 0 (glue and untraced work cost energy).
    ridge : ridge penalty of the inner fits (used instead of the non-negative fit when > 0).
    training : ``closed_form`` or ``end2end`` (Adam fine-tuning of α, β after the closed form).
    epochs, learning_rate, tol, n_iter_no_change : the fine-tuning's Adam and early stopping.
    """

    estimator = "structure"

    def __init__(self, *, leaf_features: tuple[str, ...] = ("flops", "mem_bytes", "input_size",
                                                           "num_parameters"),
                 leaf_fit: str = "physical", unseen_types: str = "nearest",
                 fallback_features: tuple[str, ...] = ("flops", "mem_bytes"),
                 shape_memory: bool = True, module_memory: bool = True,
                 memory_features: tuple[str, ...] = ("flops", "mem_bytes", "batch_size",
                                                     "seq_len"),
                 memory_bandwidth: float = 0.05, memory_prior: float = 1.0,
                 child_weights: str = "per_type",
                 overhead_features: tuple[str, ...] = ("mem_bytes", "leaf_children"),
                 root_weights: str = "single", nonnegative: bool = True, ridge: float = 0.0,
                 training: str = "closed_form", epochs: int = 300, learning_rate: float = 0.01,
                 tol: float = 1e-4, n_iter_no_change: int = 10) -> None:
        self.leaf_features = _listed(leaf_features)
        self.leaf_fit = leaf_fit
        self.unseen_types = unseen_types
        self.fallback_features = _listed(fallback_features)
        self.shape_memory = shape_memory
        self.module_memory = module_memory
        self.memory_features = _listed(memory_features)
        self.memory_bandwidth = memory_bandwidth
        self.memory_prior = memory_prior
        self.child_weights = child_weights
        self.overhead_features = _listed(overhead_features)
        self.root_weights = root_weights
        self.nonnegative = nonnegative
        self.ridge = ridge
        self.training = training
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.check_params(self.get_params())
        self.state_: StructureState | None = None

    @classmethod
    def check_params(cls, params: dict[str, Any], check: Checker | None = None,
                     at: tuple = ()) -> None:
        """InputError naming an unknown or the first invalid setting (see
        :func:`irene.model.params.check_params`)."""
        check = check or Checker("configuration", {})
        check_params(params, RULES, check, at)
        merged = {**cls.defaults(), **params}
        if merged["leaf_fit"] in ("roofline", "physical") and \
                not {"flops", "mem_bytes"} <= set(merged["leaf_features"]):
            raise check.error(at + ("leaf_fit",), f"{merged['leaf_fit']!r} needs flops and "
                                                  "mem_bytes among leaf_features")

    # ---------------------------------------------------------------------------------- fit
    def _feature_names(self) -> list[str]:
        return list(STRUCTURE_FEATURES)

    def _fit_flat(self, flat: FlatForest, schema: Schema, training_data: TrainingData,
                  progress: bool) -> None:
        """Leaf regressors, the shape memory, child weights and overheads (closed form)."""
        leaf = flat.is_leaf
        types = sorted(set(flat.instance_type[leaf].tolist()))
        leaf_models = {t: self._fit_leaf(flat, leaf & (flat.instance_type == t),
                                         self.leaf_features, self.leaf_fit) for t in types}
        fallback = self._fit_leaf(flat, leaf, self.fallback_features, "relative")
        state = StructureState(feature_names=list(flat.feature_names), schema=schema.to_dict(),
                               training_data=training_data, leaf=leaf_models, fallback=fallback,
                               memory={}, child_types=[*types, MODULE_CHILD],
                               alpha=np.zeros((2, 0)), beta=np.zeros((2, 0)),
                               trained_types=types)
        cloud = self._cloud_coordinates(flat)[leaf]
        cloud, first = np.unique(cloud, axis=0, return_index=True)
        state.leaf_cloud = cloud
        state.leaf_cloud_type = flat.instance_type[leaf][first].tolist()
        backbone = self._leaf_backbone(flat, state, self._effective_types(flat, state))
        if self.shape_memory:
            state.memory = self._build_memory(flat, backbone, types)
        self._fit_inner(flat, state)
        if self.module_memory:
            state.module_memory = self._build_module_memory(flat, state)
        self.state_ = state
        if self.training == "end2end":
            self._finetune(flat)

    def _columns(self, flat: FlatForest, names: list[str]) -> np.ndarray:
        return flat.x[:, [flat.feature_names.index(n) for n in names]]

    def _fit_leaf(self, flat: FlatForest, rows: np.ndarray, names: list[str],
                  form: str) -> LeafModel:
        return fit_leaf(self._columns(flat, names)[rows], flat.gold[rows], names, form,
                        size=self._columns(flat, ["batch_size", "seq_len"])[rows])

    def _effective_types(self, flat: FlatForest, state: StructureState,
                         warn_unseen: bool = False) -> np.ndarray:
        """The primitive type whose regressor each leaf uses, [N] ("" at inner nodes): its own
        if seen in training; else (``unseen_types="nearest"``) the type of the nearest training
        primitive in (log FLOPs, log bytes), or ("shared") ``"<shared>"``."""
        leaf = flat.is_leaf
        out = np.where(leaf, flat.instance_type, "").astype(object)
        unseen_rows = leaf & ~np.isin(flat.instance_type, state.trained_types)
        if not unseen_rows.any():
            return out
        unseen = sorted(set(flat.instance_type[unseen_rows].tolist()))
        if self.unseen_types == "shared":
            out[unseen_rows] = SHARED_TYPE
            how = "the regressor fitted on all primitive types"
        else:
            coords = self._cloud_coordinates(flat)[unseen_rows]
            d2 = ((coords[:, None, :] - state.leaf_cloud[None, :, :]) ** 2).sum(axis=2)
            out[unseen_rows] = np.asarray(state.leaf_cloud_type, dtype=object)[d2.argmin(axis=1)]
            how = ("the regressor of the type of the nearest training primitive in "
                   "(FLOPs, bytes)")
        if warn_unseen:
            warnings.warn(f"primitive type(s) {unseen} were not seen in training: predicted with "
                          f"{how}", stacklevel=4)
        return out

    def _leaf_backbone(self, flat: FlatForest, state: StructureState,
                       types: np.ndarray, term_scales: np.ndarray | None = None) -> np.ndarray:
        """Smooth-form prediction of every leaf (J), [N] (0 at inner nodes); ``term_scales``:
        log factors on the (per-call, per-FLOP, per-byte) terms (:func:`scaled_terms`)."""
        out = np.zeros(len(flat.gold))
        for t in sorted(set(types[flat.is_leaf].tolist())):
            rows = flat.is_leaf & (types == t)
            model = state.fallback if t == SHARED_TYPE else state.leaf[t]
            if term_scales is not None:
                model = scaled_terms(model, term_scales)
            out[rows] = leaf_predict(model, self._columns(flat, model.features)[rows])
        return out

    def term_scalable(self) -> bool:
        """Whether every leaf regressor has separate per-call, per-FLOP and per-byte terms
        (physical or relative forms), so a device change can scale them (calibration)."""
        state = self._fitted()
        return all(m.form in TERM_FORMS for m in (*state.leaf.values(), state.fallback))

    def scaled_leaf_energies(self, flat: FlatForest, term_scales: np.ndarray) -> np.ndarray:
        """Leaf energies (J), [N], with the terms of every leaf regressor scaled by
        ``exp(term_scales)`` (per call, per FLOP, per byte) and the shape memory applied."""
        state = self._fitted()
        types = self._effective_types(flat, state)
        return self._leaf_backbone(flat, state, types, term_scales) * \
            self._memory_factor(flat, state)

    def _cloud_coordinates(self, flat: FlatForest) -> np.ndarray:
        """(log(flops + 0.01), log(mem_bytes)) of every node, [N, 2]."""
        x = self._columns(flat, ["flops", "mem_bytes"])
        return np.log(np.maximum(x, 0.0) + np.array([0.01, 1e-6]))

    def _log_shape(self, flat: FlatForest) -> np.ndarray:
        return np.log(np.maximum(self._columns(flat, self.memory_features), 1e-3))

    def _build_memory(self, flat: FlatForest, backbone: np.ndarray,
                      types: list[str]) -> dict[str, ShapeMemory]:
        shapes = self._log_shape(flat)
        memory = {}
        for t in types:
            rows = flat.is_leaf & (flat.instance_type == t)
            residual = np.log(flat.gold[rows] / np.maximum(backbone[rows], TINY))
            residual = np.clip(residual, -RESIDUAL_CLIP, RESIDUAL_CLIP)
            unique, inverse = np.unique(shapes[rows], axis=0, return_inverse=True)
            inverse = inverse.ravel()
            memory[t] = ShapeMemory(unique, np.bincount(inverse, weights=residual),
                                    np.bincount(inverse).astype(float))
        return memory

    def _build_module_memory(self, flat: FlatForest,
                             state: StructureState) -> dict[str, ShapeMemory]:
        """Per composition of children (:func:`composition_keys`), the log residual of every
        training inner node against its closed form evaluated on its *measured* children:
        modules of the same composition and shape as a training one are brought back to its
        measured cost; others (new compositions, new shapes) keep the closed form."""
        arrays = self._structure_arrays(flat, state)
        overhead = (arrays["delta"] * state.beta[arrays["inner_kind"]]).sum(axis=1)
        weight = 1.0 + state.alpha[arrays["parent_kind"], arrays["ctype"]]
        child = flat.parent >= 0
        closed = overhead + np.bincount(flat.parent[child], weights=(weight * flat.gold)[child],
                                        minlength=len(flat.gold))
        inner = ~flat.is_leaf
        residual = np.zeros(len(flat.gold))
        residual[inner] = np.clip(np.log(flat.gold[inner] / np.maximum(closed[inner], TINY)),
                                  -RESIDUAL_CLIP, RESIDUAL_CLIP)
        keys = composition_keys(flat)
        shapes = self._log_shape(flat)
        memory = {}
        for key in sorted(set(keys[inner].tolist())):
            rows = keys == key
            unique, inverse = np.unique(shapes[rows], axis=0, return_inverse=True)
            inverse = inverse.ravel()
            memory[key] = ShapeMemory(unique, np.bincount(inverse, weights=residual[rows]),
                                      np.bincount(inverse).astype(float))
        return memory

    def _memory_factor(self, flat: FlatForest, state: StructureState) -> np.ndarray:
        """exp(r_k(x)) for every leaf of a type with a memory, 1 elsewhere, [N]."""
        keys = np.where(flat.is_leaf, flat.instance_type, "").astype(object)
        return self._recall(flat, state.memory, keys)

    def _module_factor(self, flat: FlatForest, state: StructureState) -> np.ndarray:
        """exp(r_c(x)) for every inner node whose composition ``c`` has a module memory, 1
        elsewhere (leaves included), [N]."""
        if not state.module_memory:
            return np.ones(len(flat.gold))
        return self._recall(flat, state.module_memory, composition_keys(flat))

    def _recall(self, flat: FlatForest, memories: dict[str, ShapeMemory],
                keys: np.ndarray) -> np.ndarray:
        """The kernel-smoothed memory correction exp(r) of every node whose key has a memory
        (1 elsewhere), [N]."""
        factor = np.ones(len(flat.gold))
        if not memories:
            return factor
        shapes = self._log_shape(flat)
        h2 = self.memory_bandwidth ** 2
        for t, mem in memories.items():
            rows = np.flatnonzero(keys == t)
            if not rows.size:
                continue
            unique, inverse = np.unique(shapes[rows], axis=0, return_inverse=True)
            d2 = ((unique[:, None, :] - mem.log_shape[None, :, :]) ** 2).sum(axis=2)
            kernel = np.exp(-0.5 * d2 / h2)
            correction = (kernel @ mem.residual_sum) / (kernel @ mem.count + self.memory_prior)
            factor[rows] = np.exp(correction[inverse.ravel()])
        return factor

    def _child_type_index(self, flat: FlatForest, state: StructureState) -> np.ndarray:
        """Column of ``state.alpha`` for every node as a child: its primitive type, ``<module>``
        for an inner node, or the last column (α = 0 under a module) for a type unseen in
        training — an unseen type borrows a leaf regressor, never the glue of another type
        (measured: borrowing α too made GPT-trained predictions of BERT 2x worse)."""
        lookup = {t: i for i, t in enumerate(state.child_types)}
        kinds = np.where(flat.is_leaf, flat.instance_type, MODULE_CHILD)
        uniq, inverse = np.unique(kinds, return_inverse=True)
        unseen = len(state.child_types)
        index = np.array([lookup.get(u, unseen) for u in uniq.tolist()], dtype=np.int64)
        return index[inverse.ravel()]

    def _overhead_design(self, flat: FlatForest) -> np.ndarray:
        """[N, len(overhead_features)]: Δ of additive features, or the extra columns."""
        cols = []
        n_leaf_children = np.bincount(flat.parent[flat.is_leaf & (flat.parent >= 0)],
                                      minlength=len(flat.gold)).astype(float)
        for name in self.overhead_features:
            if name == "constant":
                cols.append(np.ones(len(flat.gold)))
            elif name == "leaf_children":
                cols.append(n_leaf_children)
            else:
                j = flat.feature_names.index(name)
                cols.append(flat.x[:, j] - flat.child_sum_x[:, j])
        return np.stack(cols, axis=1) if cols else np.zeros((len(flat.gold), 0))

    def _fit_inner(self, flat: FlatForest, state: StructureState) -> None:
        """Closed form, relative weights: modules ``gold − Σ gold(children) = G·α + Δx·β``;
        the root ``gold − Σ gold(children) − Δx·β_module = α_root·Σ gold(children)``
        (``root_weights="single"``) or fitted like a module (``"as_module"``)."""
        n_cols = len(state.child_types) + 1  # + one column for child types unseen in training
        ctype = self._child_type_index(flat, state)
        child = flat.parent >= 0
        g = np.zeros((len(flat.gold), n_cols))
        np.add.at(g, (flat.parent[child], ctype[child]), flat.gold[child])
        delta = self._overhead_design(flat)
        child_sum = flat.gold_child_sum()
        alpha = np.zeros((len(INNER_KINDS), n_cols))
        beta = np.zeros((len(INNER_KINDS), delta.shape[1]))
        for q, kind in enumerate(INNER_KINDS):
            rows = flat.node_type == NODE_TYPE_CODES[kind]
            if not rows.any():
                continue
            gold, target = flat.gold[rows], flat.gold[rows] - child_sum[rows]
            if kind == "model" and self.root_weights == "single":
                shared = delta[rows] @ beta[0]
                a = child_sum[rows][:, None]
                alpha[q] = relative_lstsq(a, gold, target - shared, self.ridge)[0]
                beta[q] = beta[0]
                continue
            weights = {"per_type": g[rows][:, :-1], "per_kind": child_sum[rows][:, None],
                       "none": np.zeros((rows.sum(), 0))}[self.child_weights]
            a = np.hstack([weights, delta[rows]])
            if a.shape[1] == 0:
                continue
            scale = rms_scale(a)
            if self.nonnegative and self.ridge == 0:  # glue and untraced work cost >= 0 J
                theta = relative_nnls(a / scale, gold, target) / scale
            else:
                theta = relative_lstsq(a / scale, gold, target, self.ridge) / scale
            n_w = weights.shape[1]
            if self.child_weights == "per_type":
                alpha[q, :-1] = theta[:n_w]  # unseen child types keep α = 0
            elif self.child_weights == "per_kind":
                alpha[q] = theta[0]
            beta[q] = theta[n_w:]
        state.alpha, state.beta = alpha, beta

    # ------------------------------------------------------------------------------ predict
    def _structure_arrays(self, flat: FlatForest, state: StructureState) -> dict[str, Any]:
        """Constant arrays of one flattened forest for the bottom-up pass."""
        inner_kind = np.clip(flat.node_type - 1, 0, 1)
        parent_kind = inner_kind[np.maximum(flat.parent, 0)]
        levels = [np.flatnonzero(flat.depth == d) for d in range(int(flat.depth.max()), 0, -1)]
        return {"ctype": self._child_type_index(flat, state), "parent_kind": parent_kind,
                "inner_kind": inner_kind, "delta": self._overhead_design(flat),
                "levels": levels}

    def _leaf_energies(self, flat: FlatForest) -> np.ndarray:
        """Leaf energies (J): smooth form × shape memory (own types only), [N]."""
        state = self._fitted()
        types = self._effective_types(flat, state, warn_unseen=True)
        scales = getattr(state.calibration, "term_log_scale", None)
        return self._leaf_backbone(flat, state, types, scales) * self._memory_factor(flat, state)

    def _combine(self, flat: FlatForest, leaf_energy: np.ndarray,
                 overhead_factor: float | None) -> np.ndarray:
        state = self._fitted()
        beta = state.beta * (1.0 if overhead_factor is None else overhead_factor)
        arrays = self._structure_arrays(flat, state)
        arrays["factor"] = self._module_factor(flat, state)
        return self._aggregate(flat, leaf_energy, state.alpha, beta, arrays)

    def _type_keys(self, flat: FlatForest) -> np.ndarray:
        inner = np.array([f"<{k}>" for k in INNER_KINDS], dtype=object)
        return np.where(flat.is_leaf, flat.instance_type.astype(object),
                        inner[np.clip(flat.node_type - 1, 0, 1)])

    @staticmethod
    def _aggregate(flat: FlatForest, leaf_pred: np.ndarray, alpha: np.ndarray,
                   beta: np.ndarray, arrays: dict[str, Any]) -> np.ndarray:
        """Bottom-up: inner = (Σ (1 + α[kind(parent), type(child)])·child + β[kind]·Δx) ·
        factor (the module memory's, ``arrays["factor"]``, 1 when absent)."""
        n = len(leaf_pred)
        factor = arrays.get("factor", np.ones(n))
        overhead = (arrays["delta"] * beta[arrays["inner_kind"]]).sum(axis=1)
        pred = np.where(flat.is_leaf, leaf_pred, overhead)
        weight = 1.0 + alpha[arrays["parent_kind"], arrays["ctype"]]
        for idx in arrays["levels"]:
            pred = pred + np.bincount(flat.parent[idx],
                                      weights=weight[idx] * factor[idx] * pred[idx], minlength=n)
        return pred * factor

    # ------------------------------------------------------------------------- end to end
    def _finetune(self, flat: FlatForest) -> None:
        """Adam on the closed form's free parameters (module α per child type, module β, root
        α): mean over node types of the mean squared relative error of every node, predicted
        bottom-up from the predicted leaves; keeps the parameters of the lowest training loss."""
        import torch

        state = self._fitted()
        types = self._effective_types(flat, state)
        arrays = self._structure_arrays(flat, state)
        leaf_pred = self._leaf_backbone(flat, state, types) * self._memory_factor(flat, state)
        single_root = self.root_weights == "single"
        n_cols = state.alpha.shape[1]
        with one_thread():
            t = {k: torch.from_numpy(v) for k, v in (
                ("leaf_pred", leaf_pred), ("delta", arrays["delta"]), ("gold", flat.gold),
                ("parent", flat.parent), ("ctype", arrays["ctype"]),
                ("parent_kind", arrays["parent_kind"]), ("inner_kind", arrays["inner_kind"]),
                ("is_leaf", flat.is_leaf), ("factor", self._module_factor(flat, state)))}
            levels = [torch.from_numpy(i) for i in arrays["levels"]]
            # β is learned in units of the RMS of its column, so one learning rate fits all
            unit = torch.from_numpy(rms_scale(arrays["delta"][~flat.is_leaf]))
            free = {"alpha": torch.tensor(state.alpha[:, :-1] if not single_root
                                          else state.alpha[:1, :-1], requires_grad=True),
                    "beta": torch.tensor(state.beta * unit.numpy() if not single_root
                                         else state.beta[:1] * unit.numpy(), requires_grad=True),
                    "root": torch.tensor(state.alpha[1:, :1].copy(), requires_grad=True)}
            ones = torch.ones(1, n_cols, dtype=torch.float64)

            def tables() -> tuple[torch.Tensor, torch.Tensor]:
                alpha = torch.cat([free["alpha"], torch.zeros(len(free["alpha"]), 1,
                                                               dtype=torch.float64)], dim=1)
                if self.child_weights == "per_kind":
                    alpha = free["alpha"][:, :1] * ones
                beta = free["beta"] / unit
                if single_root:
                    alpha = torch.cat([alpha, free["root"] * ones])
                    beta = torch.cat([beta, beta])
                return alpha, beta

            def forward() -> torch.Tensor:
                alpha, beta = tables()
                overhead = (t["delta"] * beta[t["inner_kind"]]).sum(dim=1)
                pred = torch.where(t["is_leaf"], t["leaf_pred"], overhead)
                weight = 1.0 + alpha[t["parent_kind"], t["ctype"]]
                for idx in levels:
                    pred = pred.index_add(0, t["parent"][idx],
                                          weight[idx] * t["factor"][idx] * pred[idx])
                return pred * t["factor"]

            learned = {"alpha": self.child_weights != "none", "beta": bool(free["beta"].numel()),
                       "root": single_root}
            params = [free[k] for k, on in learned.items() if on]
            masks = [m for m in (torch.from_numpy(flat.node_type == code)
                                 for code in NODE_TYPE_CODES.values()) if bool(m.any())]
            adam = Adam(params, lr=self.learning_rate)
            best, stale = math.inf, 0
            for _ in range(self.epochs):
                err = ((forward() - t["gold"]) / t["gold"]) ** 2
                loss = torch.stack([err[m].mean() for m in masks]).mean()
                value = float(loss.detach())
                stale = stale + 1 if value > best * (1 - self.tol) else 0
                if value < best:
                    best = value
                    with torch.no_grad():
                        alpha, beta = tables()
                    state.alpha, state.beta = alpha.numpy().copy(), beta.numpy().copy()
                if stale >= self.n_iter_no_change:
                    break
                adam.step(torch.autograd.grad(loss, params))

    # ------------------------------------------------------------------------- persistence
    def state_payload(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The fitted state as (JSON-ready fields, named float64 arrays); regressors and
        memories are stored by their position in the sorted list of types."""
        state = self._fitted()
        types = sorted(state.leaf)
        meta = {"feature_names": state.feature_names, "types": types,
                "forms": {t: state.leaf[t].form for t in types},
                "fallback_form": state.fallback.form, "memory_types": sorted(state.memory),
                "child_types": state.child_types, "trained_types": state.trained_types,
                "leaf_cloud_type": state.leaf_cloud_type,
                "module_memory_keys": sorted(state.module_memory)}
        arrays: dict[str, np.ndarray] = {"alpha": state.alpha, "beta": state.beta,
                                         "leaf_cloud": state.leaf_cloud,
                                         "fallback.scale": state.fallback.scale,
                                         "fallback.theta": state.fallback.theta}
        for i, t in enumerate(types):
            arrays[f"leaf.{i}.scale"] = state.leaf[t].scale
            arrays[f"leaf.{i}.theta"] = state.leaf[t].theta
        for i, t in enumerate(sorted(state.memory)):
            memory = state.memory[t]
            arrays[f"memory.{i}.log_shape"] = memory.log_shape
            arrays[f"memory.{i}.residual_sum"] = memory.residual_sum
            arrays[f"memory.{i}.count"] = memory.count
        for i, key in enumerate(sorted(state.module_memory)):
            memory = state.module_memory[key]
            arrays[f"module_memory.{i}.log_shape"] = memory.log_shape
            arrays[f"module_memory.{i}.residual_sum"] = memory.residual_sum
            arrays[f"module_memory.{i}.count"] = memory.count
        return meta, arrays

    def state_from_payload(self, meta: dict[str, Any], arrays: dict[str, np.ndarray], *,
                           schema: dict[str, Any], training_data: TrainingData,
                           calibration: Any) -> StructureState:
        """The fitted state read back; every name, form and shape checked (ValueError)."""
        def strings(key: str) -> list[str]:
            value = meta.get(key)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"state field {key!r} must be a list of strings")
            return value

        def array(name: str, shape: tuple) -> np.ndarray:
            value = arrays.get(name)
            if value is None or value.ndim != len(shape) or any(
                    want is not None and got != want for got, want in zip(value.shape, shape,
                                                                           strict=True)):
                raise ValueError(f"tensor {name!r} missing or not of shape {shape}")
            return value

        names, types = strings("feature_names"), strings("types")
        if names != list(STRUCTURE_FEATURES):
            raise ValueError(f"feature_names must be {list(STRUCTURE_FEATURES)}")
        forms = meta.get("forms")
        if not isinstance(forms, dict) or set(forms) != set(types) or \
                not all(f in LEAF_FORMS for f in forms.values()) or \
                meta.get("fallback_form") != "relative":
            raise ValueError("leaf forms missing or unknown")
        leaf = {}
        for i, t in enumerate(types):
            model = LeafModel(self.leaf_features, array(f"leaf.{i}.scale",
                                                        (len(self.leaf_features),)),
                              arrays.get(f"leaf.{i}.theta"), forms[t])
            array(f"leaf.{i}.theta", (model.expected_theta(),))
            leaf[t] = model
        fallback = LeafModel(self.fallback_features,
                             array("fallback.scale", (len(self.fallback_features),)),
                             array("fallback.theta", (len(self.fallback_features) + 1,)),
                             "relative")
        memory = {}
        for i, t in enumerate(strings("memory_types")):
            if t not in types:
                raise ValueError(f"shape memory of unknown type {t!r}")
            shape = array(f"memory.{i}.log_shape", (None, len(self.memory_features)))
            memory[t] = ShapeMemory(shape, array(f"memory.{i}.residual_sum", (len(shape),)),
                                    array(f"memory.{i}.count", (len(shape),)))
        module_memory = {}  # absent from directories written before it existed: none
        keys = strings("module_memory_keys") if "module_memory_keys" in meta else []
        for i, key in enumerate(keys):
            shape = array(f"module_memory.{i}.log_shape", (None, len(self.memory_features)))
            module_memory[key] = ShapeMemory(
                shape, array(f"module_memory.{i}.residual_sum", (len(shape),)),
                array(f"module_memory.{i}.count", (len(shape),)))
        child_types, cloud_type = strings("child_types"), strings("leaf_cloud_type")
        if child_types != [*types, MODULE_CHILD] or not set(cloud_type) <= set(types):
            raise ValueError("child types or the primitive cloud do not match the leaf types")
        return StructureState(
            feature_names=names, schema=schema, training_data=training_data, leaf=leaf,
            fallback=fallback, memory=memory, child_types=child_types,
            alpha=array("alpha", (2, len(child_types) + 1)),
            beta=array("beta", (2, len(self.overhead_features))),
            trained_types=strings("trained_types"),
            leaf_cloud=array("leaf_cloud", (len(cloud_type), 2)), leaf_cloud_type=cloud_type,
            calibration=calibration, module_memory=module_memory)


def composition_keys(flat: FlatForest) -> np.ndarray:
    """A key per inner node naming its kind and the multiset of its children's types (a leaf
    child by its primitive type, an inner child as ``<module>``), e.g.
    ``"module: linear x3, matmul x2, softmax"``; "" at leaves, [N]. Module class names are never
    read: two modules of different classes with the same children share a key."""
    kinds = np.where(flat.is_leaf, flat.instance_type, MODULE_CHILD)
    children: dict[int, dict[str, int]] = {}
    for index in np.flatnonzero(flat.parent >= 0).tolist():
        counts = children.setdefault(int(flat.parent[index]), {})
        counts[kinds[index]] = counts.get(kinds[index], 0) + 1
    keys = np.full(len(flat.gold), "", dtype=object)
    for index, counts in children.items():
        kind = INNER_KINDS[min(max(int(flat.node_type[index]) - 1, 0), 1)]
        keys[index] = f"{kind}: " + ", ".join(
            k if n == 1 else f"{k} x{n}" for k, n in sorted(counts.items()))
    return keys


def _listed(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


# ----------------------------------------------------------------------------- leaf forms
def fit_leaf(x: np.ndarray, gold: np.ndarray, names: Sequence[str], form: str,
             size: np.ndarray | None = None) -> LeafModel:
    """Fit one leaf regressor on primitives with raw features ``x`` [M, F] (columns ``names``)
    and energies ``gold`` [M] (J): ``relative`` = linear with a constant, relative least
    squares; ``log`` = a power law (least squares on log energy and log features); ``roofline`` =
    :func:`_roofline`, started from the relative fit; ``physical`` = :func:`physical_energy`,
    whose byte term is kept only if it extrapolates across ``size`` [M, A] (the size axes of
    every row: batch size, sequence length; :func:`_byte_term_extrapolates`)."""
    if form == "physical":
        return _fit_physical(x, gold, list(names), size)
    if form == "log":
        z = np.log(np.maximum(x, 1e-6))
        scale = rms_scale(z)
        design = np.hstack([np.ones((len(z), 1)), z / scale])
        theta, *_ = np.linalg.lstsq(design, np.log(gold), rcond=None)
        return LeafModel(list(names), scale, theta, "log")
    scale = rms_scale(x)
    design = np.hstack([np.ones((len(x), 1)), x / scale])
    model = LeafModel(list(names), scale, relative_lstsq(design, gold), "relative")
    return _fit_roofline(model, x, gold) if form == "roofline" else model


def _fit_roofline(linear: LeafModel, x: np.ndarray, gold: np.ndarray) -> LeafModel:
    """E = c0 + Σ c_o·other + ((c_f·flops)^k + (c_b·bytes)^k)^(1/k): a smooth roofline
    (k → ∞ is max(flops/peak, bytes/bandwidth)), fitted by Levenberg–Marquardt on the relative
    residuals, started from the linear fit (k = 1)."""
    names = linear.features
    i_f, i_b = names.index("flops"), names.index("mem_bytes")
    other = [i for i in range(len(names)) if i not in (i_f, i_b)]
    lin = linear.theta[1:] / linear.scale
    p0 = np.concatenate([[linear.theta[0]], lin[other],
                         np.log(np.maximum([lin[i_f], lin[i_b]], 1e-12)), [0.0]])
    p = levenberg_marquardt(lambda q: _roofline(q, x, i_f, i_b, other) / gold - 1.0, p0)
    return LeafModel(list(names), np.ones(len(names)), p, "roofline")


def leaf_predict(model: LeafModel, x: np.ndarray) -> np.ndarray:
    """Energy (J) of primitives with raw features ``x`` [M, len(model.features)]."""
    if model.form == "physical":
        i_f, i_b, other = _physical_columns(model.features)
        return physical_energy(model.theta, x[:, i_f], x[:, i_b], x[:, other])
    if model.form == "roofline":
        names = model.features
        i_f, i_b = names.index("flops"), names.index("mem_bytes")
        other = [i for i in range(len(names)) if i not in (i_f, i_b)]
        return _roofline(model.theta, x, i_f, i_b, other)
    if model.form == "log":
        z = np.log(np.maximum(x, 1e-6)) / model.scale
        return np.exp(model.theta[0] + z @ model.theta[1:])
    return model.theta[0] + (x / model.scale) @ model.theta[1:]


def scaled_terms(model: LeafModel, log_scale: np.ndarray) -> LeafModel:
    """``model`` with its per-call term times ``exp(log_scale[0])``, its per-FLOP term times
    ``exp(log_scale[1])`` and its per-byte (and other per-unit) terms times
    ``exp(log_scale[2])``: a device that differs in fixed, compute and memory energy."""
    if model.form not in TERM_FORMS:
        raise ValueError(f"a {model.form} leaf regressor has no separate terms to scale")
    theta = model.theta.astype(float).copy()
    if model.form == "physical":
        theta[[0, 1, 2]] += log_scale
        theta[4:] += log_scale[2]
    else:
        factors = [log_scale[1] if name == "flops" else log_scale[2] for name in model.features]
        theta *= np.exp(np.concatenate([[log_scale[0]], factors]))
    return LeafModel(model.features, model.scale, theta, model.form)


def _physical_columns(names: Sequence[str]) -> tuple[int, int, list[int]]:
    i_f, i_b = names.index("flops"), names.index("mem_bytes")
    return i_f, i_b, [i for i in range(len(names)) if i not in (i_f, i_b)]


def physical_energy(p: np.ndarray, flops: np.ndarray, mem_bytes: np.ndarray,
                    other: np.ndarray) -> np.ndarray:
    """Energy (J) of primitives from MFLOP ``flops`` [M], MiB ``mem_bytes`` [M] and further
    non-negative features ``other`` [M, O]::

        E = (c0^k + (c_f·flops)^k + (c_b·bytes)^k)^(1/k) + Σ_o c_o·x_o

    a smooth maximum of a fixed per-call cost (launch, idle draw over the shortest kernel),
    compute-bound and memory-bound energy (k → ∞: the roofline max; k = 1: their sum), plus
    non-negative per-unit costs of the other features. ``p = [log c0, log c_f, log c_b, log k,
    log c_o...]``: every coefficient is positive by construction, so the energy is > 0 for any
    input and grows linearly in the work beyond the training range."""
    k = math.exp(float(np.clip(p[3], *LOG_K_RANGE)))
    terms = np.stack([np.full(len(flops), p[0]),
                      p[1] + np.log(np.maximum(flops, 0.0) + TINY),
                      p[2] + np.log(np.maximum(mem_bytes, 0.0) + TINY)])
    with np.errstate(over="ignore"):  # trial steps of the fit may overflow: inf, rejected
        energy = np.exp(np.logaddexp.reduce(k * terms, axis=0) / k)
    if other.shape[1]:
        energy = energy + np.maximum(other, 0.0) @ np.exp(p[4:])
    return energy


def _fit_physical(x: np.ndarray, gold: np.ndarray, names: list[str],
                  size: np.ndarray | None = None) -> LeafModel:
    """:func:`physical_energy` fitted by Levenberg–Marquardt on log residuals (relative error
    both ways), on the distinct feature rows (a row measured n times counts n times, at its
    mean log energy), started from k = 1 and each term's median share of the energy.

    With ``size`` [M, A] (the rows' batch size and sequence length) the per-byte term is kept
    only where it extrapolates within the training rows (:func:`_byte_term_extrapolates`); a
    term left out has its log coefficient fixed at :data:`DROPPED`."""
    keep = np.ones(4 + len(names) - 2, dtype=bool)
    if size is not None and not _byte_term_extrapolates(x, gold, names, size):
        keep[2] = False
    p = _fit_physical_terms(x, gold, names, keep)
    return LeafModel(list(names), np.ones(len(names)), p, "physical")


def _fit_physical_terms(x: np.ndarray, gold: np.ndarray, names: list[str],
                        keep: np.ndarray) -> np.ndarray:
    """Parameters of :func:`physical_energy` with the terms where ``keep`` is False fixed at
    :data:`DROPPED` (``keep[3]``, the exponent, is always fitted)."""
    i_f, i_b, other = _physical_columns(names)
    unique, inverse, count = np.unique(x, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    log_gold = np.bincount(inverse, weights=np.log(gold)) / count
    weight = np.sqrt(count / count.sum())
    f, b, o = unique[:, i_f], unique[:, i_b], unique[:, other]
    energy = np.exp(log_gold)

    # start at k = 1, where the form is linear: the non-negative relative least-squares fit
    design = np.column_stack([np.ones(len(f)), f, b, o])
    order = np.array([0, 1, 2, *range(4, 4 + o.shape[1])])  # design column -> parameter
    design = design * keep[order]
    scale = rms_scale(design)
    linear = relative_nnls(design / scale, energy, energy) / scale
    # a term the data cannot identify (a column that is 0 on every row, e.g. the FLOPs of a
    # look-up) starts, and stays, negligible: 1e-3 of the mean energy at the mean column value
    size = np.abs(design).mean(axis=0)
    floor = np.where(size > 0, START_SHARE * energy.mean() / np.where(size > 0, size, 1.0),
                     TINY)
    start = np.log(np.maximum(linear, floor))
    p0 = np.array([start[0], start[1], start[2], 0.0, *start[3:]])
    free = np.flatnonzero(keep)
    p0[~keep] = DROPPED

    def residual(q: np.ndarray) -> np.ndarray:
        p = p0.copy()
        p[free] = q
        return weight * (np.log(physical_energy(p, f, b, o)) - log_gold)

    p = p0.copy()
    p[free] = levenberg_marquardt(residual, p0[free])
    p[3] = float(np.clip(p[3], *LOG_K_RANGE))  # store the exponent the form uses
    return p


def _byte_term_extrapolates(x: np.ndarray, gold: np.ndarray, names: list[str],
                            size: np.ndarray) -> bool:
    """Whether the per-byte term of :func:`physical_energy` prices the ends of the training
    sizes as well as the form without it. For each size axis (columns of ``size`` [M, A]) both
    forms are fitted on the rows strictly inside the lowest and highest :data:`EDGE_SHARE` of
    that axis's distinct values and scored by their mean squared log error on the rows of each
    end (the mean over axes and ends); the byte term goes when the form without it scores
    lower. A byte count that prices work differently at the ends of the range than in its
    middle — IrEne's ``Linear`` leaves count the weights once per
    batch element where the kernel reads them once, so at short sequences and large batches
    their bytes grow while the energy follows the FLOPs — shows here, inside the training
    data, before it misprices sizes never measured. True when no axis has five distinct values
    (one at each end, at least two inside) or the byte column is empty."""
    i_f, i_b, other = _physical_columns(names)
    checks = []
    for axis in range(size.shape[1]):
        levels = np.unique(size[:, axis])
        n_edge = int(math.floor(EDGE_SHARE * len(levels)))
        if n_edge < 1 or len(levels) - 2 * n_edge < 2:
            continue
        low, high = size[:, axis] <= levels[n_edge - 1], size[:, axis] >= levels[-n_edge]
        checks.append((~(low | high), low, high))
    if not checks or not np.any(x[:, i_b] > 0):
        return True

    def score(keep: np.ndarray) -> float:
        errors = []
        for middle, *ends in checks:
            p = _fit_physical_terms(x[middle], gold[middle], names, keep)
            errors += [np.mean((np.log(physical_energy(p, x[r, i_f], x[r, i_b], x[r][:, other]))
                                - np.log(gold[r])) ** 2) for r in ends]
        return float(np.mean(errors))

    full = np.ones(4 + len(other), dtype=bool)
    without = full.copy()
    without[2] = False
    return not score(without) < score(full)


def _roofline(p: np.ndarray, x: np.ndarray, i_f: int, i_b: int, other: list[int]) -> np.ndarray:
    """c0 + x_other·c + ((c_f·flops)^k + (c_b·bytes)^k)^(1/k), p = [c0, c..., log c_f,
    log c_b, log k]; the generalised mean in log space (flops = 0 allowed)."""
    n_other = len(other)
    k = math.exp(float(np.clip(p[-1], -3.0, 4.0)))
    log_f = p[1 + n_other] + np.log(np.maximum(x[:, i_f], 1e-9))
    log_b = p[2 + n_other] + np.log(np.maximum(x[:, i_b], 1e-9))
    mean = np.exp(np.logaddexp(k * log_f, k * log_b) / k)
    return p[0] + x[:, other] @ p[1:1 + n_other] + mean
