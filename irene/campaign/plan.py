"""Campaign plans: a YAML file naming the trees to make, validated before anything runs.

A plan names models, a grid of batch sizes x sequence lengths, dtypes, the attention
implementation, the device, the meter and the measurement protocol, the feature schema, the
phase and the output file. Every key is checked when the plan is read; an error names the file,
the line (where YAML gives it) and the key: ``plan.yaml:7: grid.batch_sizes[1]: must be a
positive integer, got 'x'``. Example (see ``configs/plans/``)::

    name: tiny-cpu
    output: runs/tiny-cpu/trees.jsonl.gz   # relative to the current directory
    models:
      - tiny/bert                          # built-in name, or a path relative to the plan file
      - {name: tiny/gpt2, seq_lens: [8]}   # per-model grid (batch_sizes, seq_lens, dtypes)
    grid: {batch_sizes: [1, 2], seq_lens: [8, 16]}
    dtypes: [float32, bfloat16]            # the first is measured first
    dtype_grids:                           # optional: another grid for some dtype
      bfloat16: {batch_sizes: [2], seq_lens: [16]}
    attn: eager                            # or [eager, sdpa]
    device: cpu
    meter: simulated
    protocol: {runs: 3, min_run_seconds: 0.01}

Each (model, batch size, sequence length, dtype, attn, context length) becomes one
:class:`PlanItem`: one tree, carrying the fields of its tree key that the plan sets. A plan makes
trees of one ``phase``: ``forward`` (the default), ``prefill`` and ``decode`` (generation, with
``context_lens``: the tokens already in the KV cache; decode feeds one token per sequence, so
its ``seq_lens`` are ``[1]``) or ``train`` (one training step, with ``optimizer``)::

    phase: decode
    grid: {batch_sizes: [1, 8], seq_lens: [1]}
    context_lens: [128, 512]
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from irene.checks import Checker, InputError, describe, read_document
from irene.limits import MAX_MINUTES, MAX_PLAN_ITEMS
from irene.measure.protocol import Protocol
from irene.workload import CACHED_PHASES, Workload, WorkloadError, replay_problem

#: meter names a plan may give (``wattmeter:PATH`` takes a log file; ``+`` combines meters)
METER_NAMES = ("none", "auto", "nvml", "rapl", "wattmeter", "simulated")

_TOP_KEYS = ("name", "description", "output", "models", "grid", "dtype_grids", "dtypes",
             "attn", "device",
             "meter", "timing", "schema", "phase", "context_lens", "optimizer", "protocol",
             "hub", "seed", "estimate",
             "budget_minutes", "ray")
#: a grid: batch sizes x sequence lengths
Grid = tuple[list[int], list[int]]
_MODEL_KEYS = ("name", "batch_sizes", "seq_lens", "dtypes")
_GRID_KEYS = ("batch_sizes", "seq_lens")
_ESTIMATE_KEYS = ("profile",)
_RAY_KEYS = ("resources", "max_attempts")
#: the workload's fields as a plan spells them (irene.workload.WorkloadError.text)
PLAN_NAMES = {"phase": "phase", "seq_len": "seq_lens", "context_len": "context_lens",
              "optimizer": "optimizer"}


class PlanError(InputError):
    """A plan that cannot be run; the message names the file, line and key."""


@dataclass(frozen=True)
class PlanItem:
    """One tree of a plan: a model and its :class:`~irene.workload.Workload` (the tree-key
    fields the plan sets). ``model`` is the name as written in the plan (the tree's
    ``model_name``); ``source`` is what to build (a built-in name or a resolved local path).
    As a dict (:meth:`to_dict`, campaign caches and workers) the workload's fields are flat."""

    model: str
    workload: Workload
    source: str = ""

    @property
    def model_key(self) -> tuple[str, str, str, str, str]:
        """What a built model is reused for: (model, dtype, attn, device, head): a training
        step needs the model with its language-modelling head, the other phases the base
        model."""
        w = self.workload
        return (self.model, w.dtype, w.attn, w.device,
                "lm-head" if w.phase == "train" else "base")

    def label(self) -> str:
        """``"gpt2 8x128 float16 eager"`` (``+ " decode@512"``, ``+ " train adamw"``), unique
        per item of a plan: for progress lines and messages."""
        w = self.workload
        text = f"{self.model} {w.batch_size}x{w.seq_len} {w.dtype} {w.attn}"
        if w.phase in CACHED_PHASES:
            return f"{text} {w.phase}@{w.context_len}"
        if w.phase == "train":
            return f"{text} train {w.optimizer}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, **asdict(self.workload), "source": self.source}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlanItem:
        workload = Workload(**{f.name: data[f.name] for f in fields(Workload) if f.name in data})
        return cls(model=data["model"], workload=workload, source=data.get("source", ""))


