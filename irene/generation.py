"""Estimating the energy of text generation: a prefill, then one decode step per new token.

::

    from irene.generation import estimate_generation
    est = estimate_generation("gpt2", "runs/model", prompt_len=512, new_tokens=256, batch_size=1)
    est.prefill_j, est.decode_j, est.total_j, est.per_generated_token_j   # joules

Generating ``N`` new tokens for ``B`` sequences after a ``P``-token prompt costs (J)::

    E = E_prefill(B, P) + Σ_{L = P}^{P + N − 1} E_decode(B, L)

where ``E_prefill`` is the prefill of the prompt (a ``prefill`` tree at seq_len ``P``) and
``E_decode(B, L)`` one decode step: each sequence feeds one token that attends to ``L`` cached
tokens (a ``decode`` tree at context length ``L``, see :mod:`irene.tracing.generation`). Decode step
``k = 0 … N − 1`` feeds the ``k``-th new token at context ``P + k``. (``transformers``' ``generate``
stops one step earlier: the prefill's logits already give the first new token, and the last token
it returns is never fed back. Ask for ``N − 1`` new tokens to count that way.)

**How the decode sum is formed.** Decode steps are not traced one by one. ``E_decode`` is traced
and predicted at a few context lengths and summed with a composite quadrature rule over the
integers. The range ``[P, P + N − 1]`` is cut into ``s`` equal segments; each segment's ends and
middle are traced (``2s + 1`` lengths, rounded to integers) and on each segment::

    Σ_{L in segment} E_decode(L)  ≈  Σ_k w_k · E_decode(L_k),     w_k = Σ_{L in segment} ℓ_k(L)

with ``ℓ_k`` the Lagrange basis polynomials through the segment's three traced lengths: the exact
sum over every integer context length of the quadratic through the traced points (a segment owns
its first length; the last segment also its last). The rule is exact when ``E_decode`` is
quadratic in ``L`` on each segment — affine a fortiori: a decode step's FLOPs and bytes are
exactly affine in ``L``, and so is a predictor linear in them. It starts with one segment (the
ends and the middle: 3 traces) and checks itself against straight lines between the same traced
points (equal for an affine law): while the two sums differ by more than ``tolerance`` (default
0.1 %), the segments are halved (the finer rule reuses every trace), up to
:data:`MAX_DECODE_POINTS` traced lengths. Their final difference is reported as the sum's error
estimate (:attr:`GenerationEstimate.sum_error_j`): it is the curvature the quadratic rule accounts
for, on the safe side for a smooth law (the quadratic rule's own error is then far smaller).
When ``N ≤ 3`` every step is traced and the sum is exact. The same weights give every node's
decode energy, so the per-module breakdown of the decode phase is the weighted sum of the traced
trees.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from irene.limits import DEFAULT_TOLERANCE_PCT, MAX_DECODE_POINTS
from irene.schema import FEATURE_FIELDS
from irene.tree import Node, Tree

if TYPE_CHECKING:
    from irene.model import IreneRegressor

#: features that add up over decode steps (the rest are averaged; parameters stay as they are)
_SUMMED_FEATURES = ("flops", "mem_bytes", "times_mean", "gpu_energy_mean")

SUM_RULE = ("composite quadratic rule over the integers: [P, P+N−1] cut into equal segments, "
            "each summed exactly as the quadratic through its traced ends and middle; segments "
            "halved until it agrees within the tolerance with straight lines between the same "
            "points (whose difference is the error estimate)")


# --------------------------------------------------------------------------------------------
# the rule


def decode_context_lens(prompt_len: int, new_tokens: int, segments: int = 1) -> list[int]:
    """The decode context lengths the rule with ``segments`` segments traces: the segments'
    ends and middles over ``[prompt_len, prompt_len + new_tokens − 1]`` (``2·segments + 1``
    lengths, rounded), or every length when there are no more than that. The lengths of
    ``s`` segments are among those of ``2s``."""
    if prompt_len < 1 or new_tokens < 1 or segments < 1:
        raise ValueError(f"prompt length, new tokens and segments must be >= 1, got "
                         f"{prompt_len}, {new_tokens}, {segments}")
    last = prompt_len + new_tokens - 1
    if new_tokens <= 2 * segments + 1:
        return list(range(prompt_len, last + 1))
    return [round(prompt_len + k * (last - prompt_len) / (2 * segments))
            for k in range(2 * segments + 1)]


def _scaled(lengths: Sequence[float] | np.ndarray, first: int, count: int) -> np.ndarray:
    """Context lengths mapped to about [-1, 1] over the summed range (conditioning)."""
    centre = first + (count - 1) / 2
    half = max(1.0, (count - 1) / 2)
    return (np.asarray(lengths, dtype=np.float64) - centre) / half


def sum_weights(lengths: Sequence[int], first: int, count: int) -> np.ndarray:
    """Weights ``w`` with ``Σ_k w_k f(lengths[k]) = Σ_{L=first}^{first+count−1} f(L)`` for every
    polynomial ``f`` of degree < len(lengths), shape [K] (interpolatory rule on the integers)."""
    nodes = _scaled(lengths, first, count)
    targets = _scaled(np.arange(first, first + count), first, count)
    degree = len(nodes)
    vandermonde = np.vander(nodes, degree, increasing=True).T  # [j, k] = t_k ** j
    moments = np.array([np.sum(targets ** j) for j in range(degree)])
    return np.linalg.solve(vandermonde, moments)


def composite_weights(prompt_len: int, new_tokens: int, segments: int) -> dict[int, float]:
    """{context length: weight} of the composite quadratic rule with ``segments`` segments (see
    the module docstring); every length with weight 1 when they are all traced."""
    lengths = decode_context_lens(prompt_len, new_tokens, segments)
    if len(lengths) == new_tokens:
        return dict.fromkeys(lengths, 1.0)
    weights = dict.fromkeys(lengths, 0.0)
    for j in range(segments):
        a, m, b = lengths[2 * j: 2 * j + 3]
        owned = b - a + (1 if j == segments - 1 else 0)  # a segment owns its first length
        for length, w in zip((a, m, b), sum_weights((a, m, b), a, owned), strict=True):
            weights[length] += float(w)
    return weights


def linear_weights(lengths: Sequence[int], first: int, count: int) -> dict[int, float]:
    """{context length: weight} of the sum over ``[first, first + count − 1]`` of the straight
    lines between consecutive traced ``lengths`` (sorted, spanning the range): the rule's check."""
    weights = dict.fromkeys(lengths, 0.0)
    for i in range(len(lengths) - 1):
        a, b = lengths[i], lengths[i + 1]
        owned = b - a + (1 if i == len(lengths) - 2 else 0)
        for length, w in zip((a, b), sum_weights((a, b), a, owned), strict=True):
            weights[length] += float(w)
    return weights


