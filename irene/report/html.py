"""One self-contained HTML page that explains energy trees.

The page has no external resource of any kind (no CDN, no font, no image URL): the style sheet
(``report.css``) and the script (``report.js``) shipped in this package are inlined, the data is
embedded as JSON, and the predicted-vs-measured chart is inline SVG. It opens offline, from a
file, on an air-gapped machine.

What it shows, per tree (a selector switches between trees): a summary (total energy, measured
energy and error where known), a collapsible breakdown tree (click a row's ▸ to expand; hover a
row for the node's features), the share of each primitive type, and the top primitives and
modules. Over all trees with both energies: the percent error per node type and per primitive
type, the model-level predicted vs measured table, and a log-log scatter chart.

Trees that are not real measurements (:func:`irene.report.synthetic_label`) get a red banner at
the top of the page and "SYNTHETIC DATA" in its ``<title>``; their ground truth is called
"synthetic 'measured'" wherever the page labels it.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
from collections.abc import Sequence
from importlib import resources
from typing import Any

import numpy as np

from irene.evaluation import REPORT_ORDER, ErrorStats, PairedNodes, error_stats, pair_within
from irene.files import atomic_write
from irene.report import NODE_TYPE_COLOURS, energy_for, measured_word, synthetic_label
from irene.report.breakdown import Breakdown, Hotspot, explain_tree
from irene.report.format import format_energy, format_error, format_percent
from irene.report.training import training_section
from irene.schema import FEATURE_FIELDS, NODE_TYPES
from irene.tree import Node, Tree


def _asset(name: str) -> str:
    return resources.files("irene.report").joinpath(name).read_text(encoding="utf-8")


def _round(value: float, digits: int = 5) -> float:
    """``value`` to ``digits`` significant digits (keeps the embedded JSON small)."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - int(math.floor(math.log10(abs(value)))))


def _node_payload(breakdown: Breakdown) -> dict[str, Any]:
    """The tree as nested dicts with pre-formatted numbers (one formatting code: Python's)."""
    by_node = {id(r.node): r for r in breakdown.rows}

    def convert(node: Node) -> dict[str, Any]:
        row = by_node[id(node)]
        return {
            "name": row.name, "scope": node.scope, "kind": node.type,
            "itype": node.instance_type,
            "energy": format_energy(row.energy_j), "sm": _round(row.share_of_model, 4),
            "parent": format_percent(row.share_of_parent),
            "model": format_percent(row.share_of_model),
            "measured": None if row.measured_j is None else format_energy(row.measured_j),
            "predicted": None if row.predicted_j is None else format_energy(row.predicted_j),
            "err": None if row.error_pct is None else _round(row.error_pct, 4),
            "errText": None if row.error_pct is None else format_error(row.error_pct),
            "f": {k: _round(node.features[k]) for k in FEATURE_FIELDS},
            "children": [convert(c) for c in node.children],
        }

    return convert(breakdown.tree.root)


def _hotspots_payload(spots: list[Hotspot]) -> list[dict[str, Any]]:
    return [{"label": s.label, "itype": s.instance_type, "count": s.count,
             "energy": format_energy(s.energy_j), "share": format_percent(s.share_of_model),
             "measured": None if s.measured_j is None else format_energy(s.measured_j),
             "errText": None if s.error_pct is None else format_error(s.error_pct)}
            for s in spots]


def tree_payload(tree: Tree, *, source: str = "auto", top: int = 10) -> dict[str, Any]:
    """Everything the page's script draws for one tree, as JSON-ready data."""
    breakdown = explain_tree(tree, source=source, top=top)
    meta = {k: v for k, v in tree.meta.items()
            if k in ("device", "meter", "ground_truth_meter", "created_by")
            and isinstance(v, (str, int, float))}
    return {
        "label": tree.label, "model": tree.model_name,
        "batchSize": tree.batch_size, "seqLen": tree.seq_len, "meta": meta,
        "energyFor": energy_for(tree, breakdown.source),
        "source": breakdown.source, "notes": breakdown.notes,
        "total": format_energy(breakdown.total_j),
        "measuredTotal": (None if breakdown.measured_total_j is None
                          else format_energy(breakdown.measured_total_j)),
        "error": None if breakdown.error_pct is None else format_error(breakdown.error_pct),
        "nodeCount": len(breakdown.rows),
        "primitiveCount": sum(1 for r in breakdown.rows if r.node.is_leaf),
        "hasTruth": breakdown.source == "predicted" and breakdown.has_ground_truth,
        "types": [{"itype": s.instance_type, "count": s.count,
                   "energy": format_energy(s.energy_j), "share": _round(s.share, 4),
                   "shareText": format_percent(s.share)} for s in breakdown.type_shares],
        "topPrimitives": _hotspots_payload(breakdown.top_primitives),
        "topModules": _hotspots_payload(breakdown.top_modules),
        "root": _node_payload(breakdown),
    }