@dataclass
class ModelEntry:
    """One entry of ``models``: its name as written, what to build, its dtypes and the grid
    of each (the model's own ``batch_sizes``/``seq_lens``, else the plan's ``dtype_grids``
    for that dtype, else the plan's ``grid``)."""

    name: str
    source: str
    dtypes: list[str]
    grids: dict[str, Grid]


@dataclass
class Plan:
    """A validated plan (see the module docstring). ``path`` is the plan file; ``text`` its
    contents (recorded with the run)."""

    path: Path
    name: str
    output: Path
    models: list[ModelEntry]
    dtypes: list[str]
    attns: list[str]
    device: str
    meter: str
    timing: bool
    schema: str
    phase: str
    protocol: Protocol
    context_lens: list[int] = field(default_factory=lambda: [0])
    optimizer: str | None = None
    hub: bool = False
    seed: int = 0
    description: str = ""
    estimate_profile: str | None = None
    budget_minutes: float | None = None
    ray_resources: dict[str, float] = field(default_factory=dict)
    ray_max_attempts: int = 3
    text: str = ""

    def count(self) -> int:
        """How many trees the plan makes, counted without expanding the grid."""
        return sum(len(b) * len(s) for entry in self.models
                   for b, s in (entry.grids[d] for d in entry.dtypes)) \
            * len(self.attns) * len(self.context_lens)

    def items(self) -> list[PlanItem]:
        """Every tree of the plan, in the plan's order (models, dtypes, attn, cells, context
        lengths)."""
        out: list[PlanItem] = []
        for entry in self.models:
            for dtype in entry.dtypes:
                batch_sizes, seq_lens = entry.grids[dtype]
                for attn in self.attns:
                    out.extend(PlanItem(entry.name, Workload(
                        phase=self.phase, batch_size=b, seq_len=s, context_len=c,
                        optimizer=self.optimizer, dtype=dtype, attn=attn, device=self.device),
                        entry.source)
                        for b in batch_sizes for s in seq_lens for c in self.context_lens)
        return out

    def settings(self) -> dict[str, Any]:
        """The plan's settings as plain values (for logs and experiment tracking)."""
        return {"name": self.name, "plan_file": str(self.path), "output": str(self.output),
                "models": [m.name for m in self.models], "dtypes": self.dtypes,
                "attn": self.attns, "device": self.device, "meter": self.meter,
                "timing": self.timing, "schema": self.schema, "phase": self.phase,
                "context_lens": self.context_lens, "optimizer": self.optimizer,
                "protocol": self.protocol.to_dict(), "items": len(self.items())}


# --------------------------------------------------------------------------------------------
# validation


def load_plan(path: str | os.PathLike, *, output: str | os.PathLike | None = None) -> Plan:
    """Read and validate a plan file; ``output`` overrides the plan's ``output``.

    Raises :class:`PlanError` (file, line, key) for anything wrong: unknown or duplicate keys,
    wrong types, unknown models, dtypes, attention implementations, meters or phases, a
    sequence length beyond a model's positions, an invalid protocol setting, an output that is
    not a ``.jsonl``/``.jsonl.gz`` file.
    """
    data, check, text = read_document(path, error=PlanError, what="plan",
                                      yaml_suffixes=("",))
    data = check.mapping(data if data is not None else {}, (), _TOP_KEYS)
    return _build_plan(Path(path), data, check, text, output)


def _required(data: dict, key: str, check: Checker) -> Any:
    if key not in data or data[key] is None:
        raise check.error((key,), "missing (required)")
    return data[key]


