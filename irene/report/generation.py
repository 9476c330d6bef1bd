"""Rendering generation energies: terminal, HTML section and figures.

Two kinds of input:

* a :class:`irene.generation.GenerationEstimate` (``irene estimate --prompt-len P --new-tokens
  N``): prefill, decode and total energy, energy per generated token, how the decode sum was
  formed, energy per token against context length and the prefill/decode split;
* trees of decode steps (``irene trace --phase decode --context-lens ...``, measured or
  predicted), given to ``irene report`` / ``irene plot``: energy per generated token (one decode
  step's energy / batch size) against context length, per model and batch size, beside the
  prefill's energy per prompt token where prefill trees of the same model and batch are present.

Energies are joules; "per token" means per generated token unless it says per prompt token.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from irene.report import measured_word
from irene.report.format import energy_text, format_energy, format_percent

if TYPE_CHECKING:
    from rich.console import Console

    from irene.generation import GenerationEstimate
    from irene.tree import Tree

PREFILL_COLOUR = "#e67e22"
DECODE_COLOUR = "#2f6fb3"
_FIELDS = {"measured": "ground_truth_energy", "predicted": "predicted_energy"}


# --------------------------------------------------------------------------------------------
# per-token series from decode trees


@dataclass
class DecodeSeries:
    """Decode steps of one model at one batch size: ``context_lens`` [n] (sorted), and per
    energy source (``measured`` / ``predicted``) the J per generated token at each [n] (NaN
    where a tree lacks it); ``prefill_per_token``: J per prompt token of the prefill trees of
    the same model and batch, by prompt length and source."""

    model: str
    batch_size: int
    context_lens: list[int]
    per_token: dict[str, list[float]]
    prefill_per_token: dict[str, dict[int, float]]

    @property
    def label(self) -> str:
        return f"{self.model} · batch {self.batch_size}"


def decode_series(trees: Sequence[Tree]) -> list[DecodeSeries]:
    """The :class:`DecodeSeries` of every (model, batch size) with decode trees, in order."""
    groups: dict[tuple[str, int], list[Tree]] = {}
    for tree in trees:
        if tree.key.phase == "decode":
            groups.setdefault((tree.model_name, tree.batch_size), []).append(tree)
    series = []
    for (model, batch), members in groups.items():
        members = sorted(members, key=lambda t: t.key.context_len)
        per_token = {source: [_energy(t, name) / batch for t in members]
                     for source, name in _FIELDS.items()}
        per_token = {k: v for k, v in per_token.items() if not all(map(math.isnan, v))}
        prefill: dict[str, dict[int, float]] = {}
        for tree in trees:
            if tree.key.phase == "prefill" and tree.model_name == model and \
                    tree.batch_size == batch:
                for source, name in _FIELDS.items():
                    value = _energy(tree, name)
                    if not math.isnan(value):
                        prefill.setdefault(source, {})[tree.seq_len] = \
                            value / (batch * tree.seq_len)
        series.append(DecodeSeries(model, batch, [t.key.context_len for t in members],
                                   per_token, prefill))
    return series


def _energy(tree: Tree, name: str) -> float:
    value = getattr(tree.root, name)
    return float("nan") if value is None else float(value)


# --------------------------------------------------------------------------------------------
# terminal


def render_generation(estimate: GenerationEstimate, console: Console, *,
                      depth: int | None = 3, top: int = 10) -> None:
    """Print the estimate: the phases table, how the decode sum was formed, energy per token at
    the traced context lengths, then the breakdown of each phase."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from irene.report.breakdown import explain_tree
    from irene.report.terminal import render_breakdown, synthetic_line

    line = synthetic_line([estimate.prefill])
    if line is not None:
        console.print(line)
    p, n, b = estimate.prompt_len, estimate.new_tokens, estimate.batch_size
    console.print(f"[bold]{escape(estimate.model_name)}[/bold]: {b} sequence(s) × {p}-token "
                  f"prompt, {n} new tokens each ({estimate.generated_tokens} generated) — "
                  "predicted")
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("phase", "energy", "share", "per token"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    total = estimate.total_j
    table.add_row("prefill", format_energy(estimate.prefill_j),
                  format_percent(estimate.prefill_j / total),
                  f"{format_energy(estimate.prefill_per_prompt_token_j)} / prompt token")
    table.add_row("decode", format_energy(estimate.decode_j),
                  format_percent(estimate.decode_j / total),
                  f"{format_energy(estimate.decode_per_token_j)} / new token")
    table.add_row("[bold]total[/bold]", f"[bold]{energy_text(total)}[/bold]", "100 %",
                  f"[bold]{format_energy(estimate.per_generated_token_j)}[/bold] / new token")
    console.print(table)
    console.print(decode_sum_text(estimate))
    for tree in (estimate.prefill, estimate.decode):
        console.print()
        render_breakdown(explain_tree(tree, source="predicted", depth=depth, top=top), console)


def decode_sum_text(estimate: GenerationEstimate) -> str:
    """How the decode sum was formed and checked, in one paragraph."""
    rule = estimate.decode_sum
    points = ", ".join(f"L={length}: {format_energy(energy / estimate.batch_size)}/token"
                       for length, energy in zip(estimate.context_lens,
                                                 estimate.step_energies(), strict=True))
    last = estimate.prompt_len + estimate.new_tokens - 1
    if rule.exact:
        return (f"decode = {estimate.new_tokens} steps; every step traced (exact): {points}.")
    return (f"decode = {estimate.new_tokens} steps at context {estimate.prompt_len}…{last}, "
            f"summed by the composite quadratic rule on {rule.segments} segment(s) through "
            f"{len(rule.weights)} traced context lengths ({points}); straight lines between "
            f"the same points give {format_energy(rule.linear_j)}: error estimate "
            f"{format_energy(rule.error_j)} "
            f"({100 * rule.error_j / estimate.decode_j:.2g} % of the decode energy).")


# --------------------------------------------------------------------------------------------
# inline SVG (HTML)


def _svg_line_chart(lines: list[dict], points: list[dict], *, x_label: str, y_label: str,
                    width: int = 520, height: int = 300) -> str:
    """A small SVG chart: ``lines`` ({xs, ys, colour, dash, label}) and ``points`` ({x, y,
    colour, tip}); linear axes starting at the data's range; empty string without data."""
    xs = [x for line in lines for x in line["xs"]] + [p["x"] for p in points]
    ys = [y for line in lines for y in line["ys"]] + [p["y"] for p in points]
    finite = [(x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(y)]
    if not finite:
        return ""
    x_low, x_high = min(x for x, _ in finite), max(x for x, _ in finite)
    y_low, y_high = 0.0, max(y for _, y in finite) * 1.1
    if x_high == x_low:
        x_low, x_high = x_low - 1, x_high + 1
    left, bottom, pad = 70, 40, 16

    def sx(v: float) -> float:
        return left + (v - x_low) / (x_high - x_low) * (width - left - pad)

    def sy(v: float) -> float:
        return height - bottom - (v - y_low) / (y_high - y_low) * (height - bottom - pad)

    parts = [f'<svg class=scatter viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{html.escape(y_label)} against {html.escape(x_label)}">']
    for tick in np.linspace(y_low, y_high, 5):
        parts.append(f'<line class=grid x1="{left}" y1="{sy(tick):.1f}" x2="{width - pad}" '
                     f'y2="{sy(tick):.1f}"/><text class=tick x="{left - 6}" '
                     f'y="{sy(tick) + 4:.1f}" text-anchor="end">'
                     f'{html.escape(format_energy(tick, 2) if tick else "0")}</text>')
    for tick in np.unique(np.linspace(x_low, x_high, 5).round()):
        parts.append(f'<text class=tick x="{sx(tick):.1f}" y="{height - bottom + 14}" '
                     f'text-anchor="middle">{int(tick)}</text>')
    for line in lines:
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in
                          zip(line["xs"], line["ys"], strict=True) if math.isfinite(y))
        dash = ' stroke-dasharray="5 4"' if line.get("dash") else ""
        parts.append(f'<polyline fill="none" stroke="{line["colour"]}" stroke-width="2"{dash} '
                     f'points="{coords}"><title>{html.escape(line["label"])}</title>'
                     "</polyline>")
    for point in points:
        if math.isfinite(point["y"]):
            parts.append(f'<circle cx="{sx(point["x"]):.1f}" cy="{sy(point["y"]):.1f}" r="4" '
                         f'fill="{point["colour"]}"><title>{html.escape(point["tip"])}</title>'
                         "</circle>")
    parts.append(f'<text class=axis x="{(left + width - pad) / 2}" y="{height - 6}" '
                 f'text-anchor="middle">{html.escape(x_label)}</text>'
                 f'<text class=axis transform="translate(14 {(height - bottom) / 2}) '
                 f'rotate(-90)" text-anchor="middle">{html.escape(y_label)}</text></svg>')
    return "".join(parts)


def _split_bar(prefill_j: float, decode_j: float) -> str:
    """An HTML bar split into the prefill's and the decode's share of the energy."""
    total = prefill_j + decode_j
    share = prefill_j / total if total > 0 else 0.0
    return (f'<div role=img aria-label="prefill and decode shares" style="display:flex;'
            f'height:1.6em;border-radius:4px;overflow:hidden;margin-top:.8em">'
            f'<span style="width:{100 * share:.2f}%;background:{PREFILL_COLOUR}" '
            f'title="prefill {format_percent(share)}"></span>'
            f'<span style="width:{100 * (1 - share):.2f}%;background:{DECODE_COLOUR}" '
            f'title="decode {format_percent(1 - share)}"></span></div>'
            f'<p class=hint><span style="color:{PREFILL_COLOUR}">■</span> prefill '
            f'{format_energy(prefill_j)} ({format_percent(share)}) · '
            f'<span style="color:{DECODE_COLOUR}">■</span> decode {format_energy(decode_j)} '
            f'({format_percent(1 - share)})</p>')


def generation_section(estimate: GenerationEstimate) -> str:
    """The HTML section of a generation estimate: phases table, split bar, energy per token
    against context length (the interpolating curve and the traced points)."""
    at, per_token = estimate.curve()
    mean = estimate.per_generated_token_j
    chart = _svg_line_chart(
        [{"xs": at.tolist(), "ys": per_token.tolist(), "colour": DECODE_COLOUR,
          "label": "decode step / batch size (interpolated)"},
         {"xs": [at[0], at[-1]], "ys": [mean, mean], "colour": PREFILL_COLOUR, "dash": True,
          "label": f"average per generated token, prefill included: {format_energy(mean)}"}],
        [{"x": length, "y": energy / estimate.batch_size, "colour": DECODE_COLOUR,
          "tip": f"traced: context {length}, {format_energy(energy / estimate.batch_size)} "
                 "per token"}
         for length, energy in zip(estimate.context_lens, estimate.step_energies(),
                                   strict=True)],
        x_label="context length (tokens in the KV cache)", y_label="energy per generated token")
    rows = "".join(
        f"<tr><td>{name}</td><td class=num>{format_energy(energy)}</td>"
        f"<td class=num>{format_percent(energy / estimate.total_j)}</td>"
        f"<td class=num>{html.escape(per)}</td></tr>"
        for name, energy, per in (
            ("prefill", estimate.prefill_j,
             f"{format_energy(estimate.prefill_per_prompt_token_j)} / prompt token"),
            ("decode", estimate.decode_j,
             f"{format_energy(estimate.decode_per_token_j)} / new token"),
            ("total", estimate.total_j,
             f"{format_energy(estimate.per_generated_token_j)} / new token")))
    title = (f"Generation: {estimate.batch_size} × ({estimate.prompt_len}-token prompt + "
             f"{estimate.new_tokens} new tokens)")
    return (f"<section id=generation><h2>{html.escape(title)}</h2><div class=grid2><div>"
            "<div class=card><h3>Prefill and decode (predicted)</h3><table class=data><thead>"
            "<tr><th>phase</th><th>energy</th><th>share</th><th>per token</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>{_split_bar(estimate.prefill_j, estimate.decode_j)}"
            f"<p class=hint>{html.escape(decode_sum_text(estimate))}</p></div></div>"
            "<div class=card><h3>Energy per generated token against context length</h3>"
            f"{chart}<p class=hint>One decode step's predicted energy divided by the batch "
            "size; dots: traced context lengths; dashed: the average over the whole "
            "generation, prefill included.</p></div></div></section>")


def decode_trees_section(trees: Sequence[Tree]) -> str:
    """The HTML section for decode trees in a report: energy per generated token against
    context length per (model, batch size), and the prefill's energy per prompt token beside it
    where prefill trees are present. Empty string without decode trees."""
    series = decode_series(trees)
    if not series:
        return ""
    measured = measured_word(trees)
    cards = []
    for item in series:
        lines, points = [], []
        for source, values in item.per_token.items():
            word = measured if source == "measured" else "predicted"
            colour = DECODE_COLOUR if source == "measured" else PREFILL_COLOUR
            lines.append({"xs": item.context_lens, "ys": values, "colour": colour,
                          "dash": source == "predicted", "label": f"decode, {word}"})
            points += [{"x": x, "y": y, "colour": colour,
                        "tip": f"{word}: context {x}, {format_energy(y)} per generated token"}
                       for x, y in zip(item.context_lens, values, strict=True)]
        chart = _svg_line_chart(lines, points, x_label="context length",
                                y_label="energy per generated token")
        prefill = "".join(
            f"<li>prefill of {length} tokens ({html.escape(measured if s == 'measured' else s)}"
            f"): {format_energy(value)} per prompt token</li>"
            for s, by_len in item.prefill_per_token.items() for length, value in by_len.items())
        cards.append(f"<div class=card><h3>{html.escape(item.label)}</h3>{chart}"
                     + (f"<ul class=hint>{prefill}</ul>" if prefill else "") + "</div>")
    return ("<section id=decode><h2>Decode: energy per generated token against context "
            "length</h2><p class=hint>One decode step's energy divided by the batch size; "
            f"solid: {html.escape(measured)}, dashed: predicted.</p><div class=grid2>"
            + "".join(cards) + "</div></section>")


# --------------------------------------------------------------------------------------------
# figures


def plot_generation(estimate: GenerationEstimate, path: str | os.PathLike) -> Path:
    """Two panels: energy per generated token against context length (interpolating curve,
    traced points, the whole generation's average), and the prefill/decode split (J)."""
    from matplotlib.figure import Figure

    from irene.report.figures import save_figure

    figure = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1]})
    at, per_token = estimate.curve()
    left.plot(at, per_token, color=DECODE_COLOUR, label="decode step / batch (interpolated)")
    left.scatter(estimate.context_lens,
                 [e / estimate.batch_size for e in estimate.step_energies()],
                 color=DECODE_COLOUR, zorder=3, label="traced context lengths")
    left.axhline(estimate.per_generated_token_j, color=PREFILL_COLOUR, linestyle="--",
                 label="average per generated token, prefill included")
    left.set_xlabel("context length (tokens in the KV cache)")
    left.set_ylabel("energy per generated token")
    left.set_ylim(0, max(float(per_token.max()), estimate.per_generated_token_j) * 1.15)
    left.yaxis.set_major_formatter(_joules())
    left.grid(True, alpha=0.3)
    left.legend(frameon=False, fontsize=8)
    left.set_title(f"{estimate.model_name}: energy per token")
    bars = right.bar(["prefill", "decode"], [estimate.prefill_j, estimate.decode_j],
                     color=[PREFILL_COLOUR, DECODE_COLOUR])
    right.bar_label(bars, labels=[f"{format_energy(e)}\n{format_percent(e / estimate.total_j)}"
                                  for e in (estimate.prefill_j, estimate.decode_j)],
                    fontsize=8)
    right.set_ylim(0, max(estimate.prefill_j, estimate.decode_j) * 1.3)
    right.yaxis.set_major_formatter(_joules())
    right.set_title(f"prefill / decode split ({estimate.prompt_len} + {estimate.new_tokens} "
                    f"tokens × {estimate.batch_size})")
    return save_figure(figure, path, [estimate.prefill])


