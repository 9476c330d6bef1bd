"""Command-line options of the measurement protocol, shared by every command that measures.

``add_measure_arguments(parser)`` adds ``--meter``, ``--runs``, ``--warmup``,
``--min-run-seconds``, ``--subtract-idle``, ``--idle-seconds``, ``--cooldown``, ``--no-dedup``
and ``--threads``;
``protocol_from_args(args)`` builds the :class:`~irene.measure.protocol.Protocol`.
"""

from __future__ import annotations

import argparse

from irene.measure.protocol import Protocol

_DEFAULT = Protocol()


def add_measure_arguments(parser: argparse.ArgumentParser, *, default_meter: str = "none",
                          default_runs: int = _DEFAULT.runs, dedup: bool = True) -> None:
    """Register the meter and protocol options on ``parser`` (``dedup=False``: no
    ``--no-dedup``, for commands that measure whole models, not nodes)."""
    group = parser.add_argument_group("measurement")
    group.add_argument("--meter", default=default_meter, metavar="SPEC",
                       help="energy meter: none (features and times only), auto, nvml, rapl, "
                            "wattmeter:PATH.csv, cpu-model[:TDP_W] (estimated, not measured), or "
                            "several joined by +; simulated: 50 W x time, no measurement, for "
                            "demos and tests on a machine without a meter (default: %(default)s)")
    group.add_argument("--runs", type=int, default=default_runs,
                       help="measured runs; values are medians (default: %(default)s)")
    group.add_argument("--warmup", type=int, default=_DEFAULT.warmup,
                       help="warm-up calls per node (default: %(default)s)")
    group.add_argument("--min-run-seconds", type=float, default=_DEFAULT.min_run_seconds,
                       help="shortest run in seconds; raised to the meter's minimum window "
                            "(default: %(default)s)")
    group.add_argument("--subtract-idle", action="store_true",
                       help="measure idle power once and subtract it from every run")
    group.add_argument("--idle-seconds", type=float, default=_DEFAULT.idle_seconds,
                       help="length of the idle-power measurement (default: %(default)s)")
    group.add_argument("--cooldown", type=float, default=_DEFAULT.cooldown_s, metavar="SECONDS",
                       help="sleep between runs (default: %(default)s)")
    if dedup:
        group.add_argument("--no-dedup", dest="dedup", action="store_false",
                           help="measure identical nodes again instead of reusing the result")
    group.add_argument("--threads", type=int, default=None, metavar="N",
                       help="torch threads for CPU timings (default 1: repeatable on a shared "
                            "machine; the load during timing is recorded and a busy machine "
                            "warned about)")


def protocol_from_args(args: argparse.Namespace) -> Protocol:
    """The protocol the user asked for (ValueError with the option's name if invalid)."""
    return Protocol(warmup=args.warmup, runs=args.runs, min_run_seconds=args.min_run_seconds,
                    subtract_idle=args.subtract_idle, idle_seconds=args.idle_seconds,
                    cooldown_s=args.cooldown, dedup=getattr(args, "dedup", True),
                    threads=args.threads)
