"""``irene trace`` (model -> trees, one per batch size x sequence length) and ``irene models``."""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

from irene.cli import UserError
from irene.measure.options import add_measure_arguments, protocol_from_args


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    trace = subparsers.add_parser(
        "trace", help="trace a transformer into energy trees (one per batch size x seq length)",
        description="Build MODEL with random weights (no download), run it once per batch size "
                    "x sequence length and append one IrEne tree per combination to OUTPUT; "
                    "combinations already in OUTPUT are skipped (resume).")
    trace.add_argument("model", metavar="MODEL",
                       help="built-in name (see `irene models`), local directory or config.json, "
                            "or a Hub name when online")
    trace.add_argument("-o", "--output", required=True, type=Path, help="JSONL file to append to")
    trace.add_argument("--batch-size", type=int, default=None, help="batch size (default 8)")
    trace.add_argument("--seq-len", type=int, default=None, help="sequence length (default 128)")
    trace.add_argument("--batch-sizes", type=_int_list, default=None, metavar="B1,B2,..",
                       help="sweep: comma-separated batch sizes")
    trace.add_argument("--seq-lens", type=_int_list, default=None, metavar="S1,S2,..",
                       help="sweep: comma-separated sequence lengths")
    trace.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    trace.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    trace.add_argument("--attn", default="eager", choices=["eager", "sdpa"],
                       help="eager: QK^T, softmax, xV as separate primitives (default); sdpa: "
                            "one fused scaled_dot_product_attention primitive")
    trace.add_argument("--no-timing", action="store_true",
                       help="skip the isolated replays: no times_mean/cpu/mem; the model is "
                            "built on the meta device (no weights in memory, much faster)")
    trace.add_argument("--schema", default="irene", metavar="NAME",
                       help="feature schema: irene (ours, default) or irene2021 (the leaves and "
                            "feature definitions of IrEne's published trees)")
    trace.add_argument("--offline", action="store_true",
                       help="never look MODEL up on the Hub")
    add_measure_arguments(trace)
    trace.set_defaults(func=run_trace)

    models = subparsers.add_parser("models", help="list the built-in model architectures",
                                   description="List the built-in architectures that `irene "
                                               "trace` builds without downloading anything.")
    models.add_argument("--no-params", action="store_true",
                        help="do not count parameters (faster)")
    models.set_defaults(func=run_models)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") \
            from exc
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def combinations(args: argparse.Namespace) -> list[tuple[int, int]]:
    """(batch size, seq len) pairs asked for: sweep lists, else single values (8 x 128)."""
    if args.batch_sizes is not None and args.batch_size is not None:
        raise UserError("give --batch-size or --batch-sizes, not both")
    if args.seq_lens is not None and args.seq_len is not None:
        raise UserError("give --seq-len or --seq-lens, not both")
    for value, flag in ((args.batch_size, "--batch-size"), (args.seq_len, "--seq-len")):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be >= 1, got {value}")
    batches = args.batch_sizes or [args.batch_size or 8]
    seqs = args.seq_lens or [args.seq_len or 128]
    return list(itertools.product(dict.fromkeys(batches), dict.fromkeys(seqs)))


def done_combinations(path: Path, model_name: str) -> set[tuple[int, int]]:
    """(batch size, seq len) pairs of ``model_name`` already in ``path`` (validated read)."""
    from irene.tree import iter_trees

    if not path.exists() or path.stat().st_size == 0:
        return set()
    return {(t.batch_size, t.seq_len) for t in iter_trees(path) if t.model_name == model_name}


def _protocol(args: argparse.Namespace):  # -> Protocol
    try:
        return protocol_from_args(args)
    except ValueError as exc:
        raise UserError(str(exc)) from exc


def _open_meter(args: argparse.Namespace):  # -> Meter | None
    from irene.measure import MeterUnavailable, open_meter

    if args.no_timing and args.meter.strip().lower() != "none":
        raise UserError("--meter needs the replays: drop --no-timing")
    try:
        return open_meter(args.meter)
    except MeterUnavailable as exc:
        raise UserError(str(exc)) from exc


def run_trace(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from irene.measure import MeasurementCache
    from irene.tracing import trace_model
    from irene.tree import append_tree

    schema = _schema(args.schema)
    todo_all = combinations(args)
    done = done_combinations(args.output, args.model)
    todo = [c for c in todo_all if c not in done]
    if done and len(todo) < len(todo_all):
        print(f"{args.output}: {len(todo_all) - len(todo)} of {len(todo_all)} combinations "
              f"already traced, skipping them", file=sys.stderr)
    if not todo:
        return 0
    if args.device.startswith("cuda") and not args.no_timing:  # features only: meta device
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"--device {args.device}: torch sees no CUDA device")
    protocol = _protocol(args)
    meter = _open_meter(args)
    try:
        model = _model_to_trace(args)
        cache = MeasurementCache(enabled=protocol.dedup)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        for batch_size, seq_len in tqdm(todo, desc=f"trace {args.model}", unit="tree"):
            try:
                tree = trace_model(model, batch_size, seq_len, device=args.device,
                                   dtype=args.dtype, attn=args.attn,
                                   timing=not args.no_timing, meter=meter, protocol=protocol,
                                   progress=not args.no_timing, model_name=args.model,
                                   cache=cache, schema=schema, hub=not args.offline)
            except ValueError as exc:
                raise UserError(f"{args.model} at {batch_size}x{seq_len}: {exc}") from exc
            append_tree(tree, args.output)
    finally:
        if meter is not None:
            meter.close()
    print(f"{args.output}: wrote {len(todo)} tree(s) of {args.model}", file=sys.stderr)
    return 0


def _model_to_trace(args: argparse.Namespace):  # -> str | PreTrainedModel
    """What ``trace_model`` gets: with replays, the model built once with weights on the
    device; features only, its (checked) name: each trace builds it on the meta device, and
    falls back to real weights if its forward pass reads tensor values."""
    from irene.tracing import UnknownModelError, build_model, load_config

    try:
        if args.no_timing:
            load_config(args.model, hub=not args.offline)
            return args.model
        return build_model(args.model, attn=args.attn, dtype=args.dtype, device=args.device,
                           hub=not args.offline)
    except UnknownModelError as exc:
        raise UserError(str(exc)) from exc


def _schema(name: str) -> str:
    from irene.tracing.schemas import SCHEMAS

    if name not in SCHEMAS:
        raise UserError(f"--schema: unknown schema {name!r}; known: {', '.join(SCHEMAS)}")
    return name


def run_models(args: argparse.Namespace) -> int:
    from irene.tracing.registry import ALIASES, BUILTIN_MODELS, parameter_count

    rows = []
    for name, factory in BUILTIN_MODELS.items():
        config = factory()
        params = "" if args.no_params else f"{parameter_count(config) / 1e6:,.1f}M"
        aliases = ", ".join(a for a, target in ALIASES.items() if target == name)
        rows.append((name, config.model_type, params, aliases))
    width = max(len(r[0]) for r in rows)
    print(f"{'MODEL':<{width}}  {'TYPE':<11} {'PARAMS':>9}  ALIASES")
    for name, model_type, params, aliases in rows:
        print(f"{name:<{width}}  {model_type:<11} {params:>9}  {aliases}")
    return 0
