"""Fitting the hardware model to measured workloads: regularised least squares toward priors.

The unknowns (all positive, fitted in natural log):

* the shared :class:`~irene.hardware.model.HardwareParams` (per-class efficiencies, overlap,
  fp8 / mxfp4 efficiency, link, and the power shares), each with its data-sheet prior
  (:data:`~irene.hardware.model.PRIORS`);
* per runtime (one per data version): per-step overhead, kernel gap, host dispatch (eager only)
  and efficiency multipliers of the matmul / moe / attention classes (prior 1);
* per measured GPU: multipliers (prior 1) of idle draw, energy per byte, memory and compute
  efficiency — a GPU that is not measured uses 1, i.e. the shared fit on its data sheet.

The objective sums, per measured row, the log errors of step time (weight 3: the measured
throughput pins the physics that the energy then follows; chosen on in-sample fits of all
rows, 1 / 3 / 8 tried, never on held-out data) and of energy per token (robust ``soft_l1``;
each model's rows weighted 1/√n so that no model dominates) and, per
unknown, ``(log θ − log θ_prior) / σ``: with a family held out, a parameter only that family
identified stays at its prior instead of wandering. :func:`fit` runs several start points
(prior + noise) and keeps the best; :class:`FitResult` keeps every start's solution so the
spread of predictions over start points can be reported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import numpy as np

from irene.hardware.data import FitRow
from irene.hardware.gpus import gpu_spec
from irene.hardware.model import (
    COMPUTE_CLASSES,
    EFF_BOUNDS,
    EFF_COMPUTE_PRIOR,
    EFF_MEMORY_PRIOR,
    EFF_SIGMA,
    PRIORS,
    HardwareParams,
)
from irene.hardware.runtime import CLASSES, RUNTIMES, RuntimeProfile, runtime_profile
from irene.hardware.work import WorkArrays, evaluate

#: runtime unknowns: name -> (sigma, low, high); values' priors are the profile's
RUNTIME_UNKNOWNS = {"step_overhead_s": (1.0, 1e-5, 0.2), "launch_gap_s": (0.8, 1e-8, 1e-3),
                    "dispatch_s": (0.8, 1e-7, 1e-3)}
RUNTIME_EFF_CLASSES = ("matmul", "moe", "attention")
RUNTIME_EFF = (0.3, 0.2, 5.0)
#: per-GPU multipliers: name -> (sigma, low, high)
GPU_UNKNOWNS = {"idle": (0.3, 0.3, 3.0), "byte": (0.3, 0.3, 3.0), "memory": (0.2, 0.4, 2.5),
                "compute": (0.25, 0.3, 3.0)}


@dataclass(frozen=True)
class Unknown:
    """One fitted number: where it goes, its prior, spread (log) and bounds."""

    key: tuple[str, ...]
    prior: float
    sigma: float
    low: float
    high: float


def unknowns(runtimes: Sequence[str], gpus: Sequence[str]) -> list[Unknown]:
    """The unknowns of a fit over ``runtimes`` and ``gpus`` (module docstring)."""
    out: list[Unknown] = []
    for c in COMPUTE_CLASSES:
        out.append(Unknown(("eff_compute", c), EFF_COMPUTE_PRIOR[c], EFF_SIGMA, *EFF_BOUNDS))
        out.append(Unknown(("eff_memory", c), EFF_MEMORY_PRIOR[c], EFF_SIGMA, *EFF_BOUNDS))
    for name, p in PRIORS.items():
        out.append(Unknown((name,), p.value, p.sigma, p.low, p.high))
    for r in runtimes:
        profile = RUNTIMES[r]
        for name, (sigma, low, high) in RUNTIME_UNKNOWNS.items():
            prior = getattr(profile, name)
            if prior <= 0:
                continue  # CUDA graphs: no host dispatch per kernel
            out.append(Unknown(("runtime", r, name), prior, sigma, low, high))
        for c in RUNTIME_EFF_CLASSES:
            out.append(Unknown(("runtime", r, "efficiency", c), 1.0, *RUNTIME_EFF))
    for g in gpus:
        for name, (sigma, low, high) in GPU_UNKNOWNS.items():
            out.append(Unknown(("gpu", g, name), 1.0, sigma, low, high))
    return out


@dataclass
class Fitted:
    """A fitted hardware model: shared parameters, runtimes and per-GPU multipliers."""

    params: HardwareParams
    runtimes: dict[str, RuntimeProfile]
    gpu_multipliers: dict[str, dict[str, float]] = field(default_factory=dict)

    def params_for(self, gpu: str) -> HardwareParams:
        """The parameters on ``gpu`` (its multipliers applied; 1 for a GPU never measured)."""
        m = self.gpu_multipliers.get(gpu_spec(gpu).name, {})
        if not m:
            return self.params
        p = self.params

        def scaled(table: dict[str, float], factor: float) -> dict[str, float]:
            return {k: float(np.clip(v * factor, *EFF_BOUNDS)) for k, v in table.items()}

        return replace(p, idle_scale=float(np.clip(p.idle_scale * m.get("idle", 1.0),
                                                   PRIORS["idle_scale"].low,
                                                   PRIORS["idle_scale"].high)),
                       byte_share=float(np.clip(p.byte_share * m.get("byte", 1.0),
                                                PRIORS["byte_share"].low,
                                                PRIORS["byte_share"].high)),
                       eff_memory=scaled(dict(p.eff_memory), m.get("memory", 1.0)),
                       eff_compute=scaled(dict(p.eff_compute), m.get("compute", 1.0)))

    def runtime(self, name: str) -> RuntimeProfile:
        """The fitted profile of runtime ``name`` (the prior profile if it was not fitted)."""
        key = runtime_profile(name).name
        return self.runtimes.get(key, RUNTIMES[key])


def _by_key(spec: Sequence[Unknown], values: Sequence[Any]) -> tuple[
        dict[str, Any], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Each unknown's value (a number, or a column of numbers) put where its key says: the
    shared parameters, a runtime profile's fields (and efficiencies), or a GPU's multipliers."""
    shared: dict[str, Any] = {"eff_compute": {}, "eff_memory": {}}
    runtimes: dict[str, dict[str, Any]] = {}
    gpus: dict[str, dict[str, Any]] = {}
    for u, v in zip(spec, values, strict=True):
        if u.key[0] in ("eff_compute", "eff_memory"):
            shared[u.key[0]][u.key[1]] = v
        elif u.key[0] == "runtime":
            slot = runtimes.setdefault(u.key[1], {"efficiency": {}})
            if u.key[2] == "efficiency":
                slot["efficiency"][u.key[3]] = v
            else:
                slot[u.key[2]] = v
        elif u.key[0] == "gpu":
            gpus.setdefault(u.key[1], {})[u.key[2]] = v
        else:
            shared[u.key[0]] = v
    return shared, runtimes, gpus


