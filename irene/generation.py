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

**How the decode sum is formed.** Decode steps are not traced one by one. ``E_decode`` is traced and
predicted at ``K`` context lengths ``L_1 < … < L_K`` spread evenly over ``[P, P + N − 1]`` (both
ends included; ``K = 3`` by default) and::

    Σ_L E_decode(L)  ≈  Σ_k w_k · E_decode(L_k),     w_k = Σ_{L=P}^{P+N−1} ℓ_k(L)

with ``ℓ_k`` the Lagrange basis polynomials through the traced lengths: the exact sum over every
integer context length of the degree ``K − 1`` polynomial through the traced points. The rule is
exact when ``E_decode`` is a polynomial of degree ``≤ K − 1`` in ``L`` (an affine law a fortiori:
a decode step's FLOPs and bytes are exactly affine in ``L``, and so is a predictor that is linear
in them); when ``N ≤ K`` every step is traced and the sum is exact. The same weights give every
node's decode energy, so the per-module breakdown of the decode phase is the weighted sum of the
traced trees. As a check, :attr:`GenerationEstimate.affine_sum_j` is the sum of the least-squares
line through the traced points: how far the two disagree says how far the predictions are from
the affine law (with ``K = 3`` the quadratic rule absorbs a constant curvature exactly).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from irene.schema import FEATURE_FIELDS
from irene.tree import Node, Tree

if TYPE_CHECKING:
    from irene.model import IreneRegressor

#: traced decode context lengths by default (the ends and the middle of the range)
DEFAULT_DECODE_POINTS = 3
#: features that add up over decode steps (the rest are averaged; parameters stay as they are)
_SUMMED_FEATURES = ("flops", "mem_bytes", "times_mean", "gpu_energy_mean")

SUM_RULE = ("sum over L = P … P+N−1 of the degree K−1 polynomial through the predicted decode "
            "energies at the K traced context lengths (exact for an energy polynomial of degree "
            "≤ K−1 in L, affine included; every step traced when N ≤ K)")


def decode_context_lens(prompt_len: int, new_tokens: int,
                        points: int = DEFAULT_DECODE_POINTS) -> list[int]:
    """The decode context lengths to trace: ``points`` lengths spread evenly over
    ``[prompt_len, prompt_len + new_tokens − 1]`` (both ends), every length when there are no
    more than ``points`` of them."""
    if prompt_len < 1 or new_tokens < 1 or points < 1:
        raise ValueError(f"prompt length, new tokens and points must be >= 1, got {prompt_len}, "
                         f"{new_tokens}, {points}")
    last = prompt_len + new_tokens - 1
    if new_tokens <= points:
        return list(range(prompt_len, last + 1))
    if points == 1:
        return [prompt_len + (new_tokens - 1) // 2]
    spread = np.linspace(prompt_len, last, points).round().astype(int)
    return sorted(set(spread.tolist()))


def _scaled(lengths: Sequence[float] | np.ndarray, first: int, count: int) -> np.ndarray:
    """Context lengths mapped to about [-1, 1] over the summed range (conditioning)."""
    centre = first + (count - 1) / 2
    half = max(1.0, (count - 1) / 2)
    return (np.asarray(lengths, dtype=np.float64) - centre) / half


def sum_weights(lengths: Sequence[int], first: int, count: int) -> np.ndarray:
    """Weights ``w`` with ``Σ_k w_k f(lengths[k]) = Σ_{L=first}^{first+count−1} f(L)`` for every
    polynomial ``f`` of degree < len(lengths) (see the module docstring), shape [K]."""
    nodes = _scaled(lengths, first, count)
    targets = _scaled(np.arange(first, first + count), first, count)
    degree = len(nodes)
    vandermonde = np.vander(nodes, degree, increasing=True).T  # [j, k] = t_k ** j
    moments = np.array([np.sum(targets ** j) for j in range(degree)])
    return np.linalg.solve(vandermonde, moments)


def affine_sum(lengths: Sequence[int], energies: Sequence[float], first: int,
               count: int) -> float:
    """Σ over the range of the least-squares line through (lengths, energies), J (the
    affine-law check of the decode sum; the mean energy times ``count`` for one length)."""
    if len(lengths) == 1:
        return float(energies[0]) * count
    slope, intercept = np.polyfit(np.asarray(lengths, float), np.asarray(energies, float), 1)
    mean_length = first + (count - 1) / 2
    return float(count * (intercept + slope * mean_length))


def interpolate(lengths: Sequence[int], energies: Sequence[float], at: np.ndarray,
                first: int, count: int) -> np.ndarray:
    """The degree ``K − 1`` polynomial through the traced points, evaluated ``at`` (J)."""
    coefficients = np.polyfit(_scaled(lengths, first, count), np.asarray(energies, float),
                              len(lengths) - 1)
    return np.polyval(coefficients, _scaled(at, first, count))


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
    traced context lengths; ``weights``: their weights in the decode sum; ``decode``: the derived
    tree of the whole decode phase (every node: its energy summed over the ``new_tokens`` steps);
    ``affine_sum_j``: the affine-law check of the decode sum (see the module docstring).
    """

    model_name: str
    batch_size: int
    prompt_len: int
    new_tokens: int
    prefill: Tree
    decode_trees: list[Tree]
    weights: list[float]
    decode: Tree
    affine_sum_j: float
    notes: list[str] = field(default_factory=list)

    @property
    def context_lens(self) -> list[int]:
        """The traced decode context lengths."""
        return [t.key.context_len for t in self.decode_trees]

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
    def sum_check_pct(self) -> float:
        """100 × (affine-law sum − the decode sum) / the decode sum."""
        return 100.0 * (self.affine_sum_j - self.decode_j) / self.decode_j

    def step_energies(self) -> list[float]:
        """Predicted energy of one decode step at each traced context length, J."""
        return [float(t.root.predicted_energy) for t in self.decode_trees]

    def curve(self, samples: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """(context lengths, J per generated token) of the interpolating polynomial of the decode
        sum over ``[P, P + N − 1]``: one decode step's energy divided by ``batch_size``."""
        first, count = self.prompt_len, self.new_tokens
        at = np.unique(np.linspace(first, first + count - 1, min(samples, count)).round())
        energy = interpolate(self.context_lens, self.step_energies(), at, first, count)
        return at, energy / self.batch_size

    def to_json(self, *, depth: int | None = None, top: int = 10) -> dict[str, Any]:
        """Plain data: totals, per token, how the decode sum was formed, and each phase's
        breakdown (:func:`irene.report.breakdown.breakdown_json`)."""
        from irene.report.breakdown import breakdown_json, explain_tree

        phases = {name: breakdown_json(explain_tree(tree, source="predicted", depth=depth,
                                                    top=top))
                  for name, tree in (("prefill", self.prefill), ("decode", self.decode))}
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
                "rule": SUM_RULE,
                "context_lens": [self.prompt_len, self.prompt_len + self.new_tokens - 1],
                "steps": self.new_tokens,
                "traced": [{"context_len": length, "step_j": energy, "weight": weight,
                            "per_token_j": energy / self.batch_size}
                           for length, energy, weight in zip(self.context_lens,
                                                             self.step_energies(),
                                                             self.weights, strict=True)],
                "affine_sum_j": self.affine_sum_j,
                "affine_vs_sum_pct": self.sum_check_pct,
            },
            "notes": list(self.notes),
            "phases": phases,
        }