def _build_plan(path: Path, data: dict, check: Checker, text: str,
                output: str | os.PathLike | None) -> Plan:
    from irene.schema import ATTN_IMPLEMENTATIONS, DEFAULT_SCHEMA, DTYPES, SCHEMAS

    name = check.text(data["name"], ("name",)) if "name" in data else path.stem.split(".")[0]
    out = Path(output) if output is not None else \
        Path(check.text(_required(data, "output", check), ("output",))).expanduser()
    if not (out.name.endswith(".jsonl") or out.name.endswith(".jsonl.gz")):
        where = ("output",) if output is None else ()
        raise check.error(where, f"the output must be a .jsonl or .jsonl.gz file, got {out}")
    grid = _grid(_required(data, "grid", check), ("grid",), check)
    dtypes = check.one_or_list(data.get("dtypes", ["float32"]), ("dtypes",), DTYPES)
    dtype_grids = check.mapping(data.get("dtype_grids", {}) or {}, ("dtype_grids",), DTYPES)
    grids = {d: _grid(g, ("dtype_grids", d), check) for d, g in dtype_grids.items()}
    attns = check.one_or_list(data.get("attn", "eager"), ("attn",), ATTN_IMPLEMENTATIONS)
    device = _device(data.get("device", "cpu"), check)
    timing = check.boolean(data.get("timing", True), ("timing",))
    meter = _meter(data.get("meter", "none"), check, timing)
    schema = check.one_or_list(data.get("schema", DEFAULT_SCHEMA), ("schema",),
                               tuple(SCHEMAS))
    if len(schema) != 1:
        raise check.error(("schema",), "give one schema per plan")
    phase, context_lens, optimizer = _workload_settings(data, check)
    protocol = _protocol(data.get("protocol", {}), check)
    hub = check.boolean(data.get("hub", False), ("hub",))
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise check.error(("seed",), f"must be an integer >= 0, got {describe(seed)}")
    models = _models(_required(data, "models", check), check, path, hub, grid, grids, dtypes,
                     phase, max(context_lens))
    estimate = check.mapping(data.get("estimate", {}), ("estimate",), _ESTIMATE_KEYS)
    profile = None
    if "profile" in estimate:
        from irene.campaign.estimate import PROFILES

        profile = check.text(estimate["profile"], ("estimate", "profile"))
        if profile not in PROFILES and profile != "local":
            raise check.error(("estimate", "profile"),
                              f"unknown profile {profile!r}; known: local, {', '.join(PROFILES)}")
    budget = None
    if data.get("budget_minutes") is not None:
        budget = check.number(data["budget_minutes"], ("budget_minutes",))
        if not 0 < budget <= MAX_MINUTES:
            raise check.error(("budget_minutes",), f"must be > 0 and at most {MAX_MINUTES}, "
                                                   f"got {budget}")
    resources, attempts = _ray(data.get("ray", {}), check)
    plan = Plan(path=path, name=name, output=out, models=models, dtypes=dtypes, attns=attns,
                device=device, meter=meter, timing=timing, schema=schema[0], phase=phase,
                protocol=protocol, context_lens=context_lens, optimizer=optimizer, hub=hub,
                seed=seed,
                description=str(data.get("description", "") or ""), estimate_profile=profile,
                budget_minutes=budget, ray_resources=resources, ray_max_attempts=attempts,
                text=text)
    count = plan.count()
    if not count:
        raise check.error(("models",), "the plan makes no trees")
    if count > MAX_PLAN_ITEMS:
        raise check.error(("models",), f"the plan makes {count} trees, more than the "
                                       f"{MAX_PLAN_ITEMS} one plan may make: split it into "
                                       "several plans or shrink the grid")
    return plan


def _grid(value: Any, where: tuple, check: Checker) -> Grid:
    grid = check.mapping(value, where, _GRID_KEYS)
    for key in _GRID_KEYS:
        if key not in grid:
            raise check.error(where + (key,), "missing (required)")
    return (check.int_list(grid["batch_sizes"], where + ("batch_sizes",)),
            check.int_list(grid["seq_lens"], where + ("seq_lens",)))


def _device(value: Any, check: Checker) -> str:
    device = check.text(value, ("device",))
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise check.error(("device",), f"must be cpu, cuda or cuda:N, got {device!r}")
    return device


