"""Running a plan: resume, one writer, measurements shared across the plan, a time budget.

``run_plan(plan, RunOptions(...))`` makes every tree of the plan that the output does not hold
yet, most useful first (:mod:`irene.campaign.schedule`):

1. everything that can fail is checked before anything is written: the plan (when read), the
   output and the files beside it, the Ray cluster, the MLflow store, the meter and device on
   the measuring host, the saved measurements' context, and -- with a budget -- that at least
   one tree fits in it;
2. under the output's lock (:func:`irene.files.exclusive_lock`; a torn last line of an earlier
   crash is repaired first), each tree is appended and flushed as soon as it is made, exactly
   as ``irene trace`` does; trees already in the output (same :class:`~irene.tree.TreeKey`) are
   skipped, so a run stopped at any point resumes where it stopped;
3. every node is measured through one :class:`~irene.campaign.cache.CampaignCache`, saved beside
   the output after each new measurement (at most every 2 s) -- a killed run keeps what it
   measured, and a resumed run (here or on a fresh machine with a copy of the output) measures
   only what is missing;
4. at the end the summary (:mod:`irene.campaign.summary`) is written beside the output.

``dry_run(plan, ...)`` traces features only (fake tensors, :mod:`irene.campaign.features`) and
estimates the time per model and in total (:mod:`irene.campaign.estimate`).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from irene.campaign.cache import CacheError, CampaignCache, cache_path
from irene.campaign.estimate import (
    PROFILES,
    Estimator,
    HardwareProfile,
    ItemCost,
    calibrate_local,
)
from irene.campaign.features import FeaturePass, planning_device
from irene.campaign.plan import Plan, PlanError, PlanItem
from irene.campaign.schedule import BudgetedRun, default_pool_bytes, priority_order
from irene.campaign.worker import HostError, HostInfo, ItemMaker, item_key, probe_host
from irene.tree import Tree, TreeKey, check_appendable, keys_in_file

#: a local run stops after this many failed items in a row (something is broken for all)
MAX_FAILURES_IN_A_ROW = 3


class CampaignError(RuntimeError):
    """A campaign that cannot start (the message says why); nothing was written."""


class BudgetTooSmall(CampaignError):
    """The budget does not fit a single remaining tree."""


@dataclass
class RunOptions:
    """``budget_minutes``: stop before this wall time (None: no limit); ``ray``: None (this
    process), ``""`` (a local Ray instance) or a cluster address; ``mlflow``: None (off) or a
    tracking URI; ``progress``: show progress bars; ``on_event``: called with every Ray worker
    event (dicts; for progress displays and tests); ``clock``: the run's one clock (seconds, a
    monotonic counter; default ``time.perf_counter``): the budget, the time spent and the run
    log all read it, so a test can give a fake one."""

    budget_minutes: float | None = None
    ray: str | None = None
    mlflow: str | None = None
    progress: bool = True
    on_event: Callable[[dict[str, Any]], None] | None = None
    stream: IO[str] | None = None
    clock: Callable[[], float] = time.perf_counter


@dataclass
class RunResult:
    """What a run did: trees ``written`` now, ``already`` in the output, items ``deferred``
    (over the budget), ``failed`` (item label -> reason), nodes ``measured`` now and
    ``reused`` from the cache, wall ``seconds``, and the summary."""

    output: Path
    written: int = 0
    already: int = 0
    deferred: list[PlanItem] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    measured: int = 0
    reused: int = 0
    seconds: float = 0.0
    summary: dict[str, Any] | None = None
    summary_path: Path | None = None
    retried: dict[str, list[str]] = field(default_factory=dict)
    repeated_warnings: int = 0


def summary_path(output: Path) -> Path:
    """``trees.jsonl.gz`` -> ``trees.summary.json``."""
    return cache_path(output).with_name(cache_path(output).name.replace(
        ".measurements.json", ".summary.json"))


# --------------------------------------------------------------------------------------------
# checks before anything is written


def check_outputs(plan: Plan) -> None:
    """The output must be new, empty or a trees file; the files beside it must be ours."""
    from irene.files import OutputError, resolve_output

    output = plan.output
    check_appendable(output, "a campaign")
    for path, marker in ((cache_path(output), '"irene-measurement-cache"'),
                         (summary_path(output), '"irene-campaign-summary"')):
        resolve_output(path)
        if path.exists() and path.stat().st_size > 0:
            with open(path, "rb") as handle:
                head = handle.read(200).decode("utf-8", errors="replace")
            if marker not in head:
                raise OutputError(f"{path}: exists and is not this campaign's file (the "
                                  "campaign writes its measurements and summary beside the "
                                  "output); move it away or give another output")


@contextlib.contextmanager
def _no_partial_output(output: Path) -> Iterator[Callable[[], None]]:
    """On an error before anything was written, remove what the run created around the
    output (its lock file, directories it made). Yields ``wrote()``, to call once it has."""
    from irene.files import lock_path, resolve_output

    target = resolve_output(output)
    missing = []
    parent = target.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    lock = lock_path(target)
    lock_existed = os.path.lexists(lock)
    state = {"wrote": False}

    def wrote() -> None:
        state["wrote"] = True

    try:
        yield wrote
    except BaseException:
        if not state["wrote"] and not target.exists():
            if not lock_existed:
                with contextlib.suppress(OSError):
                    lock.unlink()
            for directory in missing:  # deepest first
                with contextlib.suppress(OSError):
                    directory.rmdir()
        raise


# --------------------------------------------------------------------------------------------
# estimates


def choose_profile(plan: Plan) -> HardwareProfile:
    """The hardware profile of the plan's estimate: the plan's ``estimate.profile``, else this
    machine calibrated now (a CUDA plan on a machine without CUDA must name a profile)."""
    from irene.workload import device_problem

    name = plan.estimate_profile
    if name in PROFILES:
        return PROFILES[name]
    problem = device_problem(plan.device)
    if problem:
        raise PlanError(f"{plan.path}: estimate.profile: the plan measures on {plan.device} "
                        f"and {problem} here to calibrate on; name a profile "
                        f"({', '.join(PROFILES)}) under estimate: in the plan")
    return calibrate_local(plan.device, plan.dtypes + [d for m in plan.models
                                                       for d in m.dtypes],
                           threads=plan.protocol.threads)


def _loose(key: TreeKey) -> TreeKey:
    """A key without the host-specific fields (for a dry run away from the measuring host)."""
    return key._replace(hardware=None, meter=None)


@dataclass
class ItemEstimate:
    """One item in a dry run: its cost, whether it fits, and when."""

    item: PlanItem
    cost: ItemCost
    take: bool
    seconds: float
    build_s: float
    new: int


@dataclass
class DryRunResult:
    """A dry run: ``items`` in the order they would run (taken or deferred), ``done`` trees
    already in the output, the ``profile`` and protocol target, and measurement counts:
    ``separate`` (sum over trees of each tree's distinct signatures, as separate ``irene trace``
    runs would measure) and ``campaign`` (distinct signatures over the plan, minus those
    already measured)."""

    plan: Plan
    profile: HardwareProfile
    target_s: float
    items: list[ItemEstimate]
    done: int
    known: int
    separate: int
    campaign: int
    budget_s: float | None
    planning_s: float
    notes: list[str] = field(default_factory=list)

    @property
    def total_s(self) -> float:
        """Expected wall time (s) of the run on the measuring host: its start and every item
        taken (the planning done here is not part of it)."""
        return self.profile.start_s + sum(e.seconds for e in self.items if e.take)

    def per_model(self) -> list[dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        for e in self.items:
            row = rows.setdefault(e.item.model, {"model": e.item.model, "trees": 0,
                                                 "deferred": 0, "nodes": 0, "new": 0,
                                                 "seconds": 0.0, "builds": 0})
            if not e.take:
                row["deferred"] += 1
                continue
            row["trees"] += 1
            row["nodes"] += e.cost.nodes
            row["new"] += e.new
            row["seconds"] += e.seconds
            row["builds"] += e.build_s > 0
        return list(rows.values())

    def to_dict(self) -> dict[str, Any]:
        return {"plan": str(self.plan.path), "profile": self.profile.to_dict(),
                "target_run_seconds": self.target_s, "done": self.done,
                "known_measurements": self.known, "measurements_separate": self.separate,
                "measurements_campaign": self.campaign, "budget_seconds": self.budget_s,
                "total_seconds": self.total_s, "planning_seconds": self.planning_s,
                "per_model": self.per_model(), "notes": self.notes,
                "items": [{"item": e.item.label(), "take": e.take, "seconds": e.seconds,
                           "nodes": e.cost.nodes, "new_measurements": e.new}
                          for e in self.items]}


class CostBook:
    """Item costs, computed when first asked for (features on fake tensors, then the
    estimator) and kept: a budgeted run plans each item just before it runs it."""

    def __init__(self, plan: Plan, estimator: Estimator) -> None:
        self.estimator = estimator
        self.features = FeaturePass(hub=plan.hub)
        self._costs: dict[PlanItem, ItemCost] = {}

    def __getitem__(self, item: PlanItem) -> ItemCost:
        cost = self._costs.get(item)
        if cost is None:
            tree = self.features.tree(item)
            cost = self._costs[item] = self.estimator.item_cost(tree, item.workload.dtype)
        return cost


def _planning_pass(items: list[PlanItem], plan: Plan, estimator: Estimator, *,
                   progress: bool) -> tuple[CostBook, FeaturePass]:
    from tqdm import tqdm

    book = CostBook(plan, estimator)
    for item in tqdm(items, desc="planning (features only)", unit="tree", disable=not progress,
                     leave=False):
        book[item]
    book.features.clear()
    return book, book.features


def dry_run(plan: Plan, options: RunOptions | None = None) -> DryRunResult:
    """Features only: count the measurements and estimate the time per model and in total.

    Nothing is measured or written. Trees already in the output and measurements already in
    its cache are left out (matched without the host-specific key fields).
    """
    options = options or RunOptions()
    start = options.clock()
    profile = choose_profile(plan)
    budget_s = _budget_seconds(plan, options)
    estimator = Estimator(profile, plan.protocol, meter=plan.meter, timing=plan.timing,
                          planned=budget_s is not None)
    done = {_loose(k) for k in keys_in_file(plan.output, torn_tail_ok=True)} \
        if plan.output.exists() else set()
    host = HostInfo(hostname="", hardware="", device_type="", cpu_model="", meter="",
                    meter_domains=[], meter_window_s=0.0)
    ordered = priority_order(plan)
    todo = [i for i in ordered if _loose(item_key(i, plan, host)) not in done]
    known = _saved_signatures(plan.output)
    costs, features = _planning_pass(todo, plan, estimator, progress=options.progress)
    walk = BudgetedRun(estimator, budget_s=budget_s, known=known,
                       pool_bytes=default_pool_bytes(profile.memory_bytes))
    now = profile.start_s
    estimates = []
    for item in todo:
        decision = walk.decide(item, costs[item], now)
        if decision.take:
            now += decision.seconds
        estimates.append(ItemEstimate(item, costs[item], decision.take, decision.seconds,
                                      decision.build_s, len(decision.new)))
    notes = list(features.fallbacks)
    if planning_device(plan.device) != plan.device:
        how = "fake CPU tensors" if plan.phase == "forward" else "the CPU (real weights)"
        notes.append(f"features traced on {how} in place of {plan.device} (no CUDA "
                     "here): counts, FLOPs and bytes are the device's; measurements already "
                     "in the output's cache are not recognised")
    campaign = len({s for i in todo for s in costs[i].measure_s} - known)
    return DryRunResult(plan=plan, profile=profile, target_s=estimator.target_s,
                        items=estimates, done=len(ordered) - len(todo), known=len(known),
                        separate=sum(costs[i].unique for i in todo), campaign=campaign,
                        budget_s=budget_s, planning_s=options.clock() - start, notes=notes)


def _saved_signatures(output: Path) -> set[str]:
    path = cache_path(output)
    if not path.exists():
        return set()
    from irene.campaign.cache import CacheError, read_cache_file

    try:
        return set(read_cache_file(path)[1])
    except CacheError as exc:
        raise CampaignError(str(exc)) from exc


def _budget_seconds(plan: Plan, options: RunOptions) -> float | None:
    minutes = options.budget_minutes if options.budget_minutes is not None else \
        plan.budget_minutes
    if minutes is None:
        return None
    if not minutes > 0:
        raise PlanError(f"--budget-minutes must be > 0, got {minutes}")
    return 60.0 * minutes


# --------------------------------------------------------------------------------------------
# running


class LocalExecutor:
    """Makes the items in this process, one after the other."""

    name = "local"

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.maker: ItemMaker | None = None

    def connect(self) -> None:
        return None

    def probe(self) -> HostInfo:
        return probe_host(self.plan)

    def run(self, items: list[PlanItem], session: _Session) -> None:
        self.maker = ItemMaker(self.plan).open()
        in_a_row = 0
        try:
            for item in items:
                if not session.take(item):
                    continue
                session.started(item, {"host": socket.gethostname(), "pid": os.getpid()})
                view = session.cache.view() if session.cache is not None else None
                try:
                    tree, caught = self.maker.make(item, view)
                except (ValueError, RuntimeError) as exc:  # this item only (e.g. out of memory)
                    session.failed(item, f"{type(exc).__name__}: {exc}")
                    in_a_row += 1
                    if in_a_row >= MAX_FAILURES_IN_A_ROW:
                        raise CampaignError(f"stopping: {in_a_row} items in a row failed, the "
                                            f"last with {type(exc).__name__}: {exc}") from exc
                    continue
                in_a_row = 0
                session.accept(item, tree, caught)
        finally:
            self.maker.close()

    def close(self) -> None:
        return None


class _Session:
    """The writer's side of a run: budget decisions, appending trees, progress, tracking."""

    def __init__(self, plan: Plan, keys: dict[PlanItem, TreeKey], cache: CampaignCache | None,
                 result: RunResult, *, walk: BudgetedRun | None,
                 costs: CostBook | None, start: float, clock: Callable[[], float],
                 tracker: Any,
                 wrote: Callable[[], None], bar: Any, stream: IO[str],
                 on_event: Callable[[dict[str, Any]], None] | None,
                 session: dict[str, Any]) -> None:
        self.plan, self.keys, self.cache, self.result = plan, keys, cache, result
        self.session = session
        self.warning_kinds: set[str] = set()
        self.walk, self.costs, self.start, self.clock = walk, costs, start, clock
        self.tracker, self.wrote, self.bar, self.stream = tracker, wrote, bar, stream
        self.on_event = on_event

    def elapsed(self) -> float:
        """Seconds since the run started (the run's clock)."""
        return self.clock() - self.start

    def take(self, item: PlanItem) -> bool:
        """Whether ``item`` fits in the time left (always without a budget): the same walk as
        the dry run's, item by item, so a later cheaper item that fits is still taken."""
        if self.walk is None or self.costs is None or self.walk.budget_s is None:
            return True
        if self.cache is not None:
            self.walk.known |= self.cache.signatures()
        decision = self.walk.decide(item, self.costs[item], self.elapsed())
        if not decision.take:
            self._defer(item)
        return decision.take

    def _defer(self, item: PlanItem) -> None:
        self.result.deferred.append(item)
        self.bar.update(1)

    def started(self, item: PlanItem, where: dict[str, Any]) -> None:
        self.bar.set_postfix_str(f"{item.label()} on {where.get('host')}", refresh=True)
        if self.on_event is not None:
            self.on_event({"event": "started", "item": item.label(), **where})

    def accept(self, item: PlanItem, tree: Tree, caught: list[str],
               entries: dict[str, dict[str, Any]] | None = None) -> None:
        """Append a finished tree (after checking it is the one planned) and log it."""
        from irene.tree import append_tree

        expected = self.keys[item]
        if tree.key != expected:
            raise CampaignError(f"{item.label()}: the tree made has key {tree.key}, the plan "
                                f"expected {expected} (another kind of host?); not written")
        if entries is not None and self.cache is not None:  # made by a Ray worker
            self.cache.add(entries)  # (two workers may have measured the same node)
            dedup = tree.meta.get("dedup", {})
            self.cache.measured += int(dedup.get("misses", 0))
            self.cache.reused += int(dedup.get("hits", 0))
        self._warn(item, caught)
        append_tree(tree, self.plan.output)
        self.wrote()
        self.result.written += 1
        self.session.update(trees=self.result.written)
        if self.cache is not None:
            self.session.update(measured=self.cache.measured, reused=self.cache.reused)
            self.cache.flush()
        self.tracker.tree_done(tree, self.result.written)
        self.bar.update(1)
        if self.on_event is not None:
            self.on_event({"event": "written", "item": item.label()})

    def _warn(self, item: PlanItem, caught: list[str]) -> None:
        """Show a tree's warnings; one of a kind already shown (the same text but for its
        numbers) is counted instead (``repeated_warnings``)."""
        for text in caught:
            kind = re.sub(r"[0-9.]+", "#", text.replace(item.label().split()[0], "MODEL"))
            if kind in self.warning_kinds:
                self.result.repeated_warnings += 1
                continue
            self.warning_kinds.add(kind)
            self.bar.write(f"warning: {item.label()}: {text}", file=self.stream)

    def failed(self, item: PlanItem, reason: str) -> None:
        self.result.failed[item.label()] = reason
        self.bar.write(f"failed: {item.label()}: {reason}", file=self.stream)
        self.bar.update(1)


