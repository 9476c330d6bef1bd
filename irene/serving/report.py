"""Printing a serving estimate: a terminal summary (rich) and JSON."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from irene.serving.estimate import ServingEstimate


def estimate_json(estimate: ServingEstimate) -> dict[str, Any]:
    """The estimate as JSON-ready data (units in the keys)."""
    return {"kind": "irene-serving-estimate", **estimate.to_json()}


def render_estimate(e: ServingEstimate, out: Any, top: int = 10) -> None:
    """Print ``e`` on the rich console ``out``: the totals, the breakdown, the distance to the
    measured data, warnings, and where the numbers come from."""
    from rich.markup import escape
    from rich.table import Table

    from irene.report.format import energy_text

    title = (f"{e.model} served with vLLM on {e.num_gpus} × {e.gpu} ({e.weight_format} weights,"
             f" {e.architecture}, {e.total_params / 1e9:.3g}B parameters, "
             f"{e.active_params / 1e9:.3g}B active)")
    out.print(f"[bold]{escape(title)}[/bold]")
    out.print(f"workload: {e.concurrency:g} sequences decoded together, {e.prompt_len:g}-token "
              f"prompts, {e.new_tokens:g} new tokens per request")
    totals = Table(show_header=False, box=None, padding=(0, 2))
    totals.add_row("energy per output token", f"[bold]{e.joules_per_token:.4g} J[/bold]")
    totals.add_row("energy per request", energy_text(e.joules_per_request, 4))
    totals.add_row("average power", f"{e.power_w:.0f} W ({e.power_per_gpu_w:.0f} W per GPU)")
    totals.add_row("throughput", f"{e.tokens_per_s:.0f} output tokens/s")
    totals.add_row("time per decode step", f"{e.seconds_per_step * 1e3:.1f} ms "
                   "(≈ inter-token latency)")
    out.print(totals)

    table = Table(title="where a token's energy goes (shares modelled, total fitted)",
                  title_justify="left")
    table.add_column("part")
    table.add_column("J/token", justify="right")
    table.add_column("share", justify="right")
    table.add_column("per layer (mean J/token)", justify="right")
    per_layer = _layer_means(e.per_layer)
    parts = sorted(((k, v) for k, v in e.breakdown.items() if v > 0), key=lambda kv: -kv[1])
    for name, joules in parts[:top]:
        layer = per_layer.get(name)
        table.add_row(name, f"{joules:.3g}", f"{joules / e.joules_per_token:.1%}",
                      "" if layer is None else f"{layer[0]:.3g} × {layer[1]} layers")
    out.print(table)

    d = e.distance
    nearest = d.get("nearest_measured_model")
    lines = [f"model measured: {'yes' if d['model_measured'] else 'no'}"]
    if nearest and not d["model_measured"]:
        lines.append(f"nearest measured model: {nearest['model']} "
                     f"({nearest['active_params_ratio']:.2g}× its active, "
                     f"{nearest['total_params_ratio']:.2g}× its total parameters)")
    for key, label in (("batch", "concurrency"), ("gpus", "GPUs"), ("context", "mean context"),
                       ("active_params", "active parameters")):
        span = d.get(f"{key}_range")
        if span:
            lines.append(f"{label}: {_short(d[key])} (measured {_short(span[0])}–"
                         f"{_short(span[1])})")
    out.print("distance to the measurements: " + "; ".join(lines))
    for warning in e.warnings:
        out.print(f"warning: {warning}", style="yellow")
    for note in e.notes:
        out.print(f"note: {note}")
    p = e.provenance
    out.print(f"learned from: {p['name']}, {p['license']} — {p['citation']}. {p['fit']}; "
              f"{p['fitted_vs_modelled']}.", style="dim")
    prompts = ", ".join(f"{k} {v:g}" for k, v in p["prompt_tokens_assumed"].items())
    out.print(f"prompt lengths assumed for the measured tasks (not in the data): {prompts} "
              "tokens. GPU energy only (no CPU, memory, network, cooling).", style="dim")


def _layer_means(per_layer: list[dict[str, Any]]) -> dict[str, tuple[float, int]]:
    """Mean J/token per decoder layer holding each module, and how many layers hold it."""
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for entry in per_layer:
        if entry["layer"] < 0:
            continue
        for key, value in entry.items():
            if key != "layer":
                sums[key] += value
                counts[key] += 1
    return {k: (sums[k] / counts[k], counts[k]) for k in sums}


def _short(value: float) -> str:
    if value >= 1e9:
        return f"{value / 1e9:.3g}B"
    return f"{value:.4g}"


