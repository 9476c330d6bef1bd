"""``irene estimate MODEL [--gpu GPU] ...`` without ``--predictor``: every node's energy, time
and power on a named GPU from the hardware model (:mod:`irene.estimate_gpu`).

The trace of one call is kept in the user's cache directory and reused when the same call is
asked again (:mod:`irene.tracing.tree_cache`; ``IRENE_CACHE_DIR=off`` switches it off). The
garbage collector is paused while torch and transformers are imported and the model traced
(:func:`paused_gc`): none of that is garbage, and scanning it is a third of a first run.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
from collections.abc import Iterator
from typing import Any

from irene.cli import UserError
from irene.cli.options import console, depth, print_result


def run_gpu(args: argparse.Namespace) -> int:
    """Trace MODEL, cost every node on the GPU, print (or --json) and write -o/--html."""
    from irene.cli.options import check_outputs
    from irene.cli.phases import context_lens, workload
    from irene.estimate import EstimateError
    from irene.estimate_gpu import DEFAULT_GPU, DTYPES, GpuEstimateError, estimate_on_gpu
    from irene.hardware import GpuSpecError
    from irene.tracing.tree_cache import default_cache_dir

    if args.device != "cpu":
        raise UserError("--device: the GPU estimate traces on the meta device; name the GPU "
                        "with --gpu (or --gpu-spec FILE)")
    if args.dtype is not None and args.dtype not in DTYPES:
        raise UserError(f"--dtype {args.dtype}: per-node GPU estimates take "
                        f"{', '.join(DTYPES)}")
    generation = args.prompt_len is not None  # the modes' options: irene.cli.estimate.run
    call = None if generation else workload(args, args.batch_size, args.seq_len,
                                            *context_lens(args))
    phase = {"phase": call.phase, "optimizer": call.optimizer} if call else {"phase": "forward"}
    context_len = call.context_len if call else 0
    if getattr(args, "steps", None) is not None:
        raise UserError("--steps applies with --predictor (a training-step breakdown)")
    if getattr(args, "plot", None):
        raise UserError("--plot applies with --predictor")
    check_outputs(args)
    out = console()
    notes = console(stderr=True) if args.json or args.quiet else out
    if not args.gpu and not args.gpu_spec:
        notes.print(f"note: no --gpu given: estimating on {DEFAULT_GPU}", style="yellow")
    try:
        with paused_gc():
            estimate = estimate_on_gpu(
                args.model_name, args.batch_size, args.seq_len, gpu=args.gpu,
                gpu_spec_file=args.gpu_spec, runtime=args.runtime,
                dtype=args.dtype or "float32", context_len=context_len,
                prompt_len=args.prompt_len, new_tokens=args.new_tokens, attn=args.attn,
                hub=not args.offline, progress=False,
                warn=lambda text: notes.print(text, style="yellow"),
                trace_cache=default_cache_dir(), **phase)
    except (GpuEstimateError, GpuSpecError, EstimateError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    if estimate.generation is not None:
        show_generation(estimate, args, out, notes)
    else:
        show_call(estimate, args, out, notes)
    write_outputs(estimate, args, notes)
    return 0


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Run the block with the cyclic garbage collector off, then freeze what exists (it is
    never scanned again: the imported modules, the model, the trees) and switch it back on as
    it was. Importing torch and transformers allocates hundreds of thousands of long-lived
    objects, and every full collection scans them all (about 0.5 s of CPU over a first run),
    as does the collection at interpreter exit (about 0.9 s); the garbage of one estimate
    (about 10 000 objects) stays frozen with them."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def node_rows(tree: Any, max_depth: int | None) -> list[dict[str, Any]]:
    """Every node down to ``max_depth`` levels below the root (None: all), depth first:
    scope, types, level, energy (J), time (s), power (W)."""
    rows = []

    def visit(node: Any, level: int) -> None:
        rows.append({"scope": node.scope, "type": node.type,
                     "instance_type": node.instance_type, "level": level,
                     "energy_j": node.predicted_energy,
                     "time_s": node.extra["predicted_time_s"],
                     "power_w": node.extra["predicted_power_w"]})
        if max_depth is None or level < max_depth:
            for child in node.children:
                visit(child, level + 1)

    visit(tree.root, 0)
    return rows


def header(estimate: Any) -> dict[str, Any]:
    """What the estimate is of and what it rests on (JSON-ready)."""
    return {"gpu": estimate.gpu.name, "runtime": estimate.runtime.name,
            "dtype": estimate.dtype, "data": estimate.provenance.source,
            "measured_error": estimate.provenance.error, "warnings": list(estimate.warnings)}


def show_call(estimate: Any, args: argparse.Namespace, out: Any, notes: Any) -> None:
    """The one-call table: every node's energy, time and power."""
    tree = estimate.tree
    root = tree.root
    rows = node_rows(tree, depth(args))
    data = {"model": tree.model_name, "batch_size": tree.batch_size, "seq_len": tree.seq_len,
            "phase": tree.meta.get("phase", "forward"), **header(estimate),
            "energy_j": root.predicted_energy, "energy_wh": root.predicted_energy / 3600.0,
            "time_s": root.extra["predicted_time_s"],
            "power_w": root.extra["predicted_power_w"], "nodes": rows}
    if print_result(args, data, float(root.predicted_energy)):
        _notes(estimate, notes)
        return
    from rich.markup import escape
    from rich.table import Table

    from irene.report.format import energy_text

    out.print(f"{escape(tree.model_name)} · batch {tree.batch_size} · seq {tree.seq_len} · "
              f"{tree.meta.get('phase', 'forward')} on {escape(estimate.gpu.name)} "
              f"({estimate.runtime.name}, {estimate.dtype})")
    out.print(f"energy {energy_text(root.predicted_energy, 4)} · "
              f"time {1e3 * root.extra['predicted_time_s']:.4g} ms · "
              f"power {root.extra['predicted_power_w']:.4g} W "
              f"(board limit {estimate.gpu.power_limit_w:g} W)")
    table = Table(show_edge=False, box=None, pad_edge=False)
    for name, justify in (("node", "left"), ("type", "left"), ("energy J", "right"),
                          ("time ms", "right"), ("power W", "right")):
        table.add_column(name, justify=justify)
    for row in rows:
        table.add_row(escape("  " * row["level"] + row["scope"]),
                      escape(row["instance_type"]), f"{row['energy_j']:.4g}",
                      f"{1e3 * row['time_s']:.4g}", f"{row['power_w']:.4g}")
    out.print(table)
    _notes(estimate, notes)


