"""``irene estimate MODEL --prompt-len P --new-tokens N --predictor DIR``: the energy of
generating text, a prefill then one decode step per new token (:mod:`irene.generation`)."""

from __future__ import annotations

import argparse

from irene.cli import UserError
from irene.cli.options import check_outputs


def run_generation(args: argparse.Namespace) -> int:
    """``irene estimate MODEL --prompt-len P --new-tokens N`` (both given: checked by
    :func:`irene.cli.estimate.run`): predict, print (or --json),
    and write the traced trees (-o), the HTML page (--html) and the figure (--plot)."""
    from irene.cli.options import console
    from irene.estimate import EstimateError
    from irene.files import guard_output
    from irene.generation import estimate_generation

    if args.seq_len is not None:
        raise UserError("--seq-len is for one forward pass; a generation takes --prompt-len and "
                        "--new-tokens")
    check_outputs(args)
    if args.plot:
        suffix = args.plot.rsplit(".", 1)[-1].lower()
        if suffix not in ("png", "svg"):
            raise UserError(f"--plot {args.plot}: figures are written as .png or .svg")
        guard_output(args.plot, kind=suffix, force=args.force)
    out = console()
    notes = console(stderr=True) if args.json else out
    try:
        estimate = estimate_generation(
            args.model_name, args.predictor, prompt_len=args.prompt_len,
            new_tokens=args.new_tokens, batch_size=args.batch_size or 1,
            tolerance_pct=args.decode_tolerance, device=args.device,
            dtype=args.dtype or "float32",
            attn=args.attn,
            progress=not (args.json or args.quiet), hub=not args.offline,
            warn=lambda text: notes.print(text, style="yellow", markup=False))
    except (EstimateError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    show_generation(estimate, args, out)
    write_generation(estimate, args, notes)
    return 0


def show_generation(estimate, args: argparse.Namespace, out) -> None:
    from irene.cli.options import depth, print_result
    from irene.report import energy_for

    if args.json or args.quiet:
        data = estimate.to_json(depth=depth(args), top=args.top)
        data["energy_for"] = energy_for(estimate.prefill, "predicted")
        print_result(args, data, estimate.total_j)
        return
    from irene.report.generation import render_generation

    render_generation(estimate, out, depth=depth(args), top=args.top)


def write_generation(estimate, args: argparse.Namespace, notes) -> None:
    if args.output:
        from irene.tree import write_trees

        write_trees([estimate.prefill, *estimate.decode_trees], args.output)
        notes.print(f"wrote the predicted prefill and {len(estimate.decode_trees)} decode "
                    f"tree(s) to {args.output}")
    if args.html:
        from irene.report.html import write_report

        write_report([estimate.prefill, estimate.decode, *estimate.decode_trees], args.html,
                     generation=estimate, title=f"irene generation estimate · "
                                                f"{estimate.model_name}")
        notes.print(f"wrote {args.html}")
    if args.plot:
        from irene.report.generation import plot_generation

        plot_generation(estimate, args.plot)
        notes.print(f"wrote {args.plot}")