def _meter(value: Any, check: Checker, timing: bool) -> str:
    spec = check.text(value, ("meter",))
    for part in spec.split("+"):
        name, sep, arg = part.strip().partition(":")
        if name.lower() not in METER_NAMES:
            raise check.error(("meter",), f"unknown meter {part.strip()!r}; choose from "
                                          f"{', '.join(METER_NAMES)} (joined by +)")
        if name.lower() == "wattmeter" and not arg.strip():
            raise check.error(("meter",), "wattmeter needs its log: wattmeter:PATH.csv")
        if name.lower() in ("none", "auto") and "+" in spec:
            raise check.error(("meter",), f"{name} cannot be combined with other meters")
    problem = replay_problem(spec.lower() != "none", timing)
    if problem:
        raise check.error(("meter",), f"{problem}: set meter: none for a features-only plan "
                                      "(timing: false)")
    return spec


def _workload_settings(data: dict, check: Checker) -> tuple[str, list[int], str | None]:
    """(phase, context lengths, optimiser) of the plan, checked by the workload's rules
    (:class:`~irene.workload.Workload`) for every context length."""
    phase = check.text(data.get("phase", "forward"), ("phase",))
    context_lens = [0] if data.get("context_lens") is None else \
        check.int_list(data["context_lens"], ("context_lens",), low=0)  # which phase: Workload
    optimizer = None if data.get("optimizer") is None else \
        check.text(data["optimizer"], ("optimizer",)).lower()
    listed = phase in CACHED_PHASES and isinstance(data.get("context_lens"), list)
    for i, c in enumerate(context_lens):  # a phase that takes them: say which one is wrong
        last = _workload(check, lambda e, i=i: (PLAN_NAMES[e.field],) + (
            (i,) if listed and e.field == "context_len" else ()),
            phase=phase, context_len=c, optimizer=optimizer)
    return phase, context_lens, last.optimizer


def _workload(check: Checker, where: Callable[[WorkloadError], tuple],
              **settings: Any) -> Workload:
    """The :class:`~irene.workload.Workload` of ``settings``; a rule it breaks is reported at
    the plan key ``where(error)`` names."""
    try:
        return Workload(**settings)
    except WorkloadError as exc:
        raise check.error(where(exc), exc.text(PLAN_NAMES, with_field=False)) from exc


def _protocol(value: Any, check: Checker) -> Protocol:
    names = tuple(f.name for f in fields(Protocol))
    data = check.mapping(value if value is not None else {}, ("protocol",), names)
    typed: dict[str, Any] = {}
    for key, v in data.items():
        default = getattr(Protocol(), key)
        where = ("protocol", key)
        if isinstance(default, bool):
            typed[key] = check.boolean(v, where)
        elif key == "threads":
            typed[key] = None if v is None else check.positive_int(v, where, limit=1024)
        elif isinstance(default, int):
            if isinstance(v, bool) or not isinstance(v, int):
                raise check.error(where, f"must be an integer, got {describe(v)}")
            typed[key] = v
        else:
            typed[key] = check.number(v, where)
    try:
        return Protocol(**typed)
    except ValueError as exc:
        bad = next((k for k in typed if f".{k} " in str(exc) or f".{k}" in str(exc)), None)
        raise check.error(("protocol", bad) if bad else ("protocol",), str(exc)) from exc


def _ray(value: Any, check: Checker) -> tuple[dict[str, float], int]:
    data = check.mapping(value if value is not None else {}, ("ray",), _RAY_KEYS)
    resources: dict[str, float] = {}
    raw = data.get("resources", {}) or {}
    if not isinstance(raw, dict):
        raise check.error(("ray", "resources"), "must be a mapping of resource: amount")
    for key, amount in raw.items():
        number = check.number(amount, ("ray", "resources", key))
        if not number > 0:
            raise check.error(("ray", "resources", key), "must be > 0")
        resources[str(key)] = number
    attempts = data.get("max_attempts", 3)
    attempts = check.positive_int(attempts, ("ray", "max_attempts"), limit=100)
    return resources, attempts


