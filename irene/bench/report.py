"""Showing a :class:`~irene.bench.run.BenchRun`: terminal table, JSONL/CSV rows, a figure, and
an HTML section (plus a self-contained page holding it).

Every view shows the same columns: preparation time (and energy with a meter), size on disk,
peak memory, latency per inference (median and p10-p90 over runs), speed relative to the
reference, throughput, energy per inference (only with a meter: without one the column is left
out and a line says so), and fidelity to the reference (top-1 agreement, max |logit
difference|, KL divergence). Rows of variants that could not run say why. Energies from the
simulated test meter carry the synthetic-data label.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Any

from irene.bench.run import BenchRun, VariantResult
from irene.bench.variants import REFERENCE
from irene.files import atomic_write
from irene.report import SYNTHETIC_LABEL
from irene.report.format import format_energy

ROW_FORMATS = (".jsonl", ".csv")
FIGURE_FORMATS = (".png", ".svg")
NO_METER_LINE = ("energy: not measured (no meter); on a GPU add --device cuda --meter nvml, on "
                 "a CPU with RAPL --meter rapl")


# --------------------------------------------------------------------------------------------
# numbers as text


def format_seconds(seconds: float | None, digits: int = 3) -> str:
    """Seconds as ``"612 ms"``, ``"1.23 s"``, ``"45.6 µs"``; None -> ``"—"``."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if abs(seconds) >= scale:
            return f"{_sig(seconds / scale, digits)} {unit}"
    return f"{_sig(seconds / 1e-9, digits)} ns"


def format_spread(median: float | None, low: float | None, high: float | None) -> str:
    """``"2.23 ms (1.80–2.41)"``: a median in seconds and its p10–p90 in the median's unit."""
    if median is None or low is None or high is None or not median > 0:
        return format_seconds(median)
    scale, unit = next(((s, u) for s, u in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"))
                        if median >= s), (1e-9, "ns"))
    decimals = max(0, 2 - int(math.floor(math.log10(median / scale))))
    return (f"{median / scale:.{decimals}f} {unit} "
            f"({low / scale:.{decimals}f}–{high / scale:.{decimals}f})")


def format_bytes(size: int | None) -> str:
    """Bytes as ``"475 MB"`` / ``"1.20 GB"`` (decimal units); None -> ``"—"``."""
    if size is None:
        return "—"
    for scale, unit in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if size >= scale:
            return f"{_sig(size / scale, 3)} {unit}"
    return f"{size} B"


def format_sci(value: float | None) -> str:
    """A fidelity number: ``"0"``, ``"3.1e-06"``, ``"0.0253"``; None -> ``"—"``."""
    if value is None:
        return "—"
    if value == 0:
        return "0"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.2g}" if abs(value) < 1e-3 else _sig(value, 3)


def _sig(value: float, digits: int) -> str:
    """``value`` with ``digits`` significant digits, without an exponent for 1e-3..1e6."""
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(value)))))
    return f"{value:.{decimals}f}"


def speedup(result: VariantResult, reference: VariantResult | None) -> float | None:
    """Reference latency / this latency (2.0: twice as fast); None when either is missing."""
    if reference is None or reference.latency_s is None or result.latency_s is None:
        return None
    return reference.latency_s / result.latency_s if result.latency_s > 0 else None


def reference_result(run: BenchRun) -> VariantResult | None:
    return next((r for r in run.results if r.variant == REFERENCE and r.ok), None)


def describe_run(run: BenchRun) -> str:
    """One line: model, weights, input size, device, threads, protocol, load."""
    timing = run.environment.get("timing_conditions") or {}
    loads = [timing.get("load_before"), timing.get("load_after")]
    load_text = (f", load {loads[0]:.2f} before / {loads[1]:.2f} after"
                 if None not in loads else "")
    gpu = run.environment.get("gpu")
    where = f"{run.device} ({gpu})" if gpu else f"{run.device} ({run.environment.get('processor')})"
    return (f"{run.model} ({run.model_class}, {run.num_parameters / 1e6:,.1f}M parameters, "
            f"{run.weights}); batch {run.batch_size} x {run.seq_len} tokens per inference; "
            f"{where}, {run.threads} thread(s); {run.protocol.get('runs')} runs, median, "
            f"warm-up {run.protocol.get('warmup')}; meter {run.meter}{load_text}")


