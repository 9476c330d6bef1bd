"""``irene estimate MODEL --batch-size B --seq-len S --predictor DIR``: one call (a forward
pass, a prefill, a decode step or a training step) traced and predicted node by node
(:func:`irene.estimate.estimate_tree`)."""

from __future__ import annotations

import argparse

from irene.cli import UserError
from irene.cli.options import check_outputs, console, depth, print_result
from irene.cli.phases import context_lens, workload


def run_call(args: argparse.Namespace) -> int:
    """Trace MODEL's call (--batch-size, --seq-len, --phase), predict every node with
    --predictor, print the breakdown (or --json) and write -o/--html."""
    from irene.estimate import EstimateError, estimate_tree
    from irene.report import energy_for
    from irene.report.breakdown import explain_tree
    from irene.report.terminal import render_breakdown
    from irene.tree import write_trees

    (context_len,) = context_lens(args)
    call = workload(args, args.batch_size, args.seq_len, context_len)
    if args.steps is not None and call.phase != "train":
        raise UserError("--steps needs --phase train (energy of N training steps)")
    check_outputs(args)
    out = console()
    notes = console(stderr=True) if args.json else out  # keep stdout pure JSON with --json
    try:
        tree = estimate_tree(args.model_name, call.batch_size, call.seq_len, args.predictor,
                             device=call.device, dtype=call.dtype, attn=call.attn,
                             progress=not (args.json or args.quiet), hub=not args.offline,
                             warn=lambda text: notes.print(text, style="yellow", markup=False),
                             phase=call.phase, context_len=call.context_len,
                             optimizer=call.optimizer)
    except (EstimateError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    breakdown = explain_tree(tree, source="predicted", depth=depth(args), top=args.top)
    split = None
    if call.phase == "train":
        from irene.report.training import training_split

        split = training_split(tree, source="predicted", depth=depth(args) or 3,
                               steps=args.steps or 1)
    if args.json or args.quiet:
        from irene.report.breakdown import breakdown_json

        data = breakdown_json(breakdown, note=energy_for(tree, breakdown.source))
        if split is not None:
            from irene.report.training import split_json

            data["training"] = split_json(split, top=args.top)
        print_result(args, data, breakdown.total_j * (args.steps or 1))
    else:
        render_breakdown(breakdown, out)
        if split is not None:
            from irene.report.training import render_training

            render_training(split, out, top=args.top)
    if args.output:
        write_trees([tree], args.output)
        notes.print(f"wrote the predicted tree to {args.output}")
    if args.html:
        from irene.report.html import write_report

        write_report([tree], args.html)
        notes.print(f"wrote {args.html}")
    return 0