def piecewise_curve(lengths: Sequence[int], energies: Sequence[float], at: np.ndarray,
                    segments: int) -> np.ndarray:
    """The rule's interpolant evaluated ``at``: on each segment the quadratic through its three
    traced points (straight lines between points when every length is traced), J."""
    x, y = np.asarray(lengths, float), np.asarray(energies, float)
    if len(x) != 2 * segments + 1:
        return np.interp(at, x, y)
    out = np.empty(len(at))
    for j in range(segments):
        a, b = x[2 * j], x[2 * j + 2]
        inside = (at >= a) & ((at < b) | (j == segments - 1))
        coefficients = np.polyfit(x[2 * j: 2 * j + 3] - a, y[2 * j: 2 * j + 3], 2)
        out[inside] = np.polyval(coefficients, at[inside] - a)
    return out


@dataclass
class DecodeSum:
    """The decode sum and how it was formed: ``segments`` of the final rule, its ``weights``
    {context length: weight}, ``total_j``, and ``linear_j``: the sum of straight lines between
    the same traced points (equal to ``total_j`` for an affine law)."""

    segments: int
    weights: dict[int, float]
    total_j: float
    linear_j: float

    @property
    def error_j(self) -> float:
        """|quadratic rule − straight lines through the same points|, J: the curvature the
        rule accounts for, an error estimate on the safe side for a smooth law (the quadratic
        rule's own error is then much smaller); 0 when every step is traced."""
        return 0.0 if self.exact else abs(self.total_j - self.linear_j)

    @property
    def exact(self) -> bool:
        """Every decode step was traced."""
        return all(w == 1.0 for w in self.weights.values())