def _json_for_script(data: Any) -> str:
    """JSON that is safe inside a ``<script>`` element (no ``</script>`` can end it early)."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# --------------------------------------------------------------------------------------------
# the data-set-wide accuracy section (static HTML, computed here)


def _stats_table(title: str, stats: list[ErrorStats], group_name: str) -> str:
    head = (f"<tr><th>{html.escape(group_name)}</th><th>nodes</th><th>MAPE</th>"
            "<th>median</th><th>90th pct</th><th>max</th><th>mean signed</th></tr>")
    body = "".join(
        f"<tr><td>{html.escape(s.group)}</td><td class=num>{s.count}</td>"
        f"<td class=num><b>{s.mape:.1f} %</b></td><td class=num>{s.median_ape:.1f} %</td>"
        f"<td class=num>{s.p90_ape:.1f} %</td><td class=num>{s.max_ape:.1f} %</td>"
        f"<td class=num>{s.mean_signed:+.1f} %</td></tr>" for s in stats)
    return (f"<div class=card><h3>{html.escape(title)}</h3>"
            f"<table class=data><thead>{head}</thead><tbody>{body}</tbody></table></div>")


def _model_level_table(paired: PairedNodes, measured_text: str) -> str:
    roots = paired.where(paired.node_type == "model")
    if not len(roots):
        return ""
    measured = html.escape(measured_text)
    rows = []
    for i, error in enumerate(roots.error.tolist()):
        rows.append(f"<tr><td>{html.escape(roots.tree_of(i).label)}</td>"
                    f"<td class=num>{format_energy(roots.gold[i])}</td>"
                    f"<td class=num>{format_energy(roots.predicted[i])}</td>"
                    f"<td class='num {_error_class(error)}'>{format_error(error)}</td></tr>")
    return (f"<div class=card><h3>Whole model: predicted vs {measured}</h3><table class=data>"
            f"<thead><tr><th>tree</th><th>{measured}</th><th>predicted</th><th>error</th></tr>"
            f"</thead><tbody>{''.join(rows)}</tbody></table></div>")


def _error_class(percent: float) -> str:
    return "good" if abs(percent) < 10 else "fair" if abs(percent) < 25 else "poor"


def sample_per_type(paired: PairedNodes, max_points: int) -> np.ndarray:
    """Row indices of at most ``max_points`` rows, shared fairly between the node types: each
    type gets an equal quota (what a type does not use goes to the others), and within a type
    the rows are taken evenly spaced. All rows when there are few enough."""
    if len(paired) <= max_points:
        return np.arange(len(paired))
    groups = [np.flatnonzero(paired.node_type == kind) for kind in NODE_TYPES]
    groups = [g for g in groups if g.size]
    quota, left = {}, max_points
    for k, group in enumerate(sorted(groups, key=len)):  # smallest first: leftovers flow on
        quota[id(group)] = min(group.size, left // (len(groups) - k))
        left -= quota[id(group)]
    chosen = [group[np.linspace(0, group.size - 1, quota[id(group)]).round().astype(int)]
              for group in groups if quota[id(group)]]
    return np.sort(np.concatenate(chosen))


def scatter_svg(trees: Sequence[Tree], width: int = 420, height: int = 360,
                max_points: int = 4000) -> str:
    """Inline SVG: predicted vs measured energy per node (log-log, y = x dashed), one colour per
    node type; at most ``max_points`` points, shared fairly between the node types
    (:func:`sample_per_type`). Empty string when no node has both energies."""
    everything = pair_within(trees)
    everything = everything.where(everything.predicted > 0)
    if not len(everything):
        return ""
    shown = everything.where(np.isin(np.arange(len(everything)),
                                     sample_per_type(everything, max_points)))
    measured_word_text = measured_word(trees)
    measured_text = html.escape(measured_word_text)
    values = np.concatenate([shown.gold, shown.predicted])
    low = math.floor(math.log10(values.min()))
    high = math.ceil(math.log10(values.max()))
    if high == low:
        high += 1
    left, bottom, pad = 56, 40, 24

    def x(v: float) -> float:
        return left + (math.log10(v) - low) / (high - low) * (width - left - pad)

    def y(v: float) -> float:
        return height - bottom - (math.log10(v) - low) / (high - low) * (height - bottom - pad)

    parts = [f'<svg class=scatter viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="predicted versus measured energy per node">']
    for exponent in range(low, high + 1):
        value = 10.0 ** exponent
        parts.append(f'<line class=grid x1="{x(value):.1f}" y1="{pad}" x2="{x(value):.1f}" '
                     f'y2="{height - bottom}"/><line class=grid x1="{left}" y1="{y(value):.1f}" '
                     f'x2="{width - pad}" y2="{y(value):.1f}"/>'
                     f'<text class=tick x="{x(value):.1f}" y="{height - bottom + 14}" '
                     f'text-anchor="middle">{html.escape(format_energy(value, 1))}</text>'
                     f'<text class=tick x="{left - 6}" y="{y(value) + 4:.1f}" '
                     f'text-anchor="end">{html.escape(format_energy(value, 1))}</text>')
    lo, hi = 10.0 ** low, 10.0 ** high
    parts.append(f'<line class=diag x1="{x(lo):.1f}" y1="{y(lo):.1f}" x2="{x(hi):.1f}" '
                 f'y2="{y(hi):.1f}"/>')
    for kind in REPORT_ORDER:
        colour = NODE_TYPE_COLOURS[kind]
        for i in np.flatnonzero(shown.node_type == kind).tolist():
            node, measured, predicted = shown.nodes[i], shown.gold[i], shown.predicted[i]
            tip = (f"{shown.tree_of(i).label} · {node.scope} ({node.instance_type}): "
                   f"{measured_word_text} {format_energy(measured)}, "
                   f"predicted {format_energy(predicted)}")
            parts.append(f'<circle cx="{x(measured):.1f}" cy="{y(predicted):.1f}" '
                         f'r="{4.5 if kind == "model" else 3}" fill="{colour}" '
                         f'fill-opacity="0.65"><title>{html.escape(tip)}</title></circle>')
    parts.append(f'<text class=axis x="{(left + width - pad) / 2}" y="{height - 6}" '
                 f'text-anchor="middle">{measured_text} energy</text>'
                 f'<text class=axis transform="translate(14 {(height - bottom) / 2}) rotate(-90)" '
                 'text-anchor="middle">predicted energy</text>')
    legend = "".join(
        f'<circle cx="{left + 14 + 90 * i}" cy="{pad + 8}" r="4" fill="{NODE_TYPE_COLOURS[k]}"/>'
        f'<text class=tick x="{left + 22 + 90 * i}" y="{pad + 12}">{k}</text>'
        for i, k in enumerate(NODE_TYPES))
    parts.append(legend + "</svg>")
    if len(shown) < len(everything):
        counts = ", ".join(f"{int((shown.node_type == k).sum())} of "
                           f"{int((everything.node_type == k).sum())} {k}"
                           for k in NODE_TYPES if (everything.node_type == k).any())
        parts.append(f"<p class=hint>{len(shown)} of {len(everything)} nodes shown, sampled "
                     f"evenly within each node type ({counts}).</p>")
    return "".join(parts)


def accuracy_section(trees: Sequence[Tree]) -> str:
    """Predicted vs measured over all trees: tables per node/primitive type and a scatter chart.

    Empty string when no node carries both a prediction and a ground truth.
    """
    paired = pair_within(trees)
    if not len(paired):
        return ""
    by_kind = error_stats(paired, "node_type")
    measured = html.escape(measured_word(trees))
    return (
        f"<section id=accuracy><h2>Predicted vs {measured}</h2>"
        f"<p class=hint>Absolute percent error |predicted − {measured}| / {measured}, over every "
        "node of every tree in this file that has both energies.</p><div class=grid2><div>"
        + _stats_table("Error per node type", by_kind, "node type")
        + _model_level_table(paired, measured_word(trees))
        + f"</div><div class=card><h3>Every node</h3>{scatter_svg(trees)}</div></div>"
        + _stats_table("Error per primitive type", error_stats(paired, "instance_type"),
                       "primitive type")
        + "</section>")


# --------------------------------------------------------------------------------------------
# the page


def build_report(trees: Sequence[Tree], *, title: str | None = None, source: str = "auto",
                 top: int = 10, origin: str | None = None, generation: Any = None,
                 sections: Sequence[str] = ()) -> str:
    """The whole HTML page (a string) for ``trees``; see the module doc for what it shows.

    ``source`` picks the explained energy (auto/predicted/measured, see
    :func:`irene.report.breakdown.energy_source`); ``origin`` names the input file in the page;
    ``generation``: a :class:`irene.generation.GenerationEstimate` whose section (prefill/decode
    split, energy per token against context length) the page shows; without it, decode trees
    among ``trees`` get their energy per token against context length
    (:mod:`irene.report.generation`); training-step trees get their pass split; ``sections``
    are extra HTML fragments shown after the accuracy section (e.g.
    :func:`irene.bench.report.bench_section_html`, an ``irene bench`` comparison). Raises
    ValueError when a tree has neither energy.
    """
    from irene.report.generation import decode_trees_section, generation_section

    if not trees:
        raise ValueError("no trees to report on")
    label = synthetic_label(trees)
    payload = {"trees": [tree_payload(t, source=source, top=top) for t in trees],
               "colours": NODE_TYPE_COLOURS, "measuredWord": measured_word(trees)}
    title = title or ("irene energy report · " + (trees[0].model_name if len(trees) == 1
                                                  else f"{len(trees)} trees"))
    if label:
        title = f"{label} · {title}"
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    from irene import __version__ as version

    subtitle = f"generated {stamp} by irene {version}" + (
        f" from {html.escape(os.path.basename(origin))}" if origin else "")
    return _PAGE.format(
        title=html.escape(title), subtitle=subtitle, banner=synthetic_banner(label),
        css=_asset("report.css"),
        js=_asset("report.js"), data=_json_for_script(payload),
        accuracy=accuracy_section(trees) + training_section(trees) + "".join(sections),
        phases=generation_section(generation) if generation is not None
        else decode_trees_section(trees))


def synthetic_banner(label: str | None) -> str:
    """The red banner at the top of a page made from trees that are not real measurements
    (empty string for real ones)."""
    if not label:
        return ""
    return (f"<div class=synthetic-banner role=alert><b>{html.escape(label)}</b><br>"
            "These trees come from the built-in synthetic data set or a simulated meter: their "
            "&ldquo;measured&rdquo; energies follow a formula and say nothing about real "
            "hardware.</div>")


def static_page(title: str, body: str, *, subtitle: str = "", banner: str = "") -> str:
    """A self-contained page (the report's style sheet inlined, no script, no URL) around an
    HTML ``body`` fragment; ``title`` and ``subtitle`` are plain text."""
    return (_HEAD.format(title=html.escape(title), css=_asset("report.css"), banner=banner)
            + f"<header>\n  <h1>{html.escape(title)}</h1>\n  <p class=subtitle>"
              f"{html.escape(subtitle)}</p>\n</header>\n<main>\n{body}\n</main>\n</body>\n"
              "</html>\n")


def write_report(trees: Sequence[Tree], path: str | os.PathLike, **options: Any) -> None:
    """Write :func:`build_report`'s page to ``path`` atomically (nothing half-written)."""
    text = build_report(trees, **options)
    with atomic_write(path) as handle:
        handle.write(text)


_HEAD = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{title}</title>
<style>
{css}
</style>
</head>
<body>
{banner}
"""

_PAGE = _HEAD + """<header>
  <h1>{title}</h1>
  <p class=subtitle>{subtitle}</p>
</header>
<main>
  <section id=intro class=hint>
    How much energy one inference call (one forward pass of one batch) costs, and where it goes
    (for a training-step tree: one step, whose root splits into its forward, backward and
    optimiser passes). The tree starts at the whole <span class="kind model">model</span>, splits
    into its <span class="kind module">modules</span>, and ends at the ML primitives
    (<span class="kind ml">ml</span>: Linear, matmul, softmax, …).
    Click <b>▸</b> to open a node; hover a row to see its features.
  </section>
  {phases}
  <div id=picker></div>
  <div id=summary class=cards></div>
  <section id=breakdown>
    <div class=toolbar><h2>Where the energy goes</h2>
      <span class=spacer></span>
      <button type=button id=expand-all>Expand all</button>
      <button type=button id=collapse-all>Collapse</button></div>
    <div id=tree role=tree></div>
  </section>
  <div class=sidebyside>
    <section id=types class=card><h2>By primitive type</h2><div id=type-bars></div></section>
    <div>
      <section class=card><h2>Top primitives</h2><div id=top-primitives></div>
        <p class=hint>* stands for every layer index: repeated layers are summed.</p></section>
      <section class=card><h2>Top modules</h2><div id=top-modules></div>
        <p class=hint>* stands for every layer index. A module's energy also counts in its
        parents'.</p></section>
    </div>
  </div>
  {accuracy}
</main>
<div id=tooltip role=tooltip hidden></div>
<script type="application/json" id="irene-data">{data}</script>
<script>
{js}
</script>
</body>
</html>
"""
