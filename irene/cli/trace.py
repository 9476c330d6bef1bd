"""``irene trace MODEL -o OUT``: one tree per batch size x sequence length (x context length for
a decode step), appended to OUT."""

from __future__ import annotations

import argparse
import itertools
import sys
import warnings
from pathlib import Path

from irene.cli import UserError
from irene.cli.options import (
    add_json_option,
    add_trace_options,
    dimension,
    int_list,
    print_result,
)
from irene.cli.phases import add_phase_arguments, context_lens, workload
from irene.limits import MAX_PLAN_ITEMS
from irene.measure.options import add_measure_arguments, protocol_from_args
from irene.workload import Workload, device_problem, replay_problem


def add_parser(sub: argparse._SubParsersAction) -> None:
    trace = sub.add_parser(
        "trace", help="trace a transformer into energy trees (one per batch size x seq length)",
        description="Build MODEL with random weights (no download), run it once per batch size "
                    "x sequence length and append one IrEne tree per combination to OUTPUT "
                    "(.jsonl, or .jsonl.gz). Trees already in OUTPUT with the same settings "
                    "(model, shape, phase, optimizer, dtype, attention, device, schema, meter, "
                    "protocol) are skipped (resume); one irene process writes OUTPUT at a "
                    "time. --phase train traces one training step instead of a forward pass.")
    trace.add_argument("model", metavar="MODEL",
                       help="built-in name (see `irene models`), local directory or config.json, "
                            "or a Hub name when online")
    trace.add_argument("-o", "--output", required=True, type=Path, help="JSONL file to append to")
    trace.add_argument("--batch-size", type=dimension, default=None,
                       help="batch size (default 8)")
    trace.add_argument("--seq-len", type=dimension, default=None,
                       help="sequence length (default 128)")
    trace.add_argument("--batch-sizes", type=int_list, default=None, metavar="B1,B2,..",
                       help="sweep: comma-separated batch sizes")
    trace.add_argument("--seq-lens", type=int_list, default=None, metavar="S1,S2,..",
                       help="sweep: comma-separated sequence lengths")
    add_phase_arguments(trace)
    add_trace_options(trace)
    trace.add_argument("--no-timing", action="store_true",
                       help="skip the isolated replays: no times_mean/cpu/mem; the model is "
                            "built on the meta device (no weights in memory, much faster)")
    trace.add_argument("--offline", action="store_true",
                       help="never look MODEL up on the Hub")
    add_measure_arguments(trace)
    add_json_option(trace, quiet="the number of trees written (0: all were already there)")
    trace.set_defaults(func=run)


def workloads(args: argparse.Namespace) -> list[Workload]:
    """The workloads asked for, one per batch size x seq len x context len: sweep lists, else
    single values (8 x 128, context 0; a decode step: seq len 1)."""
    if args.batch_sizes is not None and args.batch_size is not None:
        raise UserError("give --batch-size or --batch-sizes, not both")
    if args.seq_lens is not None and args.seq_len is not None:
        raise UserError("give --seq-len or --seq-lens, not both")
    batches = args.batch_sizes or [args.batch_size or 8]
    default_seq = 1 if args.phase == "decode" else 128
    seqs = args.seq_lens or [args.seq_len or default_seq]
    contexts = context_lens(args)
    count = len(set(batches)) * len(set(seqs)) * len(set(contexts))
    if count > MAX_PLAN_ITEMS:  # counted before the sweep is expanded
        raise UserError(f"--batch-sizes x --seq-lens x --context-lens make {count} trees, more "
                        f"than the {MAX_PLAN_ITEMS} one sweep may make: split the sweep")
    return [workload(args, *cell) for cell in itertools.product(
        dict.fromkeys(batches), dict.fromkeys(seqs), dict.fromkeys(contexts))]


def _open_meter(args: argparse.Namespace):  # -> Meter | None
    from irene.measure import open_meter

    problem = replay_problem(args.meter.strip().lower() != "none", not args.no_timing)
    if problem:
        raise UserError(f"--meter {args.meter}: {problem}: drop --no-timing")
    return open_meter(args.meter)


def run(args: argparse.Namespace) -> int:
    from irene.files import exclusive_lock
    from irene.tracing.registry import check_call_size
    from irene.tree import check_appendable, repair_torn_tail

    todo_all = workloads(args)
    for w in todo_all:  # the token bound, before any work
        try:
            check_call_size(None, w.batch_size, w.seq_len, w.context_len, allocates=False)
        except ValueError as exc:
            raise UserError(str(exc)) from exc
    check_appendable(args.output, "trace")
    try:
        protocol = protocol_from_args(args)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    problem = None if args.no_timing else device_problem(args.device)  # features only: meta
    if problem:
        raise UserError(f"--device {args.device}: {problem}")
    with exclusive_lock(args.output):
        repaired = repair_torn_tail(args.output)
        if repaired:
            print(repaired, file=sys.stderr)
        meter = _open_meter(args)
        try:
            written = _trace_all(args, todo_all, protocol, meter)
        finally:
            if meter is not None:
                meter.close()
    print_result(args, {"output": str(args.output), "model": args.model, "written": written,
                        "already": len(todo_all) - written}, written)
    return 0


def _trace_all(args: argparse.Namespace, todo_all: list[Workload], protocol, meter) -> int:
    """Trace and append the combinations not yet in the output; the number of trees written."""
    from tqdm import tqdm

    from irene.measure import MeasurementCache
    from irene.tracing import trace
    from irene.tracing.tracer import planned_key
    from irene.tree import append_tree, keys_in_file

    done = keys_in_file(args.output)
    schema = args.schema or "irene"
    todo = [w for w in todo_all
            if planned_key(args.model, w, schema=schema, timing=not args.no_timing, meter=meter,
                           protocol=protocol) not in done]
    if len(todo) < len(todo_all):
        print(f"{args.output}: {len(todo_all) - len(todo)} of {len(todo_all)} combinations "
              "already traced with these settings, skipping them", file=sys.stderr)
    if not todo:
        return 0
    model = _model(args, todo[0])
    cache = MeasurementCache(enabled=protocol.dedup)
    for w in tqdm(todo, desc=f"trace {args.model}", unit="tree"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                tree = trace(model, w, timing=not args.no_timing, meter=meter,
                             protocol=protocol, progress=not args.no_timing,
                             model_name=args.model, cache=cache, schema=schema,
                             hub=not args.offline)
            except ValueError as exc:
                where = f"{w.batch_size}x{w.seq_len}" + (f" context {w.context_len}"
                                                         if w.context_len else "")
                raise UserError(f"{args.model} {args.phase} at {where}: {exc}") from exc
        for item in caught:
            print(f"warning: {item.message}", file=sys.stderr)
        append_tree(tree, args.output)
    print(f"{args.output}: wrote {len(todo)} tree(s) of {args.model}", file=sys.stderr)
    return len(todo)


def _model(args: argparse.Namespace, workload: Workload):  # -> model or name
    """What the workloads are traced on: with replays, the model built once with weights on
    the device; features only, a training step's model on the meta device, else the (checked)
    name, so each trace builds it on the meta device (falling back to real weights if its
    forward pass reads tensor values)."""
    from irene import tracing

    if args.no_timing and workload.phase != "train":
        tracing.load_config(args.model, hub=not args.offline)
        return args.model
    return tracing.model_for(workload, args.model, hub=not args.offline,
                             device="meta" if args.no_timing else args.device)
