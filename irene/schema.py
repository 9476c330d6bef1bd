"""The feature schema: the one declaration of node types, node features and tree-level features.

Everything that needs a list of features derives it from here: the tree reader and writer
(:mod:`irene.tree`), the feature sets and flattening (:mod:`irene.features`), the tracer's
metadata, the sampler and protocol, the estimate's rule about what a host can supply, and the
regressor. Each feature says its unit, where its value comes from (:data:`SOURCES`) and whether
a module's value is (about) the sum of its children's.

A *schema* (name + version) is a set of definitions for those features and for which operations
are leaves: ``irene`` is this package's own tracer; ``irene2021`` is the leaf set and feature
definitions of IrEne's published trees (Cao et al., ACL 2021). Trees record the schema they were
made with (root key ``schema``); a predictor records the schema it was trained on and refuses
trees of another one. Trees without the key are read as ``irene2021`` (IrEne's own files)
unless they say they were created by irene (then ``irene`` version 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

#: node types, root first: the whole model, its modules, the ML primitives (always leaves)
NODE_TYPES: tuple[str, ...] = ("model", "module", "ml")
#: the order reports list node types in (leaves first)
REPORT_ORDER: tuple[str, ...] = NODE_TYPES[::-1]
#: integer codes of the node types used in flattened arrays
NODE_TYPE_CODES: dict[str, int] = {"ml": 0, "module": 1, "model": 2}

#: bytes in one MiB (the unit of ``mem_bytes``) and FLOPs in one MFLOP (the unit of ``flops``)
MIB = float(2**20)
MFLOP = 1e6

Source = Literal["structure", "tree", "replay", "host-sampler", "gpu-sampler"]
#: where a feature's value comes from, and what is needed to have it
SOURCES: dict[str, str] = {
    "structure": "counted from the model's structure and shapes (always available, no compute)",
    "tree": "the tree's own settings (batch size, sequence length, phase, context length), "
            "broadcast to every node",
    "replay": "timing each node replayed alone (needs timing: not with --no-timing)",
    "host-sampler": "psutil sampled while the node is replayed (needs timing)",
    "gpu-sampler": "NVML sampled while the node is replayed (needs timing on a CUDA device "
                   "with NVML)",
}


@dataclass(frozen=True)
class Feature:
    """One feature: ``name``, ``unit``, ``source`` (a key of :data:`SOURCES`), ``additive``
    (a module's value is about the sum of its children's) and a one-line ``description``."""

    name: str
    unit: str
    source: Source
    additive: bool
    description: str


#: IrEne's node columns, in file order (every node carries all of them; 0.0 = not measured)
NODE_FEATURES: tuple[Feature, ...] = (
    Feature("num_parameters", "count", "structure", True,
            "parameters of the node (the root: the whole model)"),
    Feature("flops", "MFLOP", "structure", True,
            "floating-point operations per model call, 1 multiply-add = 2 FLOPs"),
    Feature("mem_bytes", "MiB", "structure", True,
            "bytes read and written per model call (per schema definition)"),
    Feature("cpu", "%", "host-sampler", False, "system CPU utilisation during the replay"),
    Feature("mem", "%", "host-sampler", False, "RAM in use during the replay"),
    Feature("gpu", "%", "gpu-sampler", False, "GPU busy during the replay"),
    Feature("gpu_mem", "%", "gpu-sampler", False, "GPU memory controller busy"),
    Feature("gpu_clk", "MHz", "gpu-sampler", False, "GPU SM clock"),
    Feature("gpu_mem_clk", "MHz", "gpu-sampler", False, "GPU memory clock"),
    Feature("times_mean", "s", "replay", True,
            "seconds per model call: median per-call time of the replays x calls per forward"),
    Feature("gpu_energy_mean", "J", "gpu-sampler", True,
            "GPU board energy per model call: NVML power x time (not a meter's ground truth)"),
)
#: the workloads a tree can be (root key ``phase``) and their codes as the feature ``phase``
PHASE_CODES: dict[str, int] = {"forward": 0, "prefill": 1, "decode": 2, "train": 3}
#: the optimisers a training-step tree can use (irene.tracing.train_step), the default first
OPTIMIZER_NAMES: tuple[str, ...] = ("adamw", "sgd")
#: the dtypes and attention implementations a model is traced with (irene.tracing.registry)
DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16")
ATTN_IMPLEMENTATIONS: tuple[str, ...] = ("eager", "sdpa")
#: values that belong to the whole tree, broadcast to every node as features
TREE_FEATURES: tuple[Feature, ...] = (
    Feature("batch_size", "sequences", "tree", False, "sequences per call"),
    Feature("seq_len", "tokens", "tree", False,
            "tokens per sequence fed in this call (1 for a decode step)"),
    Feature("input_size", "tokens", "tree", False, "tokens per call = batch_size x seq_len"),
    Feature("phase", "code", "tree", False,
            "the workload, a category code (PHASE_CODES): 0 forward pass, 1 prefill, "
            "2 decode step, 3 training step"),
    Feature("context_len", "tokens", "tree", False,
            "tokens already in the KV cache per sequence, which each new token attends to "
            "(a decode step; 0 for a forward pass or a prefill from scratch)"),
)
#: every feature by name
FEATURES: dict[str, Feature] = {f.name: f for f in (*NODE_FEATURES, *TREE_FEATURES)}

#: the node feature names, in file order
FEATURE_FIELDS: tuple[str, ...] = tuple(f.name for f in NODE_FEATURES)
#: tree-level feature names
TREE_FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in TREE_FEATURES)
#: features whose module value is about the sum of its parts: their excess over the children's
#: sum measures the work a module does beyond its children
ADDITIVE_FEATURES: tuple[str, ...] = tuple(f.name for f in NODE_FEATURES if f.additive)
#: IrEne's feature sets
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "model_specs": ("batch_size", "seq_len", "flops", "mem_bytes"),
    "resource_utilization": tuple(f.name for f in NODE_FEATURES
                                  if f.source in ("replay", "host-sampler", "gpu-sampler")),
    # ours: which workload the tree is (structure-only; add it to predict prefill and decode)
    "generation": ("phase", "context_len"),
}
#: added to every feature set, as in IrEne
ALWAYS_FEATURES: tuple[str, ...] = ("num_parameters", "input_size")
#: per-node energies (J per model call): the target and a predictor's output
ENERGY_FIELDS: tuple[str, ...] = ("ground_truth_energy", "predicted_energy")

_NOT_TIMED = "0: not measured (--no-timing)"


def feature_names(feature_sets: Iterable[str]) -> list[str]:
    """The ordered feature names of a list of IrEne feature-set names (plus the ones always
    added); raises ValueError for an unknown set."""
    feature_sets = list(feature_sets)
    unknown = [s for s in feature_sets if s not in FEATURE_SETS]
    if unknown:
        raise ValueError(f"unknown feature set(s) {unknown}; known: {sorted(FEATURE_SETS)}")
    names = [f for s in feature_sets for f in FEATURE_SETS[s]] + list(ALWAYS_FEATURES)
    return list(dict.fromkeys(names))


def supplied_features(*, timing: bool, gpu_sampled: bool) -> tuple[list[str], dict[str, str]]:
    """What a trace can supply: (available feature names, {unavailable name: why}).

    ``timing``: the nodes are replayed (times and host utilisation measured); ``gpu_sampled``:
    NVML was sampled on a CUDA device during the replays. This is the one rule the tracer's
    metadata and ``irene estimate`` both use.
    """
    available: list[str] = []
    unavailable: dict[str, str] = {}
    for feature in NODE_FEATURES:
        if feature.source == "structure":
            available.append(feature.name)
        elif not timing:
            unavailable[feature.name] = _NOT_TIMED
        elif feature.source == "gpu-sampler" and not gpu_sampled:
            unavailable[feature.name] = "0: no GPU sampled (needs a CUDA device with NVML)"
        else:
            available.append(feature.name)
    return available, unavailable


def units() -> dict[str, str]:
    """``{feature or energy name: unit}`` for a tree's ``units`` metadata."""
    out = {f.name: f.unit for f in NODE_FEATURES}
    out.update({name: "J per model call" for name in ENERGY_FIELDS})
    return out


