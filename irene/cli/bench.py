"""``irene bench``: runtime engines and optimisations of one model, measured side by side."""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from irene.cli import UserError
from irene.cli.options import add_force_option, add_json_option, print_result, result_stream
from irene.measure.options import add_measure_arguments, protocol_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    from irene.bench.catalog import DEFAULT_VARIANTS, SUMMARIES

    width = max(len(name) for name in SUMMARIES)
    listing = "\n".join(f"  {name:<{width}}  {text}" for name, text in SUMMARIES.items())
    bench = sub.add_parser(
        "bench", help="measure runtime engines, precisions, quantisation and pruning side by side",
        description=textwrap.fill(
            "Measure variants of MODEL under one protocol on the same inputs: preparation "
            "cost, size on disk, peak memory, latency (median, p10-p90), throughput, energy per "
            "inference with a meter, and fidelity to PyTorch eager float32 (top-1 agreement, "
            "max/mean |logit diff|, KL). Variants that cannot run here say why in their row.",
            width=90),
        epilog="variants:\n" + listing,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_argument("model", metavar="MODEL",
                       help="built-in name (see `irene models`; random weights), or a local "
                            "directory (with weights: loaded with from_pretrained) or "
                            "config.json; never downloaded")
    bench.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), metavar="V1,V2,..",
                       help="comma-separated variants; eager (the reference) is always "
                            "measured (default: %(default)s; also: random-init, a broken "
                            "control)")
    bench.add_argument("--batch-size", type=int, default=1, help="sequences per inference "
                       "(default %(default)s)")
    bench.add_argument("--seq-len", type=int, default=128, help="tokens per sequence "
                       "(default %(default)s)")
    bench.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    add_measure_arguments(bench, default_runs=10, dedup=False)
    out = bench.add_argument_group("output")
    add_json_option(out, quiet="the median latency in s of the first variant that ran "
                               "(the reference, eager by default)")
    out.add_argument("-o", "--output", metavar="ROWS.jsonl|.csv",
                     help="write one row per variant (JSONL or CSV, by the suffix)")
    out.add_argument("--figure", metavar="FILE.png|.svg", help="draw latency, energy (or size) "
                     "and KL divergence per variant")
    out.add_argument("--html", metavar="PAGE.html",
                     help="write a self-contained HTML page with the table")
    add_force_option(out)
    bench.set_defaults(func=run_bench_command)


def _variants(text: str) -> list[str]:
    from irene.bench.variants import parse_variants

    try:
        return parse_variants(text)
    except ValueError as exc:
        raise UserError(f"--variants: {exc}") from exc


def _check_sizes(args: argparse.Namespace) -> None:
    """--batch-size and --seq-len from 1 to :data:`irene.limits.MAX_DIMENSION`, and their
    product within the tokens one call may hold (checked before the model is built)."""
    from irene.limits import MAX_DIMENSION
    from irene.tracing.registry import check_call_size

    for value, flag in ((args.batch_size, "--batch-size"), (args.seq_len, "--seq-len")):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be >= 1, got {value}")
        if value is not None and value > MAX_DIMENSION:
            raise UserError(f"{flag} must be at most {MAX_DIMENSION}, got {value}")
    try:
        check_call_size(None, args.batch_size, args.seq_len, allocates=False)
    except ValueError as exc:
        raise UserError(f"--batch-size x --seq-len: {exc}") from exc


def _check_outputs(args: argparse.Namespace) -> None:
    from irene.bench.report import check_output_suffixes

    try:
        check_output_suffixes(args.output, args.figure)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    from irene.files import guard_output

    model_files = [p for p in (Path(args.model), Path(args.model) / "config.json") if p.is_file()]
    row_kind = "csv" if args.output and args.output.lower().endswith(".csv") else "json"
    figure_kind = "svg" if args.figure and args.figure.lower().endswith(".svg") else "png"
    for path, kind in ((args.output, row_kind), (args.figure, figure_kind), (args.html, "html")):
        if path is not None:
            guard_output(path, kind=kind, inputs=model_files, force=args.force)


def check_device(device: str) -> None:
    import torch

    from irene.workload import device_problem

    try:
        kind = torch.device(device).type
    except RuntimeError as exc:
        raise UserError(f"--device {device}: {exc}") from exc
    problem = device_problem(device) if kind == "cuda" else None
    if problem:
        raise UserError(f"--device {device}: {problem}")
    if kind not in ("cpu", "cuda"):
        raise UserError(f"--device {device}: the bench runs on cpu or cuda")


def _check_model(model: str, seq_len: int) -> None:
    """The model's config loads, it has a language-model head, and seq_len fits its positions."""
    from irene.bench.run import lm_class
    from irene.tracing.registry import load_config, max_sequence_length

    config = load_config(model, hub=False)
    lm_class(config)
    limit = max_sequence_length(config)
    if limit is not None and seq_len > limit:
        raise UserError(f"--seq-len {seq_len} exceeds the {limit} positions of {model}")


def _protocol(args: argparse.Namespace) -> Any:
    try:
        return protocol_from_args(args)
    except ValueError as exc:
        raise UserError(str(exc)) from exc


def _open_meter(spec: str) -> Any:
    from irene.measure import MeterUnavailable, open_meter

    try:
        return open_meter(spec)
    except MeterUnavailable as exc:
        raise UserError(str(exc)) from exc


def _progress(names: Iterable[str]) -> Iterator[str]:
    from tqdm import tqdm

    bar = tqdm(list(names), desc="bench", unit="variant", file=sys.stderr)
    for name in bar:
        bar.set_postfix_str(name)
        yield name


def _console() -> Any:
    """A rich console; 160 columns when the output is not a terminal (files, pipes)."""
    import os

    from rich.console import Console

    wide = sys.stdout.isatty() or "COLUMNS" in os.environ
    return Console(width=None if wide else 160, highlight=False)


def run_bench_command(args: argparse.Namespace) -> int:
    from irene.bench.report import (
        plot_bench,
        render_table,
        run_json,
        write_bench_page,
        write_rows,
    )
    from irene.bench.run import run_bench

    variants = _variants(args.variants)
    _check_sizes(args)
    _check_outputs(args)
    check_device(args.device)
    protocol = _protocol(args)
    _check_model(args.model, args.seq_len)
    meter = _open_meter(args.meter)
    try:  # under --json/--quiet anything a library prints goes to stderr (result_stdout)
        run = run_bench(args.model, variants, batch_size=args.batch_size,
                        seq_len=args.seq_len, device=args.device, protocol=protocol,
                        meter=meter, progress=_progress)
    finally:
        if meter is not None:
            meter.close()
    ran = [r.latency_s for r in run.results if r.ok and r.latency_s is not None]
    if args.quiet and not ran:
        raise UserError(f"{args.model}: no variant ran, no latency to print")
    if args.json:  # the run as `irene report --bench` reads it back
        print(run_json(run), file=result_stream())
    elif not print_result(args, None, ran[0] if ran else 0.0):
        render_table(run, _console())
    if args.output:
        print(f"wrote {write_rows(run, args.output)}", file=sys.stderr)
    if args.figure:
        if any(r.ok for r in run.results):
            print(f"wrote {plot_bench(run, args.figure)}", file=sys.stderr)
        else:
            print(f"--figure {args.figure}: not written, no variant ran", file=sys.stderr)
    if args.html:
        print(f"wrote {write_bench_page(run, args.html)}", file=sys.stderr)
    return 0