def _executor(plan: Plan, options: RunOptions) -> Any:
    if options.ray is None:
        return LocalExecutor(plan)
    from irene.campaign.distributed import RayExecutor

    return RayExecutor(plan, address=options.ray, on_event=options.on_event)


def run_plan(plan: Plan, options: RunOptions | None = None) -> RunResult:
    """Make the plan's missing trees (see the module docstring); returns what was done.

    Raises CampaignError / BudgetTooSmall / CacheMismatch / OutputError / PlanError for a
    campaign that cannot start -- before anything is written.
    """
    from irene.campaign.tracking import Tracker

    options = options or RunOptions()
    stream = options.stream or sys.stderr
    start = options.clock()
    result = RunResult(output=plan.output)
    check_outputs(plan)
    tracker = Tracker(options.mlflow, plan)
    tracker.check()
    budget_s = _budget_seconds(plan, options)
    executor = _executor(plan, options)
    try:
        executor.connect()
        try:
            host = executor.probe()
        except HostError as exc:
            raise CampaignError(str(exc)) from exc
        with _no_partial_output(plan.output) as wrote:
            _run_with_host(plan, options, executor, host, tracker, result, budget_s, start,
                           wrote, stream)
    finally:
        executor.close()
    result.seconds = options.clock() - start
    return result