def refine_decode_sum(energy_at: Callable[[int], float], prompt_len: int, new_tokens: int, *,
                      tolerance_pct: float = DEFAULT_TOLERANCE_PCT,
                      max_points: int = MAX_DECODE_POINTS) -> DecodeSum:
    """The decode sum of the module docstring, calling ``energy_at(context_len)`` (J of one
    decode step) once per traced length."""
    cache: dict[int, float] = {}
    segments = 1
    while True:
        weights = composite_weights(prompt_len, new_tokens, segments)
        for length in weights:
            if length not in cache:
                cache[length] = float(energy_at(length))
        total = sum(w * cache[length] for length, w in weights.items())
        linear = sum(w * cache[length] for length, w in
                     linear_weights(list(weights), prompt_len, new_tokens).items())
        rule = DecodeSum(segments, weights, total, linear)
        settled = rule.error_j <= tolerance_pct / 100 * abs(total)
        finer = len(decode_context_lens(prompt_len, new_tokens, 2 * segments))
        if rule.exact or settled or finer > max_points:
            return rule
        segments *= 2


# --------------------------------------------------------------------------------------------
# trees


def weighted_tree(trees: Sequence[Tree], weights: Sequence[float], *, label: str,
                  extra_meta: dict[str, Any]) -> Tree:
    """The node-by-node weighted sum ``Σ_k w_k · tree_k`` of predicted trees of one structure:
    ``predicted_energy`` and the additive work features (FLOPs, bytes, time, GPU energy) are
    summed, utilisation and clocks averaged, parameter counts kept."""
    base = trees[0]
    by_scope = [{n.scope: n for n in tree.nodes()} for tree in trees]
    total_weight = float(sum(weights))

    def combine(node: Node) -> Node:
        parts = [scopes.get(node.scope) for scopes in by_scope]
        if any(p is None or p.predicted_energy is None for p in parts):
            raise ValueError(f"decode trees differ at node {node.scope!r}: they cannot be summed")
        features = dict(node.features)
        for name in FEATURE_FIELDS:
            if name == "num_parameters":
                continue
            value = sum(w * p.features[name] for w, p in zip(weights, parts, strict=True))
            features[name] = value if name in _SUMMED_FEATURES else value / total_weight
        energy = sum(w * p.predicted_energy for w, p in zip(weights, parts, strict=True))
        return Node(id=node.id, scope=node.scope, parent_name=node.parent_name, level=node.level,
                    instance_type=node.instance_type, type=node.type, features=features,
                    predicted_energy=float(energy), extra=dict(node.extra),
                    children=[combine(child) for child in node.children])

    meta = {**base.meta, **extra_meta, "label": label}
    return Tree(model_name=base.model_name, batch_size=base.batch_size, seq_len=base.seq_len,
                root=combine(base.root), meta=meta)


