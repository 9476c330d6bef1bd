"""In which order a plan's trees are made, and which of them fit a time budget.

Most useful first: every model at a few cells before anyone's full grid. Cells are ranked in
rounds per model -- round 0: the middle cell (median batch size x median sequence length);
round 1: the two corners (smallest x smallest, largest x largest); round 2: every other cell,
smallest first -- and items are ordered by (dtype as listed in the plan, round, model as
listed, attention implementation, cell). So the first dtype of the plan is finished before the
next one starts ("float32 where time allows"), and within it each model gets its middle cell,
then its corners, then the rest of its grid (one model after the other, so a built model is
reused).

With a budget, :class:`BudgetedRun` walks that order and takes an item only if its estimated
cost (measurements not yet made, a model build when the model is not in memory, the capture
and per-tree overhead) fits in the time left; an item that does not fit is deferred (left for
the next run) and smaller ones after it may still be taken. The dry run and the real run use
the same walk (the dry run on a simulated clock).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from irene.campaign.estimate import Estimator, ItemCost, model_bytes
from irene.campaign.plan import Plan, PlanItem


def cell_round(batch_size: int, seq_len: int, batch_sizes: list[int],
               seq_lens: list[int]) -> int:
    """0 for the middle cell, 1 for the two corners, 2 for every other cell."""
    bs, ss = sorted(batch_sizes), sorted(seq_lens)
    middle = (bs[(len(bs) - 1) // 2], ss[(len(ss) - 1) // 2])
    if (batch_size, seq_len) == middle:
        return 0
    if (batch_size, seq_len) in ((bs[0], ss[0]), (bs[-1], ss[-1])):
        return 1
    return 2


def priority_order(plan: Plan, items: list[PlanItem] | None = None) -> list[PlanItem]:
    """The plan's items (or ``items``), most useful first (see the module docstring)."""
    items = plan.items() if items is None else items
    entries = {m.name: (i, m) for i, m in enumerate(plan.models)}
    dtype_rank = {d: i for i, d in enumerate(plan.dtypes)}
    for m in plan.models:  # dtypes only some models list come after the plan's own
        for d in m.dtypes:
            dtype_rank.setdefault(d, len(dtype_rank))
    attn_rank = {a: i for i, a in enumerate(plan.attns)}

    def key(item: PlanItem) -> tuple:
        rank, entry = entries[item.model]
        w = item.workload
        r = cell_round(w.batch_size, w.seq_len, *entry.grids[w.dtype])
        size = (w.batch_size * w.seq_len, w.batch_size)
        return (dtype_rank[w.dtype], r, rank, attn_rank[w.attn], size)

    return sorted(items, key=key)


class ModelPool:
    """Which built models stay in memory: least recently used out when their weights exceed
    ``max_bytes``. The runner keeps models this way; the estimate simulates it."""

    def __init__(self, max_bytes: float) -> None:
        self.max_bytes = max_bytes
        self._sizes: OrderedDict[tuple, int] = OrderedDict()

    def __contains__(self, key: tuple) -> bool:
        return key in self._sizes

    def use(self, key: tuple, size: int) -> list[tuple]:
        """Mark ``key`` used (added if new); returns the keys evicted to make room."""
        if key in self._sizes:
            self._sizes.move_to_end(key)
            return []
        self._sizes[key] = size
        evicted = []
        while len(self._sizes) > 1 and sum(self._sizes.values()) > self.max_bytes:
            old, _ = self._sizes.popitem(last=False)
            evicted.append(old)
        return evicted


@dataclass
class Decision:
    """What the budgeted walk decided for one item: ``take`` it (estimated ``seconds``,
    including ``build_s`` when the model must be built) or defer it."""

    item: PlanItem
    take: bool
    seconds: float
    build_s: float
    new: set[str] = field(default_factory=set)


class BudgetedRun:
    """Walks items in priority order against a budget (seconds; None: no limit).

    ``decide(item, cost, now)`` says whether the item fits in the time left at ``now`` (seconds
    since the start) and, when it is taken, counts its new measurements as known and its model
    as built. ``known``: signatures already measured (the campaign cache).
    """

    def __init__(self, estimator: Estimator, *, budget_s: float | None, known: set[str],
                 pool_bytes: float, idle_pending: bool = True) -> None:
        self.estimator, self.budget_s = estimator, budget_s
        self.known = set(known)
        self.pool = ModelPool(pool_bytes)
        self.idle_pending = idle_pending and estimator.idle_s > 0

    def cost(self, item: PlanItem, cost: ItemCost) -> tuple[float, float]:
        """(total seconds, of which building) for ``item`` now."""
        build = 0.0 if item.model_key in self.pool else \
            self.estimator.build_seconds(cost.parameters)
        idle = self.estimator.idle_s if self.idle_pending else 0.0
        return cost.seconds(self.known) + build + idle, build

    def decide(self, item: PlanItem, cost: ItemCost, now: float) -> Decision:
        seconds, build = self.cost(item, cost)
        if self.budget_s is not None and now + seconds > self.budget_s:
            return Decision(item, False, seconds, build)
        new = cost.new_signatures(self.known)
        self.known |= new
        self.pool.use(item.model_key, model_bytes(cost.parameters, item.workload.dtype))
        self.idle_pending = False
        return Decision(item, True, seconds, build, new)


def default_pool_bytes(memory_bytes: float) -> float:
    """Weights kept in memory across items: 40 % of the device's memory."""
    return 0.4 * memory_bytes
