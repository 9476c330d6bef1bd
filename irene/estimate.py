"""Estimating a model's energy without a meter: trace it, predict every node.

::

    from irene.estimate import estimate_tree
    tree = estimate_tree("gpt2", 8, 128, "runs/model")     # predicted_energy (J) on every node

The predictor decides what is traced: the schema it was trained on, and whether the nodes must
be timed (a predictor that reads latency or utilisation). What a trace on this host can supply
is decided once, by :func:`irene.schema.supplied_features`; a predictor that reads anything else
is refused instead of being fed zeros.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from irene.checks import InputError
from irene.schema import FEATURE_FIELDS, FEATURES, supplied_features
from irene.tree import Tree

if TYPE_CHECKING:
    from irene.model import TreePredictor


class EstimateError(InputError):
    """An estimate that cannot be made honestly here; the message says why and what to do."""


def load_predictor(directory: str | Path) -> TreePredictor:
    """Load a predictor directory (EstimateError when there is none, ModelFormatError when it is
    damaged)."""
    from irene.model import load_predictor as load

    if not Path(directory).is_dir():
        raise EstimateError(f"predictor directory {str(directory)!r} does not exist (train one "
                            "with `irene train TREES.jsonl DIR`)")
    return load(str(directory))


def needs_timing(required: list[str]) -> bool:
    """Whether a predictor reading ``required`` needs the nodes replayed (measured features)."""
    return any(FEATURES[name].source in ("replay", "host-sampler", "gpu-sampler")
               for name in required if name in FEATURES)


def unsupplied_features(required: list[str], device: str) -> dict[str, str]:
    """The features among ``required`` that a trace on ``device`` cannot supply, with why.

    Structure and tree-level features are always known; replay timings and host utilisation
    come from timing the nodes here; GPU utilisation, clocks and GPU energy need a CUDA device
    with NVML.
    """
    _, unavailable = supplied_features(timing=True, gpu_sampled=device.startswith("cuda"))
    return {name: f"{why.removeprefix('0: ')} (this trace is on {device!r})"
            for name, why in unavailable.items() if name in required}


def zero_features(tree: Tree, required: list[str]) -> list[str]:
    """Node features the predictor reads that are 0 on every node of ``tree`` (not supplied)."""
    node_fields = [n for n in required if n in FEATURE_FIELDS]
    nodes = list(tree.nodes())
    return [n for n in node_fields if all(node.features[n] == 0 for node in nodes)]


def estimate_tree(model: str | Any, batch_size: int, seq_len: int,
                  predictor: str | Path | TreePredictor, *, device: str = "cpu",
                  dtype: str = "float32", attn: str = "eager", progress: bool = True,
                  warn: Callable[[str], None] = print, hub: bool = True,
                  phase: str = "forward", context_len: int = 0,
                  optimizer: str | None = None) -> Tree:
    """Trace ``model`` (a name, or a built ``transformers`` model) at (``batch_size``,
    ``seq_len``) and predict every node with ``predictor`` (a model directory or a fitted
    :class:`~irene.model.TreePredictor`). ``phase``/``context_len``/``optimizer``: the traced
    call, a :class:`~irene.workload.Workload` traced by :func:`irene.tracing.trace` (a forward
    pass, a prefill, a decode step, or a training step: energies are then J per step).

    Returns the predicted tree (J per call on every node). Raises EstimateError when the
    predictor reads features this host cannot supply. Timing is switched on only when the
    predictor reads measured features; ``warn`` receives a note that those come from this
    machine, and one line per predictor warning (e.g. primitive types unseen in training).
    """
    from irene.tracing import trace
    from irene.workload import Workload

    if isinstance(predictor, (str, Path)):
        predictor = load_predictor(predictor)
    required = predictor.required_features()
    missing = unsupplied_features(required, device)
    if missing:
        listing = "; ".join(f"{k}: {v}" for k, v in missing.items())
        raise EstimateError(
            f"the predictor reads feature(s) this machine cannot supply ({listing}); predicting "
            "with them set to 0 would be meaningless. Use a predictor trained on model_specs "
            "features only (`irene train TREES --set 'feature_sets=[\"model_specs\"]'`), or "
            "trace and measure on the hardware the predictor was trained for")
    timing = needs_timing(required)
    if timing:
        measured = sorted(n for n in required if n in FEATURES and
                          FEATURES[n].source not in ("structure", "tree"))
        warn(f"note: the predictor reads {measured}, measured here by timing every node; the "
             "estimate is only meaningful if the predictor was trained on this kind of machine.")
    tree = trace(model, Workload(phase=phase, batch_size=batch_size, seq_len=seq_len,
                                 context_len=context_len, optimizer=optimizer, dtype=dtype,
                                 attn=attn, device=device),
                 timing=timing, progress=progress, hub=hub, schema=predictor.schema.name)
    unavailable = sorted(set(required) & set(tree.meta.get("features_unavailable", [])))
    zeros = zero_features(tree, required)
    if unavailable or zeros:
        raise EstimateError(
            f"the trace of {tree.model_name} has no value for feature(s) "
            f"{sorted(set(unavailable + zeros))} that the predictor reads; refusing to predict "
            "from zeros")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predicted = predictor.predict([tree])[0]
    for item in caught:
        warn(f"warning: {item.message}")
    return predicted
