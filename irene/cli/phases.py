"""``--phase``, ``--context-len`` and ``--optimizer`` for commands that trace: which workload a
tree is — one forward pass, a prefill or a decode step (:mod:`irene.tracing.generation`), or a
training step (:mod:`irene.tracing.train_step`) — read into a :class:`~irene.workload.Workload`,
whose rules name the option at fault."""

from __future__ import annotations

import argparse

from irene.cli import UserError
from irene.cli.options import context_length, int_list
from irene.schema import OPTIMIZER_NAMES
from irene.workload import PHASES, Workload, WorkloadError

#: the workload's fields as the options that set them (irene.workload.WorkloadError.text)
OPTION_NAMES = {"phase": "--phase", "seq_len": "--seq-len", "context_len": "--context-len",
                "optimizer": "--optimizer"}


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


def context_lens(args: argparse.Namespace) -> list[int]:
    """The context lengths asked for (--context-len or --context-lens; none: [0])."""
    sweep = getattr(args, "context_lens", None)
    if sweep is not None and args.context_len is not None:
        raise UserError("give --context-len or --context-lens, not both")
    if sweep is not None:
        return list(sweep)
    return [0] if args.context_len is None else [args.context_len]


def workload(args: argparse.Namespace, batch_size: int, seq_len: int,
             context_len: int = 0) -> Workload:
    """The :class:`~irene.workload.Workload` of one call asked for with ``args``' --phase,
    --optimizer, --dtype, --attn and --device; UserError naming the option that breaks a
    workload rule."""
    try:
        return Workload(phase=args.phase, batch_size=batch_size, seq_len=seq_len,
                        context_len=context_len, optimizer=getattr(args, "optimizer", None),
                        dtype=args.dtype or "float32", attn=args.attn, device=args.device)
    except WorkloadError as exc:
        raise UserError(exc.text(OPTION_NAMES)) from exc
