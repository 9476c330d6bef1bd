"""Figures with matplotlib (Agg, no display needed): PNG or SVG, chosen by the file suffix.

Every ``plot_*`` function takes trees (or a comparison), writes one file atomically and returns its
path. Figures are drawn on :class:`matplotlib.figure.Figure` objects directly, so no global pyplot
state or interactive backend is touched. Energies are joules per inference call, on log axes
labelled with readable units (µJ, mJ, J). A figure drawn from trees that are not real
measurements (see :func:`irene.report.synthetic_label`) carries a red "SYNTHETIC DATA" line at
its top, and calls their ground truth "synthetic 'measured'".
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from irene.evaluation import REPORT_ORDER, PairedNodes, merge_predictions, pair_within
from irene.report import NODE_TYPE_COLOURS, measured_word, synthetic_label
from irene.report.breakdown import energy_source, primitive_type_shares
from irene.report.compare import Comparison
from irene.report.figures import (
    COLOUR_CYCLE,
    FORMATS,
    energy_axis,
    require_data,
    save_figure,
)
from irene.report.format import format_energy
from irene.schema import NODE_TYPES
from irene.tree import Tree

# --------------------------------------------------------------------------------------------
# accuracy figures (need trees with both energies)


def _paired(trees: Sequence[Tree]) -> PairedNodes:
    paired = pair_within(trees)
    require_data(len(paired) > 0, "no node has both predicted_energy and ground_truth_energy")
    return paired


def plot_predicted_vs_measured(trees: Sequence[Tree], path: str | os.PathLike, *,
                               paired: PairedNodes | None = None) -> Path:
    """Log-log scatter of predicted against measured energy for every node, coloured by node
    type, with the y = x line and ±20 % bands. Needs nodes with both energies (``paired``:
    ``pair_within(trees)`` when the caller has it already)."""
    paired = _paired(trees) if paired is None else paired
    figure = Figure(figsize=(6.4, 5.6), layout="constrained")
    axis = figure.add_subplot()
    measured_values, predicted_values = paired.gold, paired.predicted
    # the axes span the measured energies and the predictions near them (a factor of 10 beyond);
    # predictions further off are drawn at the edge as triangles
    bound_low, bound_high = measured_values.min() / 10, measured_values.max() * 10
    inside = predicted_values[(predicted_values >= bound_low) & (predicted_values <= bound_high)]
    low = min(measured_values.min(), inside.min(initial=np.inf)) / 1.5
    high = max(measured_values.max(), inside.max(initial=-np.inf)) * 1.5
    line = [low, high]
    axis.plot(line, line, color="#555", linestyle="--", linewidth=1, label="y = x")
    axis.fill_between(line, [v * 0.8 for v in line], [v * 1.2 for v in line], color="#999",
                      alpha=0.12, linewidth=0, label="±20 %")
    for kind in REPORT_ORDER:
        mine = paired.node_type == kind
        m, p = measured_values[mine], predicted_values[mine]
        shown = (p >= low) & (p <= high)
        if shown.any():
            axis.scatter(m[shown], p[shown], s=26 if kind == "model" else 12, alpha=0.7,
                         color=NODE_TYPE_COLOURS[kind], label=f"{kind} ({mine.sum()})",
                         edgecolors="none")
        for xs, y, marker in ((m[p < low], low * 1.15, "v"), (m[p > high], high / 1.15, "^")):
            if xs.size:
                axis.scatter(xs, [y] * xs.size, marker=marker, s=30, alpha=0.9,
                             color=NODE_TYPE_COLOURS[kind], edgecolors="black", linewidths=0.4,
                             label=f"{kind}: {xs.size} {'below' if marker == 'v' else 'above'}"
                                   " the scale")
    axis.set_xlim(low, high)
    axis.set_ylim(low, high)
    energy_axis(axis, "x")
    energy_axis(axis, "y")
    measured = measured_word(trees)
    axis.set_xlabel(f"{measured} energy per call")
    axis.set_ylabel("predicted energy per call")
    axis.set_title(f"Predicted vs {measured} energy, every node")
    axis.grid(True, which="major", alpha=0.3)
    axis.legend(loc="upper left", frameon=False)
    return save_figure(figure, path, trees)


def _signed_errors(paired: PairedNodes, keys: np.ndarray) -> dict[str, np.ndarray]:
    """Signed percent errors grouped by ``keys`` (one key per row; None rows left out)."""
    errors = paired.error
    return {str(k): errors[keys == k] for k in dict.fromkeys(keys.tolist()) if k is not None}


def plot_error_distribution(trees: Sequence[Tree], path: str | os.PathLike,
                            max_types: int = 12, *, paired: PairedNodes | None = None) -> Path:
    """Box plots of the signed percent error: per node type (left) and per primitive type
    (right, the ``max_types`` most frequent). Needs nodes with both energies (``paired``:
    ``pair_within(trees)`` when the caller has it already)."""
    paired = _paired(trees) if paired is None else paired
    by_kind = _signed_errors(paired, paired.node_type)
    leaf_types = np.where(paired.node_type == "ml", paired.instance_type, None)
    by_type = _signed_errors(paired, leaf_types)
    frequent = sorted(by_type, key=lambda k: -len(by_type[k]))[:max_types]
    figure = Figure(figsize=(11, 4.6), layout="constrained")
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2.2]})
    kinds = [k for k in NODE_TYPES if k in by_kind]
    _boxes(left, [by_kind[k] for k in kinds], kinds, [NODE_TYPE_COLOURS[k] for k in kinds])
    left.set_title("per node type")
    _boxes(right, [by_type[k] for k in frequent], frequent,
           [NODE_TYPE_COLOURS["ml"]] * len(frequent))
    right.set_title("per primitive type")
    right.tick_params(axis="x", labelrotation=30)
    for label in right.get_xticklabels():
        label.set_horizontalalignment("right")
    truth = "synthetic" if synthetic_label(trees) else "measured"
    left.set_ylabel(f"error: (predicted − {truth}) / {truth}  [%]")
    figure.suptitle("Distribution of the prediction error")
    return save_figure(figure, path, trees)


def _boxes(axis, data: list[list[float]], labels: list[str], colours: list[str]) -> None:
    ticks = [f"{k}\n(n={len(v)})" for k, v in zip(labels, data, strict=True)]
    parts = axis.boxplot(data, patch_artist=True, showfliers=True, widths=0.6,
                         flierprops={"markersize": 3, "alpha": 0.5})
    axis.set_xticks(range(1, len(ticks) + 1), ticks)  # works on every matplotlib >= 3.7
    for patch, colour in zip(parts["boxes"], colours, strict=True):
        patch.set_facecolor(colour)
        patch.set_alpha(0.55)
    for median in parts["medians"]:
        median.set_color("#1d2330")
    axis.axhline(0, color="#555", linewidth=0.8, linestyle="--")
    axis.grid(True, axis="y", alpha=0.3)


# --------------------------------------------------------------------------------------------
# energy against sequence length


def plot_energy_vs_seq_len(trees: Sequence[Tree], path: str | os.PathLike) -> Path:
    """Model-level energy against sequence length: one panel per batch size, one colour per
    model; measured energy as solid lines with dots, predicted as dashed lines with crosses."""
    require_data(bool(trees), "no trees to plot")
    batch_sizes = sorted({t.batch_size for t in trees})
    models = list(dict.fromkeys(t.model_name for t in trees))
    columns = min(3, len(batch_sizes))
    rows = math.ceil(len(batch_sizes) / columns)
    figure = Figure(figsize=(5.2 * columns, 4.0 * rows + 0.6), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    measured = measured_word(trees)
    drawn: set[str] = set()
    for index, batch_size in enumerate(batch_sizes):
        axis = axes[index // columns][index % columns]
        for m, model in enumerate(models):
            colour = COLOUR_CYCLE[m % len(COLOUR_CYCLE)]
            mine = sorted((t for t in trees if t.model_name == model
                           and t.batch_size == batch_size), key=lambda t: t.seq_len)
            for field, style, marker, suffix in (
                    ("ground_truth_energy", "-", "o", measured),
                    ("predicted_energy", "--", "x", "predicted")):
                points = [(t.seq_len, getattr(t.root, field)) for t in mine
                          if getattr(t.root, field) is not None]
                if points:
                    axis.plot([s for s, _ in points], [e for _, e in points], linestyle=style,
                              marker=marker, color=colour, label=f"{model} · {suffix}",
                              markersize=5)
                    drawn.add(field)
        axis.set_xscale("log", base=2)
        axis.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        energy_axis(axis, "y")
        axis.set_title(f"batch size {batch_size}")
        axis.set_xlabel("sequence length (tokens)")
        axis.set_ylabel("energy per call")
        axis.grid(True, which="major", alpha=0.3)
    require_data(bool(drawn), "no tree carries a model-level energy")
    for index in range(len(batch_sizes), rows * columns):
        axes[index // columns][index % columns].set_visible(False)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for row in axes:
        for axis in row[1:]:
            for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
                if label not in labels:
                    handles.append(handle)
                    labels.append(label)
    figure.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)),
                  frameon=False)
    lines = [text for name, text in (("ground_truth_energy", f"solid: {measured}"),
                                     ("predicted_energy", "dashed: predicted")) if name in drawn]
    figure.suptitle(f"Energy vs sequence length ({', '.join(lines)})")
    return save_figure(figure, path, trees)


# --------------------------------------------------------------------------------------------
# where the energy goes


def plot_primitive_breakdown(trees: Sequence[Tree], path: str | os.PathLike, *,
                             source: str = "auto", max_types: int = 8,
                             max_bars: int = 30) -> Path:
    """Share of energy per primitive type: one horizontal stacked bar per tree (per model,
    averaged over its trees, when there are more than ``max_bars`` trees); the ``max_types``
    largest types get a colour, the rest is "other"."""
    require_data(bool(trees), "no trees to plot")
    if len(trees) == 1:
        return _plot_type_shares(trees[0], path, source)
    bars: dict[str, dict[str, float]] = {}
    counts: dict[str, int] = {}
    by_model = len(trees) > max_bars
    for tree in trees:
        label = tree.model_name if by_model else tree.label
        shares = primitive_type_shares(tree, energy_source(tree, source))
        row = bars.setdefault(label, {})
        counts[label] = counts.get(label, 0) + 1
        for share in shares:
            row[share.instance_type] = row.get(share.instance_type, 0.0) + share.share
    for label, row in bars.items():
        for key in row:
            row[key] /= counts[label]
    overall: dict[str, float] = {}
    for row in bars.values():
        for key, value in row.items():
            overall[key] = overall.get(key, 0.0) + value
    kept = sorted(overall, key=lambda k: -overall[k])[:max_types]
    labels = list(bars)
    figure = Figure(figsize=(9.5, 1.2 + 0.42 * len(labels)), layout="constrained")
    axis = figure.add_subplot()
    left = [0.0] * len(labels)
    segments = kept + (["other"] if len(overall) > len(kept) else [])
    for i, kind in enumerate(segments):
        widths = [100 * (sum(v for k, v in bars[b].items() if k not in kept) if kind == "other"
                         else bars[b].get(kind, 0.0)) for b in labels]
        colour = "#c8ccd4" if kind == "other" else COLOUR_CYCLE[i % len(COLOUR_CYCLE)]
        axis.barh(labels, widths, left=left, color=colour, label=kind, edgecolor="white",
                  linewidth=0.5)
        for y, (x0, w) in enumerate(zip(left, widths, strict=True)):
            if w >= 6:
                axis.text(x0 + w / 2, y, f"{w:.0f}%", ha="center", va="center", fontsize=8,
                          color="white" if kind != "other" else "#333")
        left = [a + b for a, b in zip(left, widths, strict=True)]
    axis.set_xlim(0, 100)
    axis.invert_yaxis()
    axis.set_xlabel("share of the primitives' energy [%]")
    title = "Energy per primitive type" + (" (mean per model)" if by_model else "")
    axis.set_title(title)
    figure.legend(loc="outside lower center", ncol=min(5, len(segments)), frameon=False)
    return save_figure(figure, path, trees)


def _plot_type_shares(tree: Tree, path: str | os.PathLike, source: str) -> Path:
    """One tree: a bar per primitive type with its share (%) and energy."""
    shares = primitive_type_shares(tree, energy_source(tree, source))
    figure = Figure(figsize=(8, 1.4 + 0.36 * len(shares)), layout="constrained")
    axis = figure.add_subplot()
    labels = [f"{s.instance_type} (×{s.count})" for s in shares]
    values = [100 * s.share for s in shares]
    bars = axis.barh(labels, values, color=NODE_TYPE_COLOURS["ml"], alpha=0.85)
    axis.bar_label(bars, labels=[f"{v:.1f} %  ·  {format_energy(s.energy_j)}"
                                 for v, s in zip(values, shares, strict=True)],
                   padding=3, fontsize=8)
    axis.invert_yaxis()
    axis.set_xlim(0, max(values) * 1.35)
    axis.set_xlabel("share of the primitives' energy [%]")
    axis.set_title(f"Energy per primitive type · {tree.label}")
    axis.grid(True, axis="x", alpha=0.3)
    return save_figure(figure, path, [tree])


# --------------------------------------------------------------------------------------------
# comparing two trees


def plot_comparison(comparison: Comparison, path: str | os.PathLike, *, label_a: str = "A",
                    label_b: str = "B", max_rows: int = 14) -> Path:
    """Side by side: per-module energy of A and B (matched by scope; the whole model and the
    ``max_rows`` - 1 largest modules) and per primitive type, with the totals in the title."""
    modules = sorted(comparison.rows, key=lambda r: -max(r.energy_a or 0.0, r.energy_b or 0.0))
    modules = sorted(modules[:max_rows], key=lambda r: comparison.rows.index(r))
    types = comparison.types[:max_rows]
    height = 1.6 + 0.34 * max(len(modules), len(types))
    figure = Figure(figsize=(13, height), layout="constrained")
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1]})
    _paired_bars(left, [r.key or "whole model" for r in modules],
                 [r.energy_a for r in modules], [r.energy_b for r in modules], label_a, label_b)
    left.set_title("per module (matched by scope)")
    _paired_bars(right, [t[0] for t in types], [t[1] for t in types], [t[2] for t in types],
                 label_a, label_b)
    right.set_title("per primitive type")
    ratio = f" (B = {comparison.ratio:.2f} × A)" if comparison.ratio else ""
    figure.suptitle(f"A: {label_a} {format_energy(comparison.total_a)}   ·   "
                    f"B: {label_b} {format_energy(comparison.total_b)}{ratio}")
    return save_figure(figure, path, [comparison.tree_a, comparison.tree_b])


def _paired_bars(axis, labels: list[str], a: list[float | None], b: list[float | None],
                 label_a: str, label_b: str) -> None:
    positions = range(len(labels))
    height = 0.38
    axis.barh([p - height / 2 for p in positions], [v or 0.0 for v in a], height=height,
              color=COLOUR_CYCLE[0], label=f"A: {label_a}")
    axis.barh([p + height / 2 for p in positions], [v or 0.0 for v in b], height=height,
              color=COLOUR_CYCLE[1], label=f"B: {label_b}")
    axis.set_yticks(list(positions), labels, fontsize=8)
    axis.invert_yaxis()
    positive = [v for v in a + b if v]
    if positive:
        axis.set_xlim(min(positive) / 2, max(positive) * 2)
        energy_axis(axis, "x")
    axis.set_xlabel("energy per call")
    axis.grid(True, axis="x", alpha=0.3)
    axis.legend(loc="lower right", frameon=False, fontsize=8)


# --------------------------------------------------------------------------------------------
# many figures at once


def plot_all(trees: Sequence[Tree], out_dir: str | os.PathLike, *, fmt: str = "png",
             source: str = "auto") -> list[Path]:
    """Every figure that applies to ``trees`` into ``out_dir``; returns the paths written.

    The accuracy figures need nodes with both energies; energy vs sequence length needs more than
    one sequence length; energy per token vs context length needs decode trees at more than one
    context length; the primitive breakdown is always drawn.
    """
    from irene.report.generation import has_decode_series, plot_decode_energy_per_token

    require_data(fmt in FORMATS, f"figure format must be one of {FORMATS}, got {fmt!r}")
    out = Path(out_dir)
    written = [plot_primitive_breakdown(trees, out / f"primitive_breakdown.{fmt}",
                                        source=source)]
    passes = [t for t in trees if t.key.phase != "decode"]  # decode steps: by context length
    if len({t.seq_len for t in passes}) > 1:
        written.append(plot_energy_vs_seq_len(passes, out / f"energy_vs_seq_len.{fmt}"))
    if has_decode_series(trees):
        written.append(plot_decode_energy_per_token(
            trees, out / f"decode_energy_per_token.{fmt}"))
    if len(pair_within(trees)):
        written.append(plot_predicted_vs_measured(trees, out / f"predicted_vs_measured.{fmt}"))
        written.append(plot_error_distribution(trees, out / f"error_distribution.{fmt}"))
    return written


def plot_crossvalidation(gold_trees: Sequence[Tree], pred_trees: Sequence[Tree],
                         out_dir: str | os.PathLike, *, fmt: str = "png") -> list[Path]:
    """The figures of a cross-validation (:func:`plot_crossvalidation_merged`) from
    ``gold_trees``, which carry ground truth, and ``pred_trees``, the held-out predictions of
    the same trees (matched by model/batch size/seq len and node id). Returns the paths
    written."""
    return plot_crossvalidation_merged(merge_predictions(gold_trees, pred_trees), out_dir,
                                       fmt=fmt)


def plot_crossvalidation_merged(trees: Sequence[Tree], out_dir: str | os.PathLike, *,
                                fmt: str = "png", part: tuple[int, int] = (0, 1)) -> list[Path]:
    """The figures of a cross-validation from trees that carry both their ground truth and their
    held-out prediction on every node: predicted vs measured, error distribution, the
    model-level error per held-out model and energy vs sequence length (when several are
    present). ``part`` = (i, n): draw only every n-th of them from the i-th on (so n processes
    can share the work). Returns the paths written."""
    require_data(fmt in FORMATS, f"figure format must be one of {FORMATS}, got {fmt!r}")
    index, parts = part
    require_data(0 <= index < parts, f"part {index} of {parts} does not exist")
    paired = _paired(trees)
    out = Path(out_dir)
    figures: list[tuple[Callable[..., Path], str, dict[str, Any]]] = [
        (plot_predicted_vs_measured, "cv_predicted_vs_measured", {"paired": paired}),
        (plot_error_distribution, "cv_error_distribution", {"paired": paired}),
        (plot_error_by_model, "cv_error_by_model", {"paired": paired})]
    if len({t.seq_len for t in trees}) > 1:
        figures.append((plot_energy_vs_seq_len, "cv_energy_vs_seq_len", {}))
    return [plot(trees, out / f"{name}.{fmt}", **extra)
            for plot, name, extra in figures[index::parts]]


def plot_error_by_model(trees: Sequence[Tree], path: str | os.PathLike, *,
                        paired: PairedNodes | None = None) -> Path:
    """Mean absolute percent error per model (bars grouped by node type): which held-out model
    is predicted worst. Needs nodes with both energies (``paired``: ``pair_within(trees)`` when
    the caller has it already)."""
    paired = _paired(trees) if paired is None else paired
    groups = {(str(m), str(k)): paired.abs_error[(paired.model == m) & (paired.node_type == k)]
              for m in dict.fromkeys(paired.model.tolist()) for k in NODE_TYPES}
    groups = {key: values for key, values in groups.items() if values.size}
    models = list(dict.fromkeys(m for m, _ in groups))
    kinds = [k for k in NODE_TYPES if any(g[1] == k for g in groups)]
    figure = Figure(figsize=(max(6.0, 1.3 * len(models) + 2), 4.4), layout="constrained")
    axis = figure.add_subplot()
    width = 0.8 / len(kinds)
    for k, kind in enumerate(kinds):
        values = [float(groups[(m, kind)].mean()) if (m, kind) in groups else 0.0
                  for m in models]
        xs = [i + (k - (len(kinds) - 1) / 2) * width for i in range(len(models))]
        bars = axis.bar(xs, values, width=width, color=NODE_TYPE_COLOURS[kind], label=kind,
                        alpha=0.85)
        axis.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
    axis.set_xticks(range(len(models)), models, rotation=20, ha="right")
    axis.set_ylabel("mean absolute error [%]")
    axis.set_title("Error per model and node type")
    axis.grid(True, axis="y", alpha=0.3)
    axis.legend(frameon=False)
    return save_figure(figure, path, trees)
