"""``irene run PLAN.yaml``: make a campaign's trees (or estimate them with ``--dry-run``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from irene.cli import UserError
from irene.cli.options import add_json_option, number_at_most, print_result
from irene.limits import MAX_MINUTES

if TYPE_CHECKING:
    from irene.campaign.plan import Plan
    from irene.campaign.runner import DryRunResult, RunOptions


def add_parser(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser(
        "run", help="run a measurement campaign from a YAML plan (models x grid x dtypes)",
        description="Make every tree of PLAN (models x batch sizes x sequence lengths x "
                    "dtypes, see configs/plans/) that its output does not hold yet, most "
                    "useful first (every model at a few cells before the full grid). "
                    "Identical nodes are measured once for the whole plan; the measurements "
                    "are saved beside the output, so a run stopped at any point resumes "
                    "where it stopped, here or on a fresh machine with a copy of the output.")
    run.add_argument("plan", type=Path, metavar="PLAN.yaml", help="the campaign plan")
    run.add_argument("-o", "--output", type=Path, default=None,
                     help="trees file to append to (default: the plan's output)")
    run.add_argument("--dry-run", action="store_true",
                     help="features only (no compute): count the measurements and print the "
                          "expected minutes per model and in total; writes nothing")
    run.add_argument("--budget-minutes", type=number_at_most(MAX_MINUTES), default=None,
                     metavar="M",
                     help="stop cleanly before M minutes of wall time, leaving a resumable "
                          "output (default: the plan's budget_minutes, else no limit)")
    run.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                     help="spread the items over a Ray cluster: no ADDRESS starts a local "
                          "instance; auto, HOST:6379 or ray://HOST:10001 join one "
                          "(pip install -e '.[ray]')")
    run.add_argument("--mlflow", nargs="?", const="", default=None, metavar="URI",
                     help="log the run to MLflow: no URI uses MLFLOW_TRACKING_URI or "
                          "mlruns/ beside the output (pip install -e '.[mlflow]')")
    run.add_argument("--check-meter", action="store_true",
                     help="only check the plan's meter here (energy counter, update period, "
                          "idle power) and exit")
    add_json_option(run, quiet="the number of trees written (--dry-run: the expected minutes; "
                               "--check-meter: the meter's update period in s)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.set_defaults(func=run_command)


def _campaign_errors() -> tuple[type[BaseException], ...]:
    from irene.campaign.cache import CacheError
    from irene.campaign.distributed import RayUnavailable
    from irene.campaign.plan import PlanError
    from irene.campaign.runner import CampaignError
    from irene.campaign.tracking import TrackingError
    from irene.campaign.worker import HostError

    return (PlanError, CampaignError, CacheError, RayUnavailable, TrackingError, HostError)


def run_command(args: argparse.Namespace) -> int:
    from irene.campaign.plan import load_plan

    try:
        plan = load_plan(args.plan, output=args.output)
        if args.budget_minutes is not None and not args.budget_minutes > 0:
            raise UserError(f"--budget-minutes must be > 0, got {args.budget_minutes}")
        if args.check_meter:
            return _check_meter(plan, args)
        if args.dry_run:
            return _dry_run(plan, args)
        return _run(plan, args)
    except _campaign_errors() as exc:
        raise UserError(str(exc)) from exc


def _check_meter(plan: Plan, args: argparse.Namespace) -> int:
    from irene.campaign.metercheck import check_meter
    from irene.campaign.worker import check_device
    from irene.measure import open_meter

    check_device(plan.device)
    meter = open_meter(plan.meter)
    if meter is None:
        raise UserError(f"{plan.path}: meter: none; there is no meter to check")
    try:
        result = check_meter(meter, idle_seconds=plan.protocol.idle_seconds)
    finally:
        meter.close()
    if not print_result(args, result.to_dict(), result.update_period_s or 0.0):
        print("\n".join(result.lines()))
    return 0


def _options(args: argparse.Namespace) -> RunOptions:
    from irene.campaign.runner import RunOptions

    return RunOptions(budget_minutes=args.budget_minutes, ray=args.ray, mlflow=args.mlflow,
                      progress=not args.no_progress)


def _dry_run(plan: Plan, args: argparse.Namespace) -> int:
    from irene.campaign.runner import dry_run

    if args.ray is not None or args.mlflow is not None:
        print("note: --dry-run estimates one host and logs nothing; --ray/--mlflow ignored",
              file=sys.stderr)
    result = dry_run(plan, _options(args))
    if not print_result(args, result.to_dict(), result.total_s / 60):
        print(format_dry_run(result))
    return 0


def format_dry_run(result: DryRunResult) -> str:
    """The dry run as a table: per model, then the totals and what the budget leaves out."""
    plan, protocol = result.plan, result.plan.protocol
    taken = [e for e in result.items if e.take]
    lines = [f"plan {plan.path}: {len(result.items) + result.done} trees, {result.done} already "
             f"in {plan.output}",
             f"estimate: profile {result.profile.name} ({result.profile.description}); each "
             f"node: {protocol.warmup} warm-up call(s), calibration, {protocol.runs} runs of "
             f">= {result.target_s:.3g} s, {protocol.cooldown_s:g} s cooldown",
             "",
             f"{'model':<40} {'trees':>5} {'nodes':>6} {'new meas.':>9} {'builds':>6} "
             f"{'minutes':>8}"]
    for row in result.per_model():
        deferred = f"  (+{row['deferred']} over budget)" if row["deferred"] else ""
        lines.append(f"{row['model']:<40} {row['trees']:>5} {row['nodes']:>6} {row['new']:>9} "
                     f"{row['builds']:>6} {row['seconds'] / 60:>8.2f}{deferred}")
    lines.append(f"{'total':<40} {len(taken):>5} {sum(e.cost.nodes for e in taken):>6} "
                 f"{sum(e.new for e in taken):>9} {sum(e.build_s > 0 for e in taken):>6} "
                 f"{result.total_s / 60:>8.2f}")
    lines.append("")
    lines.append(f"node measurements: {result.campaign} for the whole plan (identical nodes "
                 f"measured once across models), {result.separate} as separate per-tree runs "
                 f"would make; {result.known} already in the output's cache")
    total_min = result.total_s / 60
    if result.budget_s is None:
        lines.append(f"expected wall time: {total_min:.1f} min on the measuring host (planned "
                     f"here in {result.planning_s:.0f} s)")
    else:
        deferred = [e for e in result.items if not e.take]
        fits = "everything fits" if not deferred else \
            f"{len(deferred)} tree(s) left for a later run, first: " + \
            ", ".join(e.item.label() for e in deferred[:3])
        lines.append(f"expected wall time: {total_min:.1f} min of a {result.budget_s / 60:g} min "
                     f"budget on the measuring host: {fits}")
    lines.extend(f"note: {n}" for n in result.notes)
    return "\n".join(lines)


def _run(plan: Plan, args: argparse.Namespace) -> int:
    from irene.campaign.runner import run_plan
    from irene.campaign.summary import format_summary

    result = run_plan(plan, _options(args))
    data = {"output": str(result.output), "written": result.written,
            "already": result.already, "measured": result.measured,
            "reused": result.reused, "seconds": result.seconds,
            "deferred": [i.label() for i in result.deferred],
            "failed": result.failed, "retried": result.retried,
            "summary": str(result.summary_path) if result.summary_path else None}
    if not print_result(args, data, result.written):
        print(f"{plan.output}: wrote {result.written} tree(s) in {result.seconds / 60:.1f} min "
              f"({result.measured} node measurements made, {result.reused} reused); "
              f"{result.already} were already there")
        if result.repeated_warnings:
            print(f"{result.repeated_warnings} repeated warning(s) not shown (same kind as one "
                  "shown above)")
        if result.deferred:
            print(f"{len(result.deferred)} tree(s) did not fit the budget: run the same "
                  "command again to continue")
        if result.summary is not None:
            print(f"summary ({result.summary_path}):")
            print(format_summary(result.summary))
    for label, reason in result.failed.items():
        print(f"irene run: failed: {label}: {reason}", file=sys.stderr)
    return 1 if result.failed else 0