def plot_decode_energy_per_token(trees: Sequence[Tree], path: str | os.PathLike) -> Path:
    """Energy per generated token against context length, one line per (model, batch size)
    and energy source (measured solid, predicted dashed); the prefill's energy per prompt token
    as a dotted horizontal line where prefill trees are present."""
    from matplotlib.figure import Figure

    from irene.report.figures import COLOUR_CYCLE, energy_axis, require_data, save_figure

    series = decode_series(trees)
    require_data(any(s.per_token for s in series), "no decode tree carries an energy")
    measured = measured_word(trees)
    figure = Figure(figsize=(7.5, 4.6), layout="constrained")
    axis = figure.add_subplot()
    for i, item in enumerate(series):
        colour = COLOUR_CYCLE[i % len(COLOUR_CYCLE)]
        for source, values in item.per_token.items():
            axis.plot(item.context_lens, values, marker="o" if source == "measured" else "x",
                      linestyle="-" if source == "measured" else "--", color=colour,
                      label=f"{item.label} · decode, "
                            f"{measured if source == 'measured' else 'predicted'}")
        for source, by_len in item.prefill_per_token.items():
            word = measured if source == "measured" else "predicted"
            for length, value in by_len.items():
                axis.axhline(value, color=colour, linestyle=":",
                             label=f"{item.label} · prefill of {length} ({word}), per prompt "
                                   "token")
    axis.set_xlabel("context length (tokens in the KV cache)")
    axis.set_ylabel("energy per generated token")
    energy_axis(axis, "y")
    axis.grid(True, alpha=0.3)
    axis.legend(frameon=False, fontsize=7)
    axis.set_title("Decode: energy per generated token against context length")
    return save_figure(figure, path, trees)


def _joules():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _: format_energy(v, 2) if v > 0 else "0")


def has_decode_series(trees: Sequence[Tree]) -> bool:
    """Whether ``trees`` hold decode steps with an energy at more than one context length."""
    return any(len(s.context_lens) > 1 and s.per_token for s in decode_series(trees))


__all__ = ["DecodeSeries", "decode_series", "decode_sum_text", "decode_trees_section",
           "generation_section", "has_decode_series", "plot_decode_energy_per_token",
           "plot_generation", "render_generation"]