def table_columns(run: BenchRun) -> list[str]:
    """Column titles, in order (energy columns only when a meter measured energy)."""
    columns = ["variant", "prep"]
    if run.has_energy:
        columns.append("prep energy")
    columns += ["size", "peak mem", "latency (p10–p90)", "vs eager", "seq/s"]
    if run.has_energy:
        columns.append("energy/inf")
    columns += ["top-1", "max |Δlogit|", "KL", "notes"]
    return columns


def table_cells(run: BenchRun, result: VariantResult) -> list[str]:
    """The row's cells as text, matching :func:`table_columns`."""
    if not result.ok:
        blanks = len(table_columns(run)) - 2
        return [result.variant, *(["—"] * blanks), f"{result.status}: {result.reason}"]
    ref = reference_result(run)
    gain = speedup(result, ref)
    cells = [result.variant, format_seconds(result.prep_time_s)]
    if run.has_energy:
        cells.append(format_energy(result.prep_energy_j))
    cells += [format_bytes(result.size_bytes), format_bytes(result.peak_mem_bytes),
              format_spread(result.latency_s, result.latency_p10_s, result.latency_p90_s),
              "—" if gain is None else f"{gain:.2f}×",
              "—" if result.throughput_seq_s is None else _sig(result.throughput_seq_s, 3)]
    if run.has_energy:
        cells.append(format_energy(result.energy_j))
    cells += ["—" if result.top1_agreement is None else f"{100 * result.top1_agreement:.1f} %",
              format_sci(result.max_abs_logit_diff), format_sci(result.kl_divergence),
              result.dtype if result.dtype and result.dtype != "float32" else ""]
    return cells


def footer_lines(run: BenchRun) -> list[str]:
    """What the table needs said below it: no meter, untrusted energies, each variant's notes."""
    lines = [f"timing: {w}" for w in run.warnings]
    if run.simulated:
        lines.append(f"{SYNTHETIC_LABEL}: the energies come from the simulated test meter")
    if not run.has_energy:
        lines.append(NO_METER_LINE)
    for r in run.results:
        if r.ok and r.energy_trusted is False:
            lines.append(f"{r.variant}: energy per inference untrusted (a window was too short "
                         "for the meter, or idle subtraction left nothing)")
        if r.ok and r.prep_energy_trusted is False:
            lines.append(f"{r.variant}: preparation energy untrusted (shorter than the meter's "
                         "update period)")
        if r.ok and r.notes:
            lines.append(f"{r.variant}: " + "; ".join(r.notes))
    return lines


# --------------------------------------------------------------------------------------------
# terminal


