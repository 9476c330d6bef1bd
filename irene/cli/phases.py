"""``--phase`` / ``--context-len`` for commands that trace: which workload a tree is (see
:mod:`irene.tracing.generation`)."""

from __future__ import annotations

import argparse

from irene.cli import UserError
from irene.cli.options import int_list


def add_phase_arguments(parser: argparse.ArgumentParser) -> None:
    """--phase, --context-len and --context-lens (a sweep of decode context lengths)."""
    from irene.tracing.generation import PHASES

    parser.add_argument("--phase", choices=PHASES, default="forward",
                        help="forward: one pass over --seq-len tokens, no KV cache (default); "
                             "prefill: the same pass writing a KV cache; decode: one generation "
                             "step, 1 new token per sequence attending to --context-len cached "
                             "tokens")
    parser.add_argument("--context-len", type=_non_negative_int, default=None, metavar="L",
                        help="tokens already in the KV cache (decode: required; prefill: "
                             "default 0)")
    parser.add_argument("--context-lens", type=int_list, default=None, metavar="L1,L2,..",
                        help="sweep: comma-separated context lengths")


def phase_context_lens(args: argparse.Namespace) -> list[int]:
    """The context lengths asked for, checked against the phase (UserError naming the option)."""
    if args.context_lens is not None and args.context_len is not None:
        raise UserError("give --context-len or --context-lens, not both")
    given = args.context_lens if args.context_lens is not None else (
        None if args.context_len is None else [args.context_len])
    if args.phase == "forward":
        if given and any(given):
            raise UserError("--context-len needs --phase prefill or decode (a forward pass has "
                            "no KV cache)")
        return [0]
    if args.phase == "decode":
        if not given or not all(given):
            raise UserError("--phase decode needs --context-len L (or --context-lens) >= 1: "
                            "the tokens already in the KV cache")
        seqs = args.seq_lens or ([args.seq_len] if args.seq_len is not None else [1])
        if seqs != [1]:
            raise UserError("--phase decode feeds one token per sequence: drop --seq-len "
                            "(or give 1)")
    return list(given or [0])


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value
