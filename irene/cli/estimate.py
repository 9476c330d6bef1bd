"""``irene estimate MODEL``: trace a model and predict where its energy goes (no meter)."""

from __future__ import annotations

import argparse

from irene.cli import UserError
from irene.cli.options import (
    add_force_option,
    add_json_option,
    add_trace_options,
    add_view_options,
    console,
    depth,
    positive_int,
    print_json,
)
from irene.cli.phases import add_generation_arguments, run_generation


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "estimate", help="trace a model and predict where its energy goes",
        description="Trace MODEL (features only, no meter) at one batch size and sequence "
                    "length, predict every node with a trained predictor and print the "
                    "breakdown. The tree is traced with the schema the predictor was trained on. "
                    "With --prompt-len and --new-tokens: the energy of generating text (a "
                    "prefill, then one decode step per new token), per phase and per token.")
    p.add_argument("model_name", metavar="MODEL",
                   help="built-in model name (see `irene models`), a directory with "
                        "config.json, or a config.json")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="sequences per call (required with --seq-len; a generation: default 1)")
    p.add_argument("--seq-len", type=positive_int, default=None,
                   help="tokens per sequence of one forward pass")
    add_generation_arguments(p)
    p.add_argument("--predictor", required=True, metavar="DIR",
                   help="a model directory written by `irene train`")
    add_trace_options(p, schema=False)
    add_view_options(p)
    add_json_option(p)
    p.add_argument("-o", "--output", metavar="TREES.jsonl",
                   help="also save the predicted tree (JSONL)")
    p.add_argument("--html", metavar="REPORT.html", help="also write an HTML report")
    p.add_argument("--offline", action="store_true", help="never look MODEL up on the Hub")
    add_force_option(p)
    p.set_defaults(func=run)


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse outputs that would destroy data, before any work: an existing trees file is only
    replaced with --force (estimate writes one tree)."""
    from irene.files import file_kind, guard_output

    if args.output:
        guard_output(args.output, kind="trees", force=args.force)
        if file_kind(args.output) == "trees" and not args.force:
            raise UserError(f"{args.output}: already holds trees; estimate writes one tree and "
                            "would replace them: give another path, or --force")
    if args.html:
        guard_output(args.html, kind="html", force=args.force)


def run(args: argparse.Namespace) -> int:
    from irene.estimate import EstimateError, estimate_tree

    if args.prompt_len is not None or args.new_tokens is not None:
        return run_generation(args)
    if args.batch_size is None or args.seq_len is None:
        raise UserError("give --batch-size and --seq-len (one forward pass), or --prompt-len and "
                        "--new-tokens (a generation)")
    from irene.report import energy_for
    from irene.report.breakdown import explain_tree
    from irene.report.terminal import render_breakdown
    from irene.tree import write_trees

    check_outputs(args)
    out = console()
    notes = console(stderr=True) if args.json else out  # keep stdout pure JSON with --json
    try:
        tree = estimate_tree(args.model_name, args.batch_size, args.seq_len, args.predictor,
                             device=args.device, dtype=args.dtype, attn=args.attn,
                             progress=not args.json, hub=not args.offline,
                             warn=lambda text: notes.print(text, style="yellow"))
    except (EstimateError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    breakdown = explain_tree(tree, source="predicted", depth=depth(args), top=args.top)
    if args.json:
        from irene.report.breakdown import breakdown_json

        print_json(breakdown_json(breakdown, note=energy_for(tree, breakdown.source)))
    else:
        render_breakdown(breakdown, out)
    if args.output:
        write_trees([tree], args.output)
        notes.print(f"wrote the predicted tree to {args.output}")
    if args.html:
        from irene.report.html import write_report

        write_report([tree], args.html)
        notes.print(f"wrote {args.html}")
    return 0