def assemble(x: np.ndarray, spec: Sequence[Unknown]) -> Fitted:
    """The :class:`Fitted` model of log-values ``x``."""
    values = [float(min(max(v, u.low), u.high)) for u, v in zip(spec, np.exp(x), strict=True)]
    shared, runtimes, gpus = _by_key(spec, values)
    profiles = {name: replace(RUNTIMES[name], **values_) for name, values_ in runtimes.items()}
    return Fitted(HardwareParams(**shared), profiles, gpus)  # type: ignore[arg-type]


def _views(X: np.ndarray, spec: Sequence[Unknown]) -> tuple[SimpleNamespace,
                                                           dict[str, SimpleNamespace],
                                                           dict[str, dict[str, np.ndarray]]]:
    """Duck-typed parameters whose numbers are (K, 1) arrays, one row per parameter set of the
    (K, unknowns) log-values ``X`` (the fit's finite differences in one evaluation)."""
    values = np.exp(X)
    low = np.array([u.low for u in spec])
    high = np.array([u.high for u in spec])
    values = np.clip(values, low, high)
    shared, runtimes, gpus = _by_key(spec, [values[:, j:j + 1] for j in range(len(spec))])
    params = SimpleNamespace(**shared)
    views = {}
    for name, slot in runtimes.items():
        base = RUNTIMES[name]
        eff = {c: slot["efficiency"].get(c, 1.0) for c in CLASSES}  # type: ignore[union-attr]
        views[name] = SimpleNamespace(
            dispatch_s=slot.get("dispatch_s", base.dispatch_s),
            launch_gap_s=slot.get("launch_gap_s", base.launch_gap_s),
            step_overhead_s=slot.get("step_overhead_s", base.step_overhead_s), efficiency=eff)
    return params, views, gpus


def _params_view(params: SimpleNamespace, m: dict[str, np.ndarray]) -> SimpleNamespace:
    """``params`` with one GPU's multipliers applied (as :meth:`Fitted.params_for`)."""
    if not m:
        return params
    out = SimpleNamespace(**vars(params))
    out.idle_scale = np.clip(params.idle_scale * m["idle"], PRIORS["idle_scale"].low,
                             PRIORS["idle_scale"].high)
    out.byte_share = np.clip(params.byte_share * m["byte"], PRIORS["byte_share"].low,
                             PRIORS["byte_share"].high)
    out.eff_memory = {k: np.clip(v * m["memory"], *EFF_BOUNDS)
                      for k, v in params.eff_memory.items()}
    out.eff_compute = {k: np.clip(v * m["compute"], *EFF_BOUNDS)
                       for k, v in params.eff_compute.items()}
    return out


@dataclass
class Group:
    """The rows of one (GPU, runtime) as arrays, with their measurements and weights."""

    gpu: str
    runtime: str
    index: np.ndarray
    arrays: WorkArrays
    seconds: np.ndarray
    joules: np.ndarray
    weight: np.ndarray