def estimate_generation(model: str | Any, predictor: str | Path | IreneRegressor, *,
                        prompt_len: int, new_tokens: int, batch_size: int = 1,
                        points: int = DEFAULT_DECODE_POINTS, device: str = "cpu",
                        dtype: str = "float32", attn: str = "eager", progress: bool = True,
                        warn: Callable[[str], None] = print, hub: bool = True,
                        model_name: str | None = None) -> GenerationEstimate:
    """Predict the energy of a generation (see the module docstring): trace and predict the
    prefill at ``prompt_len`` and decode steps at ``points`` context lengths, and sum.

    ``model``: a built-in name, local path or Hub name (built once here), or a built
    ``transformers`` decoder. Raises :class:`irene.estimate.EstimateError` (or ValueError) when
    the predictor cannot be used here or the model cannot generate that far.
    """
    from tqdm import tqdm

    from irene.estimate import EstimateError, estimate_tree, load_predictor
    from irene.tracing.registry import build_model, max_sequence_length

    if isinstance(predictor, (str, Path)):
        predictor = load_predictor(predictor)
    name = model_name or (model if isinstance(model, str) else
                          getattr(model, "name_or_path", None) or type(model).__name__)
    built = build_model(model, attn=attn, dtype=dtype, device=device, hub=hub) \
        if isinstance(model, str) else model
    limit = max_sequence_length(built.config)
    if limit is not None and prompt_len + new_tokens > limit:
        raise EstimateError(f"{name}: a {prompt_len}-token prompt + {new_tokens} new tokens "
                            f"exceeds its {limit} positions")
    lengths = decode_context_lens(prompt_len, new_tokens, points)
    messages: dict[str, None] = {}
    notes = phase_notes(predictor)
    jobs = [("prefill", prompt_len, 0)] + [("decode", 1, length) for length in lengths]
    trees = []
    for phase, seq_len, context_len in tqdm(jobs, desc=f"estimate {name}", unit="trace",
                                            disable=not progress, leave=False):
        trees.append(estimate_tree(built, batch_size, seq_len, predictor, device=device,
                                   dtype=dtype, attn=attn, progress=progress,
                                   warn=lambda text: messages.setdefault(text), hub=hub,
                                   phase=phase, context_len=context_len))
    for text in [*messages, *notes]:
        warn(text)
    prefill, decode_trees = trees[0], trees[1:]
    for tree in trees:
        tree.model_name = name
    weights = sum_weights(lengths, prompt_len, new_tokens)
    energies = [float(t.root.predicted_energy) for t in decode_trees]
    last = prompt_len + new_tokens - 1
    decode = weighted_tree(
        decode_trees, weights.tolist(),
        label=f"{name} · batch {batch_size} · decode, {new_tokens} steps @ context "
              f"{prompt_len}…{last}",
        extra_meta={"context_len": prompt_len, "units": _summed_units(decode_trees[0]),
                    "decode_sum": {"steps": new_tokens, "context_lens": [prompt_len, last],
                                   "traced_context_lens": lengths,
                                   "weights": weights.tolist(), "rule": SUM_RULE}})
    return GenerationEstimate(
        model_name=name, batch_size=batch_size, prompt_len=prompt_len, new_tokens=new_tokens,
        prefill=prefill, decode_trees=decode_trees, weights=weights.tolist(), decode=decode,
        affine_sum_j=affine_sum(lengths, energies, prompt_len, new_tokens), notes=notes)


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