# --------------------------------------------------------------------------------------------
# schemas (sets of definitions)


@dataclass(frozen=True)
class Schema:
    """A named, versioned set of feature definitions and leaf rules."""

    name: str
    version: int
    description: str

    def to_dict(self) -> dict[str, Any]:
        """The root metadata value ``{"name": ..., "version": ...}``."""
        return {"name": self.name, "version": self.version}

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


SCHEMAS: dict[str, Schema] = {
    "irene": Schema(
        "irene", 1,
        "this package's tracer: every module without submodules and every torch function a "
        "module calls directly that does floating-point work is a leaf (Linear, LayerNorm, "
        "MatMul, Softmax, Add, Mul, GELU, ...); mem_bytes = distinct inputs + outputs + "
        "parameters of each call; prefill and decode trees add a KVCacheUpdate leaf per "
        "Cache.update call (0 FLOPs; reads the cached and new keys/values, writes the grown "
        "cache)"),
    "irene2021": Schema(
        "irene2021", 1,
        "IrEne's published trees (ACL 2021): leaves are the modules and functional matmul / "
        "softmax IrEne traced; element-wise ops and activations stay inside their module; "
        "mem_bytes per operation as IrEne counted it"),
}
DEFAULT_SCHEMA = "irene"


def get_schema(name: str) -> Schema:
    """The schema called ``name``; ValueError listing the known ones."""
    try:
        return SCHEMAS[name]
    except KeyError:
        raise ValueError(f"unknown schema {name!r}; known: {', '.join(SCHEMAS)}") from None


def schema_of_meta(meta: Mapping[str, Any]) -> Schema:
    """The schema a tree was made with, from its root metadata (see the module docstring).

    Raises ValueError when the recorded schema is unknown or its version is not the one this
    package implements.
    """
    recorded = meta.get("schema")
    if recorded is None:
        made_by_us = str(meta.get("created_by", "")).startswith("irene ")
        return SCHEMAS["irene" if made_by_us else "irene2021"]
    if isinstance(recorded, str):
        recorded = {"name": recorded, "version": 1}
    if not isinstance(recorded, Mapping):
        raise ValueError(f"schema must be an object {{name, version}}, got {recorded!r}")
    schema = get_schema(str(recorded.get("name")))
    if recorded.get("version") != schema.version:
        raise ValueError(f"schema {schema.name} version {recorded.get('version')!r} is not the "
                         f"one this irene implements (version {schema.version})")
    return schema
