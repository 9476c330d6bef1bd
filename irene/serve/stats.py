"""The statistical verdict of ``irene serve-bench``: which runtime costs less per request.

Samples are per-request values (e.g. joules per request) of each runtime, pooled over repeats.
A Kruskal-Wallis H test asks whether any runtime differs; pairwise two-sided Mann-Whitney U
tests say which pairs do, with Cliff's delta as the effect size and Holm's step-down correction
of the pairwise p-values for the number of pairs (scipy.stats for the tests).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any


def cliffs_delta(x: Sequence[float], y: Sequence[float]) -> float:
    """Cliff's delta = (#{x_i > y_j} - #{x_i < y_j}) / (|x| |y|), in [-1, 1]; positive when
    ``x`` tends to be larger. ValueError for an empty sample."""
    if not x or not y:
        raise ValueError("Cliff's delta needs two non-empty samples")
    greater = sum(1 for a in x for b in y if a > b)
    less = sum(1 for a in x for b in y if a < b)
    return (greater - less) / (len(x) * len(y))


def cliffs_magnitude(delta: float) -> str:
    """Romano et al.'s thresholds: negligible < 0.147 <= small < 0.33 <= medium < 0.474 <= large."""
    size = abs(delta)
    if size < 0.147:
        return "negligible"
    if size < 0.33:
        return "small"
    if size < 0.474:
        return "medium"
    return "large"


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given), each capped at 1."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def compare_groups(groups: Mapping[str, Sequence[float | None]], *,
                   alpha: float = 0.05) -> dict[str, Any]:
    """Kruskal-Wallis across ``groups`` (name -> per-request values) and pairwise Mann-Whitney U
    with Cliff's delta (positive: the first runtime's values are larger), Holm-corrected.
    Groups with fewer than 2 values are left out (named in ``"left_out"``)."""
    from scipy import stats

    clean = {name: _finite(values) for name, values in groups.items()}
    used = {name: v for name, v in clean.items() if len(v) >= 2}
    result: dict[str, Any] = {"alpha": alpha, "groups": {k: len(v) for k, v in used.items()},
                              "left_out": sorted(set(clean) - set(used)),
                              "kruskal": None, "pairs": []}
    if len(used) < 2:
        return result
    values = list(used.values())
    if all(len(set(v)) == 1 for v in values) and len({v[0] for v in values}) == 1:
        result["kruskal"] = {"h": 0.0, "p": 1.0, "note": "all values identical"}
    else:
        h, p = stats.kruskal(*values)
        result["kruskal"] = {"h": float(h), "p": float(p)}
    pairs = list(itertools.combinations(used, 2))
    raw = []
    for a, b in pairs:
        if len(set(used[a]) | set(used[b])) == 1:
            raw.append((float("nan"), 1.0))
        else:
            u, p = stats.mannwhitneyu(used[a], used[b], alternative="two-sided")
            raw.append((float(u), float(p)))
    adjusted = holm([p for _, p in raw])
    for (a, b), (u, p), p_holm in zip(pairs, raw, adjusted, strict=True):
        delta = cliffs_delta(used[a], used[b])
        result["pairs"].append({"a": a, "b": b, "u": u, "p": p, "p_holm": p_holm,
                                "cliffs_delta": delta, "magnitude": cliffs_magnitude(delta),
                                "significant": p_holm < alpha})
    return result