def _models(value: Any, check: Checker, plan_path: Path, hub: bool, grid: Grid,
            dtype_grids: dict[str, Grid], dtypes: list[str], phase: str,
            context_len: int = 0) -> list[ModelEntry]:
    from irene.schema import DTYPES

    if not isinstance(value, list) or not value:
        raise check.error(("models",), f"must be a non-empty list of model names, got "
                                       f"{describe(value)}")
    entries: list[ModelEntry] = []
    for i, raw in enumerate(value):
        where = ("models", i)
        if isinstance(raw, str):
            raw = {"name": raw}
            name_path = where
        else:
            check.mapping(raw, where, _MODEL_KEYS)
            name_path = where + ("name",)
        name = check.text(raw.get("name"), name_path)
        if any(e.name == name for e in entries):
            raise check.error(name_path, f"model {name!r} is listed twice")
        own_dtypes = check.one_or_list(raw["dtypes"], where + ("dtypes",), DTYPES) \
            if "dtypes" in raw else list(dtypes)
        own_b = check.int_list(raw["batch_sizes"], where + ("batch_sizes",)) \
            if "batch_sizes" in raw else None
        own_s = check.int_list(raw["seq_lens"], where + ("seq_lens",)) \
            if "seq_lens" in raw else None
        grids: dict[str, Grid] = {}
        seq_source: dict[int, tuple] = {}
        for dtype in own_dtypes:
            base = dtype_grids.get(dtype, grid)
            base_path = ("dtype_grids", dtype) if dtype in dtype_grids else ("grid",)
            grids[dtype] = (list(own_b if own_b is not None else base[0]),
                            list(own_s if own_s is not None else base[1]))
            for s in grids[dtype][1]:
                seq_source.setdefault(s, where + ("seq_lens",) if own_s is not None
                                      else base_path + ("seq_lens",))
        for s, at in seq_source.items():  # the phase's rules (decode: one token per step)
            _workload(check, lambda _, at=at: at, phase=phase, seq_len=s, context_len=context_len)
        entry = ModelEntry(name=name, source=_model_source(name, plan_path, hub, check,
                                                           name_path),
                           dtypes=own_dtypes, grids=grids)
        _check_positions(entry, check, where, seq_source, context_len)
        entries.append(entry)
    return entries


def _model_source(name: str, plan_path: Path, hub: bool, check: Checker,
                  where: tuple) -> str:
    """What to build for a model name: a built-in name, a local path (relative to the plan
    file, else to the current directory), or a Hub name when ``hub`` is on."""
    from irene.tracing.registry import builtin_name

    if builtin_name(name) is not None:
        return name
    for base in (plan_path.parent, Path.cwd()):
        candidate = (base / name).expanduser()
        if candidate.exists():
            if candidate.is_dir() and not (candidate / "config.json").is_file():
                raise check.error(where, f"{candidate}: no config.json in this directory")
            return str(candidate.resolve())
    if hub and re.fullmatch(r"[\w.-]+/[\w.-]+", name):
        return name
    from irene.tracing.registry import list_models

    raise check.error(where, f"unknown model {name!r}: not built in, no such path beside the "
                             f"plan or here{'' if hub else ', Hub names need hub: true'}; "
                             f"built-in models: {', '.join(list_models())}")


def _check_positions(entry: ModelEntry, check: Checker, where: tuple,
                     seq_source: dict[int, tuple], context_len: int = 0) -> None:
    """Refuse a sequence length (after ``context_len`` cached tokens) beyond the model's
    position embeddings (built-ins and local configs; Hub names are checked when the model is
    built)."""
    from irene.tracing.registry import (
        UnknownModelError,
        builtin_name,
        load_config,
        max_sequence_length,
    )

    if builtin_name(entry.source) is None and not os.path.exists(entry.source):
        return  # a Hub name: its config is fetched when the model is built
    try:
        config = load_config(entry.source, hub=False)
    except UnknownModelError as exc:
        raise check.error(where, str(exc)) from exc
    limit = max_sequence_length(config)
    too_long = [s for s in seq_source if limit is not None and s + context_len > limit]
    if too_long and context_len and too_long[0] <= limit:
        raise check.error(("context_lens",), f"context length {context_len} + sequence length "
                                             f"{too_long[0]} exceeds the {limit} positions of "
                                             f"{entry.name}")
    if too_long:
        raise check.error(seq_source[too_long[0]], f"sequence length {too_long[0]} exceeds "
                                                   f"the {limit} positions of {entry.name}")