def groups_of(rows: Sequence[FitRow], arrays: WorkArrays | None = None) -> list[Group]:
    """``rows`` split by (GPU, runtime) (``arrays``: their WorkArrays, built if not given)."""
    arrays = arrays if arrays is not None else WorkArrays.of([r.work for r in rows])
    counts: dict[tuple[str, str], int] = {}
    for r in rows:
        counts[(r.version, r.model_id)] = counts.get((r.version, r.model_id), 0) + 1
    weight = np.array([1.0 / math.sqrt(counts[(r.version, r.model_id)]) for r in rows])
    keys = sorted({(gpu_spec(r.gpu).name, r.runtime) for r in rows})
    out = []
    for gpu, runtime in keys:
        idx = np.array([i for i, r in enumerate(rows)
                        if gpu_spec(r.gpu).name == gpu and r.runtime == runtime])
        out.append(Group(gpu, runtime, idx, arrays.take(idx),
                         np.array([rows[i].seconds_per_step for i in idx]),
                         np.array([rows[i].joules_per_token for i in idx]), weight[idx]))
    return out


def predict_group(model: Fitted, g: Group) -> tuple[np.ndarray, np.ndarray]:
    """(seconds per step, joules per token) of a group's rows under ``model``."""
    spec = gpu_spec(g.gpu)
    t, e = evaluate(g.arrays, spec, model.params_for(g.gpu), model.runtime(g.runtime))
    return t, e * g.arrays.gpus / g.arrays.tokens


def predict_rows(model: Fitted, rows: Sequence[FitRow],
                 arrays: WorkArrays | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(seconds per step, joules per token) of ``rows``."""
    seconds, joules = np.zeros(len(rows)), np.zeros(len(rows))
    for g in groups_of(rows, arrays):
        seconds[g.index], joules[g.index] = predict_group(model, g)
    return seconds, joules


@dataclass
class FitResult:
    """The best fit, every start's fit, and the objective of each."""

    best: Fitted
    starts: list[Fitted]
    costs: list[float]
    spec: list[Unknown]
    rows: int


def fit(rows: Sequence[FitRow], *, starts: int = 3, seed: int = 0,
        arrays: WorkArrays | None = None, time_weight: float = 3.0,
        prior_weight: float = 1.0, max_nfev: int = 200) -> FitResult:
    """Fit the hardware model to ``rows`` (module docstring); ``starts`` start points: the prior
    and ``starts − 1`` random perturbations of it (seeded)."""
    from scipy.optimize import least_squares

    rows = [r for r in rows if r.trainable]
    if not rows:
        raise ValueError("no rows to fit")
    arrays = None if arrays is None or len(arrays) != len(rows) else arrays
    groups = groups_of(rows, arrays)
    spec = unknowns(sorted({r.runtime for r in rows}), sorted({g.gpu for g in groups}))
    x_prior = np.log([u.prior for u in spec])
    sigma = np.array([u.sigma for u in spec])
    lo, hi = np.log([u.low for u in spec]), np.log([u.high for u in spec])
    scale = math.sqrt(prior_weight)

    def residuals(X: np.ndarray) -> np.ndarray:
        """(K, residuals) for the (K, unknowns) log-values ``X``."""
        params, views, multipliers = _views(X, spec)
        parts = []
        for g in groups:
            view = _params_view(params, multipliers.get(g.gpu, {}))
            runtime = views.get(g.runtime, RUNTIMES[g.runtime])
            t, e = evaluate(g.arrays, gpu_spec(g.gpu), view, runtime)  # type: ignore[arg-type]
            e = e * g.arrays.gpus / g.arrays.tokens
            parts.append(g.weight * time_weight * (np.log(t) - np.log(g.seconds)))
            parts.append(g.weight * (np.log(e) - np.log(g.joules)))
        parts.append(scale * (X - x_prior) / sigma)
        return np.concatenate(parts, axis=1)

    def residual(x: np.ndarray) -> np.ndarray:
        return residuals(x[None, :])[0]

    def jacobian(x: np.ndarray) -> np.ndarray:
        step = 1e-6 * np.where(x > lo + 2e-6, -1.0, 1.0)  # stay inside the bounds
        X = np.vstack([x, x + np.diag(step)])
        R = residuals(X)
        return ((R[1:] - R[0]) / step[:, None]).T

    rng = np.random.default_rng(seed)
    results: list[tuple[float, np.ndarray]] = []
    for k in range(starts):
        x0 = x_prior if k == 0 else x_prior + rng.normal(0.0, 1.0, len(spec)) * sigma
        x0 = np.clip(x0, lo + 1e-6, hi - 1e-6)
        with np.errstate(all="ignore"):
            sol = least_squares(residual, x0, jac=jacobian, bounds=(lo, hi), loss="soft_l1",
                                f_scale=0.2, x_scale=1.0, max_nfev=max_nfev, ftol=1e-10,
                                xtol=1e-10, gtol=1e-10)
        results.append((float(sol.cost), sol.x))
    order = sorted(range(len(results)), key=lambda i: results[i][0])
    fits = [assemble(results[i][1], spec) for i in order]
    return FitResult(best=fits[0], starts=fits, costs=[results[i][0] for i in order], spec=spec,
                     rows=len(rows))