@dataclass
class GenerationEstimate:
    """The predicted energy of generating ``new_tokens`` tokens for ``batch_size`` sequences
    after a ``prompt_len``-token prompt (all energies in joules).

    ``prefill``: the predicted prefill tree; ``decode_trees``: the predicted decode steps at the
    traced context lengths (sorted); ``decode_sum``: how they were summed (:class:`DecodeSum`);
    ``decode``: the derived tree of the whole decode phase (every node: its energy summed over
    the ``new_tokens`` steps).
    """

    model_name: str
    batch_size: int
    prompt_len: int
    new_tokens: int
    prefill: Tree
    decode_trees: list[Tree]
    decode_sum: DecodeSum
    decode: Tree
    notes: list[str] = field(default_factory=list)

    @property
    def context_lens(self) -> list[int]:
        """The traced decode context lengths."""
        return [t.key.context_len for t in self.decode_trees]

    @property
    def weights(self) -> list[float]:
        """The traced decode trees' weights in the decode sum."""
        return [self.decode_sum.weights.get(length, 0.0) for length in self.context_lens]

    @property
    def prefill_j(self) -> float:
        return float(self.prefill.root.predicted_energy)

    @property
    def decode_j(self) -> float:
        return float(self.decode.root.predicted_energy)

    @property
    def total_j(self) -> float:
        return self.prefill_j + self.decode_j

    @property
    def generated_tokens(self) -> int:
        """Tokens generated in all: ``batch_size`` × ``new_tokens``."""
        return self.batch_size * self.new_tokens

    @property
    def per_generated_token_j(self) -> float:
        """Everything (prefill included) per generated token."""
        return self.total_j / self.generated_tokens

    @property
    def decode_per_token_j(self) -> float:
        """The decode phase per generated token (its mean over the context lengths)."""
        return self.decode_j / self.generated_tokens

    @property
    def prefill_per_prompt_token_j(self) -> float:
        return self.prefill_j / (self.batch_size * self.prompt_len)

    @property
    def sum_error_j(self) -> float:
        """The decode sum's error estimate (see :class:`DecodeSum`), J."""
        return self.decode_sum.error_j

    def step_energies(self) -> list[float]:
        """Predicted energy of one decode step at each traced context length, J."""
        return [float(t.root.predicted_energy) for t in self.decode_trees]

    def curve(self, samples: int = 96) -> tuple[np.ndarray, np.ndarray]:
        """(context lengths, J per generated token) of the rule's interpolant over
        ``[P, P + N − 1]``: one decode step's energy divided by ``batch_size``."""
        first, count = self.prompt_len, self.new_tokens
        at = np.unique(np.linspace(first, first + count - 1, min(samples, count)).round())
        used = [(x, e) for x, e in zip(self.context_lens, self.step_energies(), strict=True)
                if x in self.decode_sum.weights]
        energy = piecewise_curve([x for x, _ in used], [e for _, e in used], at,
                                 self.decode_sum.segments)
        return at, energy / self.batch_size

    def to_json(self, *, depth: int | None = None, top: int = 10) -> dict[str, Any]:
        """Plain data: totals, per token, how the decode sum was formed, and each phase's
        breakdown (:func:`irene.report.breakdown.breakdown_json`)."""
        from irene.report.breakdown import breakdown_json, explain_tree

        phases = {name: breakdown_json(explain_tree(tree, source="predicted", depth=depth,
                                                    top=top))
                  for name, tree in (("prefill", self.prefill), ("decode", self.decode))}
        rule = self.decode_sum
        return {
            "model": self.model_name, "batch_size": self.batch_size,
            "prompt_len": self.prompt_len, "new_tokens": self.new_tokens,
            "generated_tokens": self.generated_tokens,
            "energy_j": {"prefill": self.prefill_j, "decode": self.decode_j,
                         "total": self.total_j},
            "per_token_j": {"generated": self.per_generated_token_j,
                            "decode": self.decode_per_token_j,
                            "prefill_per_prompt_token": self.prefill_per_prompt_token_j},
            "decode_share": self.decode_j / self.total_j,
            "decode_sum": {
                "rule": "every step traced" if rule.exact else SUM_RULE,
                "context_lens": [self.prompt_len, self.prompt_len + self.new_tokens - 1],
                "steps": self.new_tokens, "segments": rule.segments,
                "traced": [{"context_len": length, "step_j": energy, "weight": weight,
                            "per_token_j": energy / self.batch_size}
                           for length, energy, weight in zip(self.context_lens,
                                                             self.step_energies(),
                                                             self.weights, strict=True)],
                "straight_lines_j": rule.linear_j, "error_estimate_j": rule.error_j,
                "error_estimate_pct": 100.0 * rule.error_j / self.decode_j,
            },
            "notes": list(self.notes),
            "phases": phases,
        }