def _open_cache(plan: Plan, host: HostInfo) -> CampaignCache | None:
    if not plan.timing:
        return None
    try:
        cache = CampaignCache.open(cache_path(plan.output), host.context(plan),
                                   enabled=plan.protocol.dedup)
    except CacheError as exc:  # another context, or not a valid cache
        raise CampaignError(str(exc)) from exc
    return cache


def _budget_walk(plan: Plan, todo: list[PlanItem], host: HostInfo, cache: CampaignCache | None,
                 budget_s: float, elapsed: Callable[[], float]) -> tuple[BudgetedRun, CostBook]:
    """A budget walk over the remaining items, whose costs are computed as they come;
    BudgetTooSmall when not one of them fits (items are tried in order until one does)."""
    profile = choose_profile(plan)
    estimator = Estimator(profile, plan.protocol, meter=plan.meter, timing=plan.timing,
                          meter_window=host.meter_window_s, planned=True)
    costs = CostBook(plan, estimator)
    known = cache.signatures() if cache is not None else set()
    pool = default_pool_bytes(profile.memory_bytes)
    probe = BudgetedRun(estimator, budget_s=budget_s, known=known, pool_bytes=pool)
    needs: dict[PlanItem, float] = {}
    for item in todo:
        needs[item] = probe.cost(item, costs[item])[0]
        if needs[item] + elapsed() <= budget_s:
            return BudgetedRun(estimator, budget_s=budget_s, known=known, pool_bytes=pool), costs
    cheapest = min(needs, key=needs.__getitem__)
    raise BudgetTooSmall(
        f"a budget of {budget_s / 60:.2f} min is too small for one tree: the cheapest remaining "
        f"one ({cheapest.label()}) needs about {needs[cheapest] / 60:.2f} min (estimate; "
        f"{elapsed():.0f} s already spent starting and planning); nothing "
        "was written")