def render_table(run: BenchRun, console: Any = None) -> None:
    """Print the comparison as a rich table, with the run's description above and the notes
    below."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console if console is not None else Console(highlight=False)
    columns = table_columns(run)
    table = Table(title=f"irene bench · {escape(run.model)}", caption=escape(describe_run(run)),
                  caption_justify="left", header_style="bold")
    for name in columns:
        numeric = name not in ("variant", "notes")
        table.add_column(name, justify="right" if numeric else "left",
                         overflow="fold", no_wrap=name in ("variant", "latency (p10–p90)"))
    for result in run.results:
        style = None if result.ok else "dim"
        table.add_row(*table_cells(run, result), style=style)
    console.print(table)
    for line in footer_lines(run):
        console.print(f"  {line}", style="red" if line.startswith(SYNTHETIC_LABEL) else None)


def markdown_table(run: BenchRun) -> str:
    """The table in Markdown (for a README or an issue), notes as a list below."""
    columns = table_columns(run)
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---" if c in ("variant", "notes") else "--:" for c in columns) + "|"]
    for result in run.results:
        lines.append("| " + " | ".join(c.replace("|", "\\|")
                                       for c in table_cells(run, result)) + " |")
    return "\n".join(lines + [""] + [f"- {line}" for line in footer_lines(run)]) + "\n"


# --------------------------------------------------------------------------------------------
# rows and JSON


def rows_text(run: BenchRun, suffix: str) -> str:
    """The rows as JSONL (one JSON object per variant) or CSV (notes joined by ``"; "``)."""
    rows = run.rows()
    if suffix == ".jsonl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if suffix == ".csv":
        from irene.export import csv_text

        return csv_text(list(rows[0]), [{k: "; ".join(v) if isinstance(v, list) else v
                                         for k, v in row.items()} for row in rows])
    raise ValueError(f"rows are written as {' or '.join(ROW_FORMATS)}, not {suffix!r}")


def write_rows(run: BenchRun, path: str | os.PathLike) -> Path:
    """Write the rows to ``path`` (.jsonl or .csv, by its suffix), atomically."""
    path = Path(path)
    text = rows_text(run, path.suffix.lower())
    with atomic_write(path) as handle:
        handle.write(text)
    return path


def run_json(run: BenchRun) -> str:
    """The whole run (settings, environment, results) as indented JSON."""
    return json.dumps(run.to_dict(), indent=2, ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# figure


def plot_bench(run: BenchRun, path: str | os.PathLike) -> Path:
    """A figure of the variants that ran: latency (median, p10-p90 whiskers), energy per
    inference (or, without a meter, size on disk), and KL divergence to the reference (log
    scale; exact zeros drawn at the axis floor). PNG or SVG by the suffix; written atomically."""
    from matplotlib.figure import Figure

    path = Path(path)
    fmt = path.suffix.lower()
    if fmt not in FIGURE_FORMATS:
        raise ValueError(f"{path}: figures are written as {' or '.join(FIGURE_FORMATS)}")
    ok = [r for r in run.results if r.ok]
    if not ok:
        raise ValueError("no variant ran: nothing to plot")
    names = [r.variant for r in ok]
    figure = Figure(figsize=(13, 0.45 * len(ok) + 1.8), layout="constrained")
    axes = figure.subplots(1, 3, sharey=True)
    ys = list(range(len(ok)))

    latency = [1e3 * r.latency_s for r in ok]
    low = [max(v - 1e3 * r.latency_p10_s, 0) for v, r in zip(latency, ok, strict=True)]
    high = [max(1e3 * r.latency_p90_s - v, 0) for v, r in zip(latency, ok, strict=True)]
    axes[0].barh(ys, latency, xerr=[low, high], color="#2f6fb3", capsize=3)
    axes[0].set_xlabel("latency per inference (ms; median, p10–p90)")
    if run.has_energy:
        axes[1].barh(ys, [1e3 * (r.energy_j or 0) for r in ok], color="#2e9e5b")
        axes[1].set_xlabel("energy per inference (mJ)")
    else:
        axes[1].barh(ys, [(r.size_bytes or 0) / 1e6 for r in ok], color="#7f8c8d")
        axes[1].set_xlabel("size on disk (MB) — no meter: energy not measured")
    kl = [r.kl_divergence or 0.0 for r in ok]
    positive = [v for v in kl if v > 0]
    floor = min(positive) / 10 if positive else 1e-12
    axes[2].barh(ys, [max(v, floor) for v in kl], color="#c0392b")
    axes[2].set_xscale("log")
    axes[2].set_xlim(left=floor)
    for y, value in zip(ys, kl, strict=True):
        if value == 0:
            axes[2].text(floor * 1.5, y, "0 (identical)", va="center", fontsize=8)
    axes[2].set_xlabel("KL divergence to eager float32 (nats, log)")
    axes[0].set_yticks(ys, names)
    axes[0].invert_yaxis()
    for axis in axes:
        axis.grid(axis="x", alpha=0.3)
    title = (f"{run.model} · batch {run.batch_size} × {run.seq_len} · {run.device} · "
             f"{run.threads} thread(s) · {run.protocol.get('runs')} runs")
    if run.simulated:
        title = f"{SYNTHETIC_LABEL}\n{title}"
    figure.suptitle(title, color="#c0392b" if run.simulated else "black")
    metadata = {"Date": None} if fmt == ".svg" else {}
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format=fmt.lstrip("."), dpi=150, metadata=metadata)
    return path


# --------------------------------------------------------------------------------------------
# HTML


def bench_section_html(run: BenchRun) -> str:
    """An HTML fragment (``<section id=bench>``) showing the comparison: the settings, the
    table with a bar of each variant's latency, the notes, and how to read it. It uses the
    report page's style sheet classes (``card``, ``table.data``, ``sharebar``)."""
    columns = table_columns(run)
    ok = [r for r in run.results if r.ok and r.latency_s]
    slowest = max((r.latency_s for r in ok), default=0.0) or 1.0
    head = "".join(f"<th{'' if c in ('variant', 'notes') else ' class=num'}>{html.escape(c)}</th>"
                   for c in columns)
    body = []
    for result in run.results:
        cells = table_cells(run, result)
        parts = []
        for name, cell in zip(columns, cells, strict=True):
            if name == "latency (p10–p90)" and result.ok and result.latency_s:
                width = 100 * result.latency_s / slowest
                parts.append(f"<td class=num><div class=share><span class=sharebar>"
                             f"<span style='width:{width:.1f}%'></span></span>"
                             f"<span>{html.escape(cell)}</span></div></td>")
            elif name in ("variant", "notes"):
                tag = "<b>{}</b>" if name == "variant" else "{}"
                parts.append(f"<td title='{html.escape(result.summary, quote=True)}'>"
                             + tag.format(html.escape(cell)) + "</td>")
            else:
                parts.append(f"<td class=num>{html.escape(cell)}</td>")
        style = "" if result.ok else " class=unavailable"
        body.append(f"<tr{style}>{''.join(parts)}</tr>")
    notes = "".join(f"<li>{html.escape(line)}</li>" for line in footer_lines(run))
    banner = (f"<p class=note><b>{html.escape(SYNTHETIC_LABEL)}</b>: these energies come from "
              "the simulated test meter.</p>" if run.simulated else "")
    return (
        f"<section id=bench class=card>{_SECTION_STYLE}<h2>Runtime engines and optimisations · "
        f"{html.escape(run.model)}</h2>{banner}"
        f"<p class=hint>{html.escape(describe_run(run))}</p>"
        f"<table class=data><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody>"
        f"</table><ul class=hint>{notes}</ul>"
        f"<p class=hint>{html.escape(HOW_TO_READ)}</p></section>")


