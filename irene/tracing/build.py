"""Turn a captured call tree into an :class:`irene.tree.Tree`, replaying each node to time it.

Feature conventions (also written to each tree's ``units`` metadata):

* ``flops``: MFLOP (10^6 FLOPs, see :mod:`irene.tracing.flops`) per model forward call; a leaf
  holds the FLOPs counted while it ran, an inner node the sum over its children, so the leaves
  add up to the root exactly;
* ``mem_bytes``: MiB (2^20 bytes) of the tensors each primitive call reads or writes as a whole
  — its inputs, outputs and parameters (each distinct tensor once per call); an inner node holds
  the sum over its leaves;
* under a schema with its own cost table (``irene2021``, :mod:`irene.tracing.schemas`) both are
  counted by that table, and an inner node holds its own direct calls plus its children's;
* ``num_parameters``: the node's own parameter count (``module.parameters()``, shared tensors
  once); the root holds the model total; a function leaf counts parameters passed to it;
* ``times_mean``: seconds per model forward call: the median per-call time of the node replayed
  alone on the inputs recorded at its first call (``irene.measure.measure_callable``), times the
  number of calls it makes in one forward pass; ``ground_truth_energy`` likewise in J (its
  10th/90th percentiles over runs in the node's ``energy_p10``/``energy_p90`` keys, like
  ``times_p10``/``times_p90``);
* ``cpu``/``mem``/``gpu``/``gpu_mem`` (%), ``gpu_clk``/``gpu_mem_clk`` (MHz) and
  ``gpu_energy_mean`` (J) from the measurement's sampler; 0.0 when not measured.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from irene.measure import Measurement, MeasurementCache, Meter, Protocol, measure_callable
from irene.measure.sampler import Sampler
from irene.schema import FEATURE_FIELDS, MFLOP, MIB
from irene.tracing.capture import Record
from irene.tree import Node, Tree, node_id


def prune(record: Record) -> bool:
    """Drop identity leaves and every module left without an ``ml`` leaf; True if kept.

    What a dropped module ran itself (``own_flops``/``own_mem_bytes``, schemas with a cost table)
    is charged to its parent, so every node keeps the totals of everything it ran.
    """
    if record.is_leaf:
        return not record.identity
    kept = []
    for child in record.children:
        if prune(child):
            kept.append(child)
        elif not child.is_leaf:
            flops, mem = totals(child)
            record.own_flops += flops
            record.own_mem_bytes += mem
    record.children = kept
    return bool(record.children)


def measure_records(records: Iterable[Record], *, meter: Meter | None, protocol: Protocol,
                    cache: MeasurementCache, sampler: Sampler | None = None,
                    sync: Callable[[], None] | None = None,
                    progress: Callable[[Iterable[Record]], Iterable[Record]] | None = None,
                    ) -> dict[int, Measurement]:
    """Replay every record alone and measure it; result keyed by ``id(record)``.

    Records with the same signature are measured once through ``cache`` (when enabled); a record
    whose inputs were not recorded must find its signature in the cache.
    """
    results: dict[int, Measurement] = {}
    items = list(records)
    for record in (progress(items) if progress is not None else items):
        replay = record.replay
        if replay is None and not (cache.enabled and record.signature is not None):
            raise RuntimeError(f"{record.scope}: no recorded inputs to replay")

        def measure(replay: Callable[[], Any] | None = replay, scope: str = record.scope,
                    ) -> Measurement:
            if replay is None:
                raise RuntimeError(f"{scope}: no recorded inputs to replay")
            with torch.no_grad():
                return measure_callable(replay, meter=meter, protocol=protocol, sync=sync,
                                        sampler=sampler)

        results[id(record)] = cache.get_or_measure(record.signature, measure)
    return results


def totals(record: Record) -> tuple[int, int]:
    """(FLOPs, bytes) of a record in exact integers: a leaf's own; an inner node's direct calls
    that are not leaves (0 under our schema) plus the totals of its children."""
    if record.is_leaf:
        return record.flops, record.mem_bytes
    flops, mem = record.own_flops, record.own_mem_bytes
    for child in record.children:
        f, m = totals(child)
        flops, mem = flops + f, mem + m
    return flops, mem


def _features(record: Record, measurement: Measurement | None) -> dict:
    flops, mem = totals(record)
    features = dict.fromkeys(FEATURE_FIELDS, 0.0)
    features.update(num_parameters=float(record.num_parameters), flops=flops / MFLOP,
                    mem_bytes=mem / MIB)
    if measurement is not None:
        features["times_mean"] = measurement.time_s * record.calls
        for name, value in measurement.features.items():
            if name in features:
                features[name] = float(value)
        features["gpu_energy_mean"] = measurement.features.get("gpu_energy_mean", 0.0) \
            * record.calls
    return features


def _extra(record: Record, measurement: Measurement | None) -> dict[str, Any]:
    extra: dict[str, Any] = {"input_shapes": record.input_shapes,
                             "output_shapes": record.output_shapes,
                             "dtype": record.dtype, "calls": record.calls,
                             "signature": record.signature}
    if record.op is not None:
        extra["op"] = record.op
    if measurement is not None:
        extra["times_p10"] = measurement.time_p10 * record.calls
        extra["times_p90"] = measurement.time_p90 * record.calls
        extra["repeats"] = measurement.repeats
        if measurement.energy_j is not None:
            extra["energy_trusted"] = measurement.trusted
            if measurement.energy_p10 is not None and measurement.energy_p90 is not None:
                extra["energy_p10"] = measurement.energy_p10 * record.calls
                extra["energy_p90"] = measurement.energy_p90 * record.calls
    return extra


def to_node(record: Record, *, model_name: str, batch_size: int, seq_len: int, level: int = 0,
            measurements: dict[int, Measurement] | None = None,
            seen: dict[str, int] | None = None) -> Node:
    """The :class:`Node` of a pruned record and its descendants.

    ``seen`` counts the scopes given so far: a scope repeated in one tree (IrEne's two
    ``matmul`` calls of one module) gets the id of ``scope#k`` for its k-th repeat.
    """
    seen = {} if seen is None else seen
    repeat = seen.get(record.scope, 0)
    seen[record.scope] = repeat + 1
    id_scope = record.scope if repeat == 0 else f"{record.scope}#{repeat}"
    children = [to_node(c, model_name=model_name, batch_size=batch_size, seq_len=seq_len,
                        level=level + 1, measurements=measurements, seen=seen)
                for c in record.children]
    measurement = (measurements or {}).get(id(record))
    energy = None
    if measurement is not None and measurement.energy_j is not None:
        energy = measurement.energy_j * record.calls
    return Node(
        id=node_id(model_name, batch_size, seq_len, id_scope),
        scope=record.scope,
        parent_name=record.parent.scope if record.parent is not None else "",
        level=level,
        instance_type=record.instance_type,
        type="model" if record.kind == "model" else ("ml" if record.is_leaf else "module"),
        features=_features(record, measurement),
        ground_truth_energy=energy,
        children=children,
        extra=_extra(record, measurement),
    )


def build_tree(root: Record, *, model_name: str, batch_size: int, seq_len: int,
               measurements: dict[int, Measurement] | None = None,
               meta: dict[str, Any] | None = None) -> Tree:
    """The tree of a pruned root record (see the module docstring for the features)."""
    node = to_node(root, model_name=model_name, batch_size=batch_size, seq_len=seq_len,
                   measurements=measurements)
    return Tree(model_name=model_name, batch_size=batch_size, seq_len=seq_len, root=node,
                meta=dict(meta or {}))