def show_generation(estimate: Any, args: argparse.Namespace, out: Any, notes: Any) -> None:
    """A generation: the prefill and decode energies (J) per phase and per token."""
    gen = estimate.generation
    if print_result(args, {**gen.to_json(depth=depth(args), top=args.top), **header(estimate)},
                    float(gen.total_j)):
        _notes(estimate, notes)
        return
    from irene.report.generation import render_generation

    render_generation(gen, out, depth=depth(args), top=args.top)
    out.print(f"on {estimate.gpu.name} ({estimate.runtime.name}, {estimate.dtype})")
    _notes(estimate, notes)


def _notes(estimate: Any, notes: Any) -> None:
    notes.print(f"data: {estimate.provenance.source}")
    notes.print(f"measured error: {estimate.provenance.error}")
    for line in estimate.warnings:
        notes.print(line, style="yellow")


def write_outputs(estimate: Any, args: argparse.Namespace, notes: Any) -> None:
    """-o TREES.jsonl and --html REPORT.html (and --plot for a generation)."""
    trees = [estimate.tree] if estimate.tree is not None else \
        [estimate.generation.prefill, *estimate.generation.decode_trees]
    if args.output:
        from irene.tree import write_trees

        write_trees(trees, args.output)
        notes.print(f"wrote the estimated tree(s) to {args.output}")
    if args.html:
        from irene.report.html import write_report

        write_report(trees, args.html)
        notes.print(f"wrote {args.html}")
