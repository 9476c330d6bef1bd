"""The campaign summary: how good the measurements are and what they cost.

From the trees of a campaign's output (and the run log kept with its measurement cache):

* **run-to-run spread** of every measured node: ``(p90 - p10) / median`` over the protocol's
  runs, of energy where the trees have it and of time, summarised (median, 90th percentile,
  share of nodes above 10 %) per node type and per level;
* **Σ children / parent** per level: for every inner node, the sum of its children's value over
  its own (energy, and time); 1.0 means the parts add up to the whole -- replaying nodes alone
  adds launch and cache effects, so this is the measurement's consistency check;
* untrusted energy windows, trees per model, and the minutes spent per run and in total.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from irene.measure.protocol import quantile
from irene.tree import Node, Tree

SUMMARY_FORMAT = "irene-campaign-summary"
#: a relative spread above this is called wide (the tracer warns above the same value)
WIDE = 0.10


def node_spread(node: Node, what: str) -> float | None:
    if what == "energy":
        median = node.ground_truth_energy
        lo, hi = node.extra.get("energy_p10"), node.extra.get("energy_p90")
    else:
        median = node.features.get("times_mean")
        lo, hi = node.extra.get("times_p10"), node.extra.get("times_p90")
    if not median or lo is None or hi is None or median <= 0:
        return None
    return (float(hi) - float(lo)) / float(median)


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"n": len(values), "median": statistics.median(values),
            "p10": quantile(values, 0.1), "p90": quantile(values, 0.9),
            "wide_share": sum(v > WIDE for v in values) / len(values)}


def _value(node: Node, what: str) -> float | None:
    value = node.ground_truth_energy if what == "energy" else node.features.get("times_mean")
    return float(value) if value else None


def spread_summary(trees: Iterable[Tree], what: str) -> dict[str, Any]:
    """Spread statistics of ``what`` ("energy" or "time") per node type and per level."""
    by_type: dict[str, list[float]] = defaultdict(list)
    by_level: dict[int, list[float]] = defaultdict(list)
    every: list[float] = []
    for tree in trees:
        for node in tree.nodes():
            spread = node_spread(node, what)
            if spread is None:
                continue
            by_type[node.type].append(spread)
            by_level[node.level].append(spread)
            every.append(spread)
    return {"all": _stats(every),
            "by_type": {k: _stats(v) for k, v in sorted(by_type.items())},
            "by_level": {str(k): _stats(v) for k, v in sorted(by_level.items())}}


def children_ratio(trees: Iterable[Tree], what: str) -> dict[str, Any]:
    """Σ children / parent of ``what`` for every inner node, per level of the parent."""
    by_level: dict[int, list[float]] = defaultdict(list)
    for tree in trees:
        for node in tree.nodes():
            if not node.children:
                continue
            parent = _value(node, what)
            kids = [_value(c, what) for c in node.children]
            if parent is None or any(k is None for k in kids):
                continue
            by_level[node.level].append(sum(kids) / parent)  # type: ignore[arg-type]
    return {str(k): _stats(v) for k, v in sorted(by_level.items())}


def summarise(trees: list[Tree], sessions: list[dict[str, Any]] | None = None,
              *, measurements: int | None = None) -> dict[str, Any]:
    """The summary of a campaign's trees (see the module docstring), as plain JSON values."""
    sessions = list(sessions or [])
    models: dict[str, int] = defaultdict(int)
    untrusted = measured = 0
    for tree in trees:
        models[tree.model_name] += 1
        for node in tree.nodes():
            if node.ground_truth_energy is not None:
                measured += 1
                untrusted += node.extra.get("energy_trusted") is False
    has_energy = measured > 0
    seconds = sum(float(s.get("seconds", 0.0)) for s in sessions)
    return {
        "format": SUMMARY_FORMAT,
        "trees": len(trees),
        "trees_per_model": dict(models),
        "nodes": sum(1 for t in trees for _ in t.nodes()),
        "nodes_with_energy": measured,
        "untrusted_energy_nodes": untrusted,
        "meters": sorted({str(t.meta.get("meter")) for t in trees}),
        "hardware": sorted({str(t.meta.get("device_name")) for t in trees}),
        "measurements_in_cache": measurements,
        "spread": {"energy": spread_summary(trees, "energy") if has_energy else None,
                   "time": spread_summary(trees, "time")},
        "children_over_parent": {"energy": children_ratio(trees, "energy") if has_energy
                                 else None, "time": children_ratio(trees, "time")},
        "minutes": {"total": seconds / 60.0,
                    "per_run": [{"started": s.get("started"), "host": s.get("host"),
                                 "minutes": float(s.get("seconds", 0.0)) / 60.0,
                                 "trees": s.get("trees"), "measured": s.get("measured"),
                                 "reused": s.get("reused")} for s in sessions]},
    }


def _fmt(stats: dict[str, float] | None, percent: bool = True) -> str:
    if not stats:
        return "-"
    if percent:
        return (f"median {100 * stats['median']:.1f} %, p90 {100 * stats['p90']:.1f} %, "
                f"{100 * stats['wide_share']:.0f} % above {100 * WIDE:.0f} % (n={stats['n']})")
    return (f"median {stats['median']:.3f}, p10 {stats['p10']:.3f}, p90 {stats['p90']:.3f} "
            f"(n={stats['n']})")


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as text (one fact per line)."""
    lines = [f"trees: {summary['trees']} ({', '.join(f'{m} {n}' for m, n in summary['trees_per_model'].items())})",  # noqa: E501
             f"hardware: {', '.join(summary['hardware'])}; meter: {', '.join(summary['meters'])}",
             f"nodes: {summary['nodes']}, with energy: {summary['nodes_with_energy']} "
             f"({summary['untrusted_energy_nodes']} from windows too short to trust)"]
    if summary.get("measurements_in_cache") is not None:
        lines.append(f"distinct node measurements: {summary['measurements_in_cache']}")
    for what in ("energy", "time"):
        spread = summary["spread"][what]
        if not spread or not spread["all"]:
            continue
        lines.append(f"run-to-run spread of {what} (p90-p10)/median: {_fmt(spread['all'])}")
        for kind, stats in spread["by_type"].items():
            lines.append(f"  {kind:<7} {_fmt(stats)}")
    for what in ("energy", "time"):
        ratio = summary["children_over_parent"][what]
        if not ratio:
            continue
        lines.append(f"Σ children / parent ({what}), by level of the parent:")
        for level, stats in ratio.items():
            lines.append(f"  level {level}: {_fmt(stats, percent=False)}")
    minutes = summary["minutes"]
    runs = minutes["per_run"]
    lines.append(f"minutes spent: {minutes['total']:.1f} over {len(runs)} run(s)")
    return "\n".join(lines)
