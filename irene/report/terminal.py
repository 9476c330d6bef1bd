"""Terminal rendering of breakdowns and comparisons with rich.

Each ``render_*`` function prints to a :class:`rich.console.Console` (pass one made with
``record=True`` or ``file=StringIO()`` to capture the text). The numbers come from
:mod:`irene.report.breakdown`; nothing is computed here but layout. Trees that are not real
measurements (:func:`irene.report.synthetic_label`) get one highlighted line first, and their
ground truth is headed "synthetic 'measured'".
"""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from irene.report import energy_for, measured_word, per_call_text, synthetic_label
from irene.report.breakdown import Breakdown, Hotspot, NodeRow
from irene.report.compare import Comparison
from irene.report.format import energy_text, format_energy, format_error, format_percent
from irene.tree import Tree

_TYPE_STYLE = {"model": "bold magenta", "module": "cyan", "ml": "green"}
_SOURCE_TEXT = {
    "predicted": "predicted energy",
    "measured": "measured energy (ground truth)",
}
_SYNTHETIC_STYLE = "bold white on red"


def synthetic_line(trees: Sequence[Tree]) -> Text | None:
    """The highlighted line printed before anything made from trees that are not real
    measurements; None for real ones."""
    label = synthetic_label(trees)
    if not label:
        return None
    return Text(f" {label} ", style=_SYNTHETIC_STYLE)


def bar(fraction: float, width: int = 20) -> str:
    """A bar of ``width`` cells filled to ``fraction`` (0..1) with eighth-block precision."""
    fraction = min(max(fraction, 0.0), 1.0)
    eighths = round(fraction * width * 8)
    full, rest = divmod(eighths, 8)
    return ("█" * full + (" ▏▎▍▌▋▊▉"[rest] if rest else "")).ljust(width)


def tree_guide(row: NodeRow) -> str:
    """The box-drawing prefix that places a row in the tree (``"│  ├─ "``)."""
    if row.depth == 0:
        return ""
    parts = ["   " if last else "│  " for last in row.ancestors_last]
    parts.append("└─ " if row.is_last else "├─ ")
    return "".join(parts)


def header(breakdown: Breakdown) -> Panel:
    """The summary panel: which tree, which energy, the total and (if known) the measured one."""
    tree = breakdown.tree
    lines = Text()
    lines.append(tree.label, style="bold")
    scope = energy_for(tree, breakdown.source)
    if scope:
        lines.append(f"\nenergy for: {scope}")
    measured = measured_word([tree])
    lines.append("\nexplaining: ")
    lines.append(_SOURCE_TEXT[breakdown.source].replace("measured", measured, 1),
                 style="yellow")
    lines.append("\ntotal: ")
    lines.append(energy_text(breakdown.total_j), style="bold")
    lines.append(" " + per_call_text(tree))
    if breakdown.source == "predicted" and breakdown.measured_total_j is not None:
        lines.append(f"   {measured}: {format_energy(breakdown.measured_total_j)}")
        lines.append(f"   error: {format_error(breakdown.error_pct)}")
    return Panel(lines, title="irene · energy breakdown", title_align="left", box=box.ROUNDED)


def breakdown_table(breakdown: Breakdown, width: int = 120) -> Table:
    """The tree as a table: name with tree guides and type, energy, shares, measured, error.

    Below ``width`` 110 columns the share bar is left out; names are shortened with an ellipsis
    before any number is.
    """
    show_truth = breakdown.source == "predicted" and breakdown.has_ground_truth
    show_bar = width >= 110
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="Where the energy goes",
                  title_justify="left", title_style="bold")
    table.add_column("node  (type)", no_wrap=True, overflow="ellipsis", ratio=1)
    _number_columns(table, [("energy", 8), ("% parent", 8), ("% model", 7)])
    if show_bar:
        table.add_column("", no_wrap=True, min_width=12)
    if show_truth:
        _number_columns(table, [(measured_word([breakdown.tree]), 8), ("error", 7)])
    rows = breakdown.rows
    for index, row in enumerate(rows):
        name = Text(tree_guide(row), style="dim")
        name.append(row.name, style=_TYPE_STYLE.get(row.node.type, ""))
        following = rows[index + 1] if index + 1 < len(rows) else None
        children_cut = following is None or following.depth <= row.depth
        if row.node.children and children_cut:
            name.append(f" [+{len(row.node.children)}]", style="dim")
        name.append(f"  {row.node.instance_type}", style="dim italic")
        cells: list[str | Text] = [name, format_energy(row.energy_j),
                                   format_percent(row.share_of_parent),
                                   format_percent(row.share_of_model)]
        if show_bar:
            cells.append(Text(bar(row.share_of_model, 12), style="blue"))
        if show_truth:
            cells += [format_energy(row.measured_j), _error_text(row.error_pct)]
        table.add_row(*cells)
    return table


def _number_columns(table: Table, columns: list[tuple[str, int]]) -> None:
    for title, min_width in columns:
        table.add_column(title, justify="right", no_wrap=True, min_width=min_width)


def _error_text(percent: float | None) -> Text:
    if percent is None:
        return Text("—", style="dim")
    style = "green" if abs(percent) < 10 else "yellow" if abs(percent) < 25 else "red"
    return Text(format_error(percent), style=style)


