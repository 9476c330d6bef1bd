"""Measurement campaigns: a YAML plan of models x grid x dtypes, run once across models.

Public interface::

    plan = load_plan("configs/plans/tiny-cpu.yaml")        # validated: PlanError names file:line
    estimate = dry_run(plan)                               # features only: counts and minutes
    result = run_plan(plan, RunOptions(budget_minutes=25)) # resumable, one writer, shared cache

``irene run PLAN.yaml`` is the command (:mod:`irene.cli.run`); the modules: :mod:`.plan`
(plans), :mod:`.cache` (the measurement cache saved beside the output), :mod:`.features`
(fake-tensor features for planning), :mod:`.estimate` (the time model), :mod:`.schedule`
(order and budget), :mod:`.worker` (making one tree), :mod:`.runner` (the writer),
:mod:`.summary`, :mod:`.metercheck`, :mod:`.distributed` (Ray) and :mod:`.tracking` (MLflow).
"""

from irene.campaign.cache import CacheMismatch, CampaignCache, cache_path
from irene.campaign.plan import Plan, PlanError, PlanItem, load_plan
from irene.campaign.runner import (
    BudgetTooSmall,
    CampaignError,
    DryRunResult,
    RunOptions,
    RunResult,
    dry_run,
    run_plan,
)

__all__ = ["BudgetTooSmall", "CacheMismatch", "CampaignCache", "CampaignError", "DryRunResult",
           "Plan", "PlanError", "PlanItem", "RunOptions", "RunResult", "cache_path", "dry_run",
           "load_plan", "run_plan"]