def _run_with_host(plan: Plan, options: RunOptions, executor: Any, host: HostInfo,
                   tracker: Any, result: RunResult, budget_s: float | None, start: float,
                   wrote: Callable[[], None], stream: IO[str]) -> None:
    from tqdm import tqdm

    from irene.files import exclusive_lock
    from irene.tree import repair_torn_tail

    ordered = priority_order(plan)
    keys = {item: item_key(item, plan, host) for item in ordered}
    done = keys_in_file(plan.output, torn_tail_ok=True)  # repaired under the lock below
    todo = [i for i in ordered if keys[i] not in done]
    cache = _open_cache(plan, host)
    walk = costs = None
    if budget_s is not None and todo:
        walk, costs = _budget_walk(plan, todo, host, cache, budget_s,
                                   lambda: options.clock() - start)
    with exclusive_lock(plan.output):
        repaired = repair_torn_tail(plan.output)
        if repaired:
            print(repaired, file=stream)
        done = keys_in_file(plan.output)  # another run may have added trees meanwhile
        todo = [i for i in todo if keys[i] not in done]
        result.already = len(ordered) - len(todo)
        if cache is not None:
            cache = _open_cache(plan, host)
            for note in cache.notes:
                print(f"note: {note}", file=stream)
        if result.already:
            print(f"{plan.output}: {result.already} of {len(ordered)} trees already made "
                  "with these settings, skipping them", file=stream)
        session = _session_log(plan, host, executor.name, budget_s)
        if cache is not None:
            cache.sessions.append(session)
            cache.live_session = (session, lambda: options.clock() - start)
        tracker.start(host, len(ordered), result.already)
        bar = tqdm(total=len(todo), desc=f"campaign {plan.name}", unit="tree",
                   disable=not options.progress, file=stream)
        state = _Session(plan, keys, cache, result, walk=walk, costs=costs, start=start,
                         clock=options.clock,
                         tracker=tracker, wrote=wrote, bar=bar, stream=stream,
                         on_event=options.on_event, session=session)
        status = "FAILED"
        try:
            executor.run(todo, state)
            status = "FINISHED"
            result.retried = dict(getattr(executor, "retried", {}))
        finally:
            bar.close()
            _close_session(session, cache, result, options.clock() - start)
            if result.written or result.already:
                _write_summary(plan, cache, result)
            tracker.finish(result, status, _artifacts(plan, result))