#: the few rules the section adds to the report page's style sheet (travels with the fragment)
_SECTION_STYLE = ("<style>#bench table.data td{vertical-align:top}"
                  "#bench tr.unavailable td{color:var(--muted)}"
                  "#bench .share{justify-content:flex-end}"
                  "#bench .sharebar{max-width:90px;min-width:60px}"
                  "#bench td:first-child{white-space:nowrap}</style>")

HOW_TO_READ = (
    "One inference is one forward pass over the batch. prep: the optimisation's own cost "
    "(export, compilation, quantisation, pruning), paid once. size: the saved artefact on disk. "
    "peak mem: peak resident memory (CPU) or torch-allocated memory (CUDA) while serving, above "
    "the usage before the variant was made. latency: median over runs, p10–p90 in brackets; "
    "vs eager: the reference's latency divided by this one (above 1 is faster). Fidelity "
    "compares the variant's logits with eager float32 on the same inputs: top-1 agreement of the "
    "predicted tokens, the largest absolute logit difference, and KL(reference || variant) in "
    "nats. With random weights the outputs carry no task meaning: read fidelity as 'computes "
    "the same function'; the random-init control shows the level of an unrelated model.")


def build_bench_page(run: BenchRun) -> str:
    """A whole self-contained HTML page (inline CSS, no URL) holding the bench section."""
    from irene import __version__ as version
    from irene.report.html import static_page

    title = f"irene bench · {run.model}"
    if run.simulated:
        title = f"{SYNTHETIC_LABEL} · {title}"
    return static_page(title, bench_section_html(run), subtitle=f"generated by irene {version}")


def write_bench_page(run: BenchRun, path: str | os.PathLike) -> Path:
    """Write :func:`build_bench_page` to ``path`` atomically."""
    path = Path(path)
    text = build_bench_page(run)
    with atomic_write(path) as handle:
        handle.write(text)
    return path


def check_output_suffixes(rows: str | None, figure: str | None) -> None:
    """ValueError naming the option whose file suffix cannot be written."""
    if rows is not None and Path(rows).suffix.lower() not in ROW_FORMATS:
        raise ValueError(f"-o {rows}: rows are written as {' or '.join(ROW_FORMATS)}")
    if figure is not None and Path(figure).suffix.lower() not in FIGURE_FORMATS:
        raise ValueError(f"--figure {figure}: figures are written as "
                         f"{' or '.join(FIGURE_FORMATS)}")
