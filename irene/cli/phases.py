"""``--phase``, ``--context-len`` and ``--optimizer`` for commands that trace: which workload a
tree is — one forward pass, a prefill or a decode step (:mod:`irene.tracing.generation`), or a
training step (:mod:`irene.tracing.train_step`) — and ``irene estimate``'s generation mode."""

from __future__ import annotations

import argparse
from typing import Any

from irene.cli import UserError
from irene.cli.options import (
    check_outputs,
    context_length,
    dimension,
    int_list,
    positive_number,
)
from irene.schema import OPTIMIZER_NAMES, PHASE_CODES

#: the workloads a tree can be (irene.schema.PHASE_CODES)
PHASES: tuple[str, ...] = tuple(PHASE_CODES)


def add_phase_arguments(parser: argparse.ArgumentParser, *, sweep: bool = True) -> None:
    """--phase, --context-len (and with ``sweep`` --context-lens) and --optimizer."""
    parser.add_argument("--phase", choices=PHASES, default="forward",
                        help="forward: one pass over --seq-len tokens, no KV cache (default); "
                             "prefill: the same pass writing a KV cache; decode: one generation "
                             "step, 1 new token per sequence attending to --context-len cached "
                             "tokens; train: one training step (forward with the LM head's "
                             "loss, backward, optimiser step)")
    parser.add_argument("--context-len", type=context_length, default=None, metavar="L",
                        help="tokens already in the KV cache (decode: required; prefill: "
                             "default 0)")
    if sweep:
        parser.add_argument("--context-lens", type=int_list, default=None, metavar="L1,L2,..",
                            help="sweep: comma-separated context lengths")
    parser.add_argument("--optimizer", choices=OPTIMIZER_NAMES, default=None,
                        help=f"optimiser of --phase train (default {OPTIMIZER_NAMES[0]})")


def phase_options(args: argparse.Namespace) -> dict[str, Any]:
    """``{"phase": ..., "optimizer": ...}`` (``optimizer`` None unless training); UserError for
    --optimizer without --phase train."""
    phase = getattr(args, "phase", "forward")
    optimizer = getattr(args, "optimizer", None)
    if phase != "train":
        if optimizer is not None:
            raise UserError(f"--optimizer {optimizer} needs --phase train (a {phase} pass has "
                            "no optimiser)")
        return {"phase": phase, "optimizer": None}
    return {"phase": phase, "optimizer": optimizer or OPTIMIZER_NAMES[0]}


def phase_context_lens(args: argparse.Namespace) -> list[int]:
    """The context lengths asked for, checked against the phase (UserError naming the option)."""
    sweep = getattr(args, "context_lens", None)
    if sweep is not None and args.context_len is not None:
        raise UserError("give --context-len or --context-lens, not both")
    given = sweep if sweep is not None else (
        None if args.context_len is None else [args.context_len])
    if args.phase in ("forward", "train"):
        if given and any(given):
            raise UserError(f"--context-len needs --phase prefill or decode (a {args.phase} "
                            "pass has no KV cache)")
        return [0]
    if args.phase == "decode":
        if not given or not all(given):
            raise UserError("--phase decode needs --context-len L (or --context-lens) >= 1: "
                            "the tokens already in the KV cache")
        seqs = getattr(args, "seq_lens", None) or (
            [args.seq_len] if args.seq_len is not None else [1])  # estimate has no --seq-lens
        if seqs != [1]:
            raise UserError("--phase decode feeds one token per sequence: drop --seq-len "
                            "(or give 1)")
    return list(given or [0])


# --------------------------------------------------------------------------------------------
# irene estimate --prompt-len P --new-tokens N


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    """--prompt-len, --new-tokens, --decode-points and --plot of ``irene estimate``."""
    from irene.limits import DEFAULT_TOLERANCE_PCT, MAX_DECODE_POINTS

    group = parser.add_argument_group(
        "generation", "estimate generating text: a prefill of the prompt, then one decode step "
                      "per new token (see the README's generation section)")
    group.add_argument("--prompt-len", type=dimension, default=None, metavar="P",
                       help="prompt tokens per sequence")
    group.add_argument("--new-tokens", type=dimension, default=None, metavar="N",
                       help="tokens generated per sequence (decode steps at context lengths "
                            "P … P+N-1)")
    group.add_argument("--decode-tolerance", type=positive_number,
                       default=DEFAULT_TOLERANCE_PCT, metavar="PCT",
                       help="the decode sum is refined (more traced context lengths, at most "
                            f"{MAX_DECODE_POINTS}) until two rules agree within PCT percent "
                            f"(default {DEFAULT_TOLERANCE_PCT:g})")
    group.add_argument("--plot", metavar="FIGURE.png",
                       help="also draw energy per token against context length and the "
                            "prefill/decode split (.png or .svg)")


def run_generation(args: argparse.Namespace) -> int:
    """``irene estimate MODEL --prompt-len P --new-tokens N``: predict, print (or --json),
    and write the traced trees (-o), the HTML page (--html) and the figure (--plot)."""
    from irene.cli.options import console
    from irene.estimate import EstimateError
    from irene.files import guard_output
    from irene.generation import estimate_generation

    if args.prompt_len is None or args.new_tokens is None:
        raise UserError("a generation needs both --prompt-len and --new-tokens")
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
    _show(estimate, args, out)
    _write(estimate, args, notes)
    return 0


def _show(estimate, args: argparse.Namespace, out) -> None:
    from irene.cli.options import depth, print_result
    from irene.report import energy_for

    if args.json or args.quiet:
        data = estimate.to_json(depth=depth(args), top=args.top)
        data["energy_for"] = energy_for(estimate.prefill, "predicted")
        print_result(args, data, estimate.total_j)
        return
    from irene.report.generation import render_generation

    render_generation(estimate, out, depth=depth(args), top=args.top)


def _write(estimate, args: argparse.Namespace, notes) -> None:
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