def _session_log(plan: Plan, host: HostInfo, mode: str, budget_s: float | None
                 ) -> dict[str, Any]:
    return {"started": datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"), "host": host.hostname, "hardware": host.hardware, "mode": mode,
        "plan": str(plan.path), "budget_minutes": None if budget_s is None else budget_s / 60,
        "seconds": 0.0, "trees": 0, "measured": 0, "reused": 0}


def _close_session(session: dict[str, Any], cache: CampaignCache | None, result: RunResult,
                   seconds: float) -> None:
    """Close the run log entry: ``seconds`` since the run started, and what was done."""
    result.seconds = seconds
    if cache is not None:
        result.measured, result.reused = cache.measured, cache.reused
    session.update(seconds=round(result.seconds, 3), trees=result.written,
                   measured=result.measured, reused=result.reused,
                   deferred=len(result.deferred), failed=len(result.failed))
    if cache is not None and (result.written or cache.measured):
        cache.save()


def _write_summary(plan: Plan, cache: CampaignCache | None, result: RunResult) -> None:
    from irene.campaign.summary import summarise
    from irene.files import atomic_write
    from irene.tree import read_trees

    trees = read_trees(plan.output)
    sessions = cache.sessions if cache is not None else []
    summary = summarise(trees, sessions, measurements=len(cache) if cache is not None else None)
    path = summary_path(plan.output)
    with atomic_write(path) as handle:
        json.dump(summary, handle, indent=1, allow_nan=False)
    result.summary, result.summary_path = summary, path


def _artifacts(plan: Plan, result: RunResult) -> list[Path]:
    paths = [plan.output, cache_path(plan.output), plan.path]
    if result.summary_path is not None:
        paths.append(result.summary_path)
    return [p for p in paths if Path(p).exists()]