def estimate_generation(model: str | Any, predictor: str | Path | IreneRegressor, *,
                        prompt_len: int, new_tokens: int, batch_size: int = 1,
                        tolerance_pct: float = DEFAULT_TOLERANCE_PCT,
                        max_points: int = MAX_DECODE_POINTS, device: str = "cpu",
                        dtype: str = "float32", attn: str = "eager", progress: bool = True,
                        warn: Callable[[str], None] = print, hub: bool = True,
                        model_name: str | None = None) -> GenerationEstimate:
    """Predict the energy of a generation (see the module docstring): trace and predict the
    prefill at ``prompt_len`` and decode steps at the context lengths the decode-sum rule asks
    for (3 to ``max_points``), and sum.

    ``model``: a built-in name, local path or Hub name (built once here), or a built
    ``transformers`` decoder. Raises :class:`irene.estimate.EstimateError` (or ValueError) when
    the predictor cannot be used here or the model cannot generate that far.
    """
    from tqdm import tqdm

    from irene.estimate import EstimateError, estimate_tree, load_predictor, needs_timing
    from irene.tracing.registry import build_model, max_sequence_length

    if isinstance(predictor, (str, Path)):
        predictor = load_predictor(predictor)
    name = model_name or (model if isinstance(model, str) else
                          getattr(model, "name_or_path", None) or type(model).__name__)
    # a predictor that reads structure only needs no weights: build once on the meta device
    where = device if needs_timing(predictor.required_features()) else "meta"
    built = build_model(model, attn=attn, dtype=dtype, device=where, hub=hub) \
        if isinstance(model, str) else model
    limit = max_sequence_length(built.config)
    if limit is not None and prompt_len + new_tokens > limit:
        raise EstimateError(f"{name}: a {prompt_len}-token prompt + {new_tokens} new tokens "
                            f"exceeds its {limit} positions")
    messages: dict[str, None] = {}
    bar = tqdm(desc=f"estimate {name}", unit="trace", disable=not progress, leave=False)

    def predicted(phase: str, seq_len: int, context_len: int) -> Tree:
        tree = estimate_tree(built, batch_size, seq_len, predictor, device=device, dtype=dtype,
                             attn=attn, progress=progress,
                             warn=lambda text: messages.setdefault(text), hub=hub,
                             phase=phase, context_len=context_len)
        tree.model_name = name
        bar.update()
        return tree

    try:
        prefill = predicted("prefill", prompt_len, 0)
        decoded: dict[int, Tree] = {}

        def energy_at(length: int) -> float:
            decoded[length] = predicted("decode", 1, length)
            return float(decoded[length].root.predicted_energy)

        rule = refine_decode_sum(energy_at, prompt_len, new_tokens,
                                 tolerance_pct=tolerance_pct, max_points=max_points)
    finally:
        bar.close()
    notes = phase_notes(predictor)
    if rule.error_j > tolerance_pct / 100 * abs(rule.total_j):
        notes.append(f"note: the decode sum did not settle within {tolerance_pct:g} % with "
                     f"{len(rule.weights)} traced context lengths (last change "
                     f"{100 * rule.error_j / abs(rule.total_j):.2g} %)")
    for text in [*messages, *notes]:
        warn(text)
    decode_trees = [decoded[length] for length in sorted(decoded)]
    used = [decoded[length] for length in rule.weights]
    last = prompt_len + new_tokens - 1
    decode = weighted_tree(
        used, list(rule.weights.values()),
        label=f"{name} · batch {batch_size} · decode, {new_tokens} steps @ context "
              f"{prompt_len}…{last}",
        extra_meta={"context_len": prompt_len, "units": _summed_units(used[0]),
                    "decode_sum": {"steps": new_tokens, "context_lens": [prompt_len, last],
                                   "traced_context_lens": list(rule.weights),
                                   "weights": list(rule.weights.values()),
                                   "segments": rule.segments,
                                   "error_estimate_j": rule.error_j,
                                   "rule": SUM_RULE}})
    return GenerationEstimate(
        model_name=name, batch_size=batch_size, prompt_len=prompt_len, new_tokens=new_tokens,
        prefill=prefill, decode_trees=decode_trees, decode_sum=rule, decode=decode,
        notes=notes)


def phase_notes(predictor: IreneRegressor) -> list[str]:
    """Warnings when the predictor was not trained on prefill or decode trees (its energies
    for them are then extrapolated from other workloads)."""
    phases = predictor.training_data.phases
    if not phases:
        return ["note: the predictor does not record which phases it was trained on (saved "
                "before phases were recorded); prefill and decode energies may be "
                "extrapolated from forward passes"]
    missing = [p for p in ("prefill", "decode") if p not in phases]
    if not missing:
        return []
    return [f"note: the predictor was trained on {', '.join(phases)} trees only: its "
            f"{' and '.join(missing)} energies are extrapolated from other workloads"]


def _summed_units(tree: Tree) -> dict[str, str]:
    units = dict(tree.meta.get("units", {}))
    for name in ("flops", "mem_bytes", "times_mean", "gpu_energy_mean", "predicted_energy"):
        if name in units:
            units[name] = f"{units[name]} — summed over every decode step of the generation"
    return units