def hotspot_table(title: str, spots: list[Hotspot], show_truth: bool,
                  measured: str = "measured") -> Table:
    """A ranked table of the most energy-hungry primitives or modules; ``measured`` heads the
    ground-truth column."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title=title, title_justify="left",
                  title_style="bold")
    table.caption = "* stands for every layer index: repeated layers are summed"
    table.caption_justify = "left"
    table.add_column("#", justify="right")
    table.add_column("scope", overflow="fold")
    table.add_column("type", no_wrap=True, overflow="ellipsis")
    for title in ("×", "energy", "% model") + ((measured, "error") if show_truth else ()):
        table.add_column(title, justify="right", no_wrap=True)
    for rank, spot in enumerate(spots, start=1):
        cells = [str(rank), spot.label, spot.instance_type, str(spot.count),
                 format_energy(spot.energy_j), format_percent(spot.share_of_model)]
        if show_truth:
            cells += [format_energy(spot.measured_j), _error_text(spot.error_pct)]
        table.add_row(*cells)
    return table


def type_share_table(breakdown: Breakdown) -> Table:
    """Energy per primitive type with a bar; the shares add up to 100 %."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="By primitive type",
                  title_justify="left", title_style="bold")
    table.add_column("primitive type", no_wrap=True)
    table.add_column("×", justify="right")
    table.add_column("energy", justify="right", no_wrap=True)
    table.add_column("share", justify="right", no_wrap=True)
    table.add_column("", no_wrap=True)
    for share in breakdown.type_shares:
        table.add_row(share.instance_type, str(share.count), format_energy(share.energy_j),
                      format_percent(share.share), Text(bar(share.share), style="green"))
    return table


def type_share_summary(breakdown: Breakdown, limit: int = 4) -> str:
    """One line: ``"Linear 61.0 %, MatMul 14.0 %, Softmax 6.0 %, 3 others 19.0 %"``."""
    shares = breakdown.type_shares
    parts = [f"{s.instance_type} {format_percent(s.share)}" for s in shares[:limit]]
    if len(shares) > limit:
        rest = sum(s.share for s in shares[limit:])
        parts.append(f"{len(shares) - limit} others {format_percent(rest)}")
    return ", ".join(parts)


def render_breakdown(breakdown: Breakdown, console: Console | None = None) -> None:
    """Print a whole explanation: header, tree table, top primitives/modules, type shares."""
    console = console or Console()
    show_truth = breakdown.source == "predicted" and breakdown.has_ground_truth
    measured = measured_word([breakdown.tree])
    warning = synthetic_line([breakdown.tree])
    parts: list[Panel | Table | Text] = ([warning] if warning else []) + [header(breakdown)]
    for note in breakdown.notes:
        parts.append(Text(f"note: {note}", style="yellow"))
    parts += [
        breakdown_table(breakdown, console.width),
        hotspot_table(f"Top {len(breakdown.top_primitives)} primitives",
                      breakdown.top_primitives, show_truth, measured),
        hotspot_table(f"Top {len(breakdown.top_modules)} modules (a module's energy also "
                      "counts in its parents')", breakdown.top_modules, show_truth, measured),
        type_share_table(breakdown),
        Text("by primitive type: " + type_share_summary(breakdown), style="bold"),
    ]
    console.print(Group(*parts))


def render_comparison(comparison: Comparison, label_a: str, label_b: str,
                      console: Console | None = None) -> None:
    """Print two trees side by side: totals, per-module energies and differences, per type."""
    console = console or Console()
    warning = synthetic_line([comparison.tree_a, comparison.tree_b])
    if warning:
        console.print(warning)
    source_a = _source_name(comparison.source_a, comparison.tree_a)
    source_b = _source_name(comparison.source_b, comparison.tree_b)
    summary = Text()
    summary.append("A: ", style="bold")
    summary.append(f"{label_a}  ({comparison.tree_a.label}, {source_a})\n")
    summary.append("B: ", style="bold")
    summary.append(f"{label_b}  ({comparison.tree_b.label}, {source_b})\n")
    summary.append(f"total A {energy_text(comparison.total_a)}  ·  "
                   f"total B {energy_text(comparison.total_b)}  ·  B − A ")
    summary.append(_signed_energy(comparison.diff_j), style="bold")
    if comparison.ratio is not None:
        summary.append(f"  (B = {comparison.ratio:.2f} × A)")
    if comparison.source_a != comparison.source_b:
        summary.append(f"\nnote: A is {source_a} and B {source_b} energy",
                       style="yellow")
    console.print(Panel(summary, title="irene · compare", title_align="left", box=box.ROUNDED))
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="Per module (matched by scope)",
                  title_justify="left", title_style="bold")
    for column, justify in (("node", "left"), ("type", "left"), ("A", "right"),
                            ("B", "right"), ("B − A", "right"), ("B / A", "right")):
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for row in comparison.rows:
        name = Text("   " * row.depth + row.name)
        if row.energy_a is None or row.energy_b is None:
            name.append("  only in " + ("B" if row.energy_a is None else "A"), style="yellow")
        table.add_row(name, Text(row.instance_type, style="dim"), format_energy(row.energy_a),
                      format_energy(row.energy_b),
                      _signed_energy(row.diff_j) if row.diff_j is not None else "—",
                      f"{row.ratio:.2f}" if row.ratio is not None else "—")
    console.print(table)
    types = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="Per primitive type",
                  title_justify="left", title_style="bold")
    for column, justify in (("primitive type", "left"), ("A", "right"), ("B", "right"),
                            ("B − A", "right")):
        types.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for name, energy_a, energy_b in comparison.types:
        diff = (energy_b or 0.0) - (energy_a or 0.0)
        types.add_row(name, format_energy(energy_a), format_energy(energy_b),
                      _signed_energy(diff))
    console.print(types)


def _source_name(source: str, tree: Tree) -> str:
    """``"predicted"``, ``"measured"``, or ``"synthetic 'measured'"`` for a synthetic tree."""
    return measured_word([tree]) if source == "measured" else source


def _signed_energy(joules: float) -> str:
    text = format_energy(joules)
    return text if joules < 0 or text == "0 J" else "+" + text
